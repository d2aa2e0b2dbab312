import subprocess
import sys

import numpy as np

from ntkfeat import compat


def test_neural_tangents_imports_and_computes_on_current_jax():
    nt = compat.neural_tangents()
    _, _, kernel_fn = nt.stax.serial(nt.stax.Dense(1, W_std=2**0.5), nt.stax.Relu(), nt.stax.Dense(1))
    x = np.random.RandomState(0).randn(4, 3).astype(np.float32)
    k = np.asarray(kernel_fn(x, x, "ntk"))
    assert k.shape == (4, 4)
    assert np.allclose(k, k.T, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(k) > -1e-5)
    batched = nt.batch(kernel_fn, batch_size=2, device_count=0)
    np.testing.assert_allclose(np.asarray(batched(x, x, "ntk")), k, rtol=1e-4, atol=1e-5)


def test_import_does_not_pull_tensorflow():
    code = "import ntkfeat.compat as c, sys; c.neural_tangents(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_patch_is_idempotent():
    compat.patch_jax()
    compat.patch_jax()
    import jax.core

    assert hasattr(jax.core, "Jaxpr")

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


def test_import_ntkfeat_patches_jax_for_neural_tangents():
    # A fresh interpreter: `import ntkfeat` alone makes a plain `import neural_tangents` work.
    for code in ("import ntkfeat, neural_tangents; from neural_tangents import stax; print(stax.Relu is not None)",
                 "import ntkfeat\nimport neural_tangents\nprint(neural_tangents.stax.Dense is not None)"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "True"


def test_missing_neural_tangents_names_the_install_command(monkeypatch):
    import pytest

    monkeypatch.setitem(sys.modules, "neural_tangents", None)  # `import neural_tangents` fails as if absent
    with pytest.raises(ImportError) as info:
        compat.neural_tangents()
    assert compat.NT_INSTALL in str(info.value)
    assert compat.NT_INSTALL == "pip install --no-deps neural-tangents==0.6.5 frozendict"

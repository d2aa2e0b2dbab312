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


def test_neural_tangents_first_works_with_the_pth_hook(tmp_path):
    # A fresh interpreter with the .pth in a site folder: startup stays light (no JAX), and
    # `import neural_tangents` before `import ntkfeat` works (without the hook it stops at
    # "No module named 'tensorflow'" inside neural-tangents).
    path = compat.write_pth(str(tmp_path))
    assert path.endswith(compat.PTH_NAME)
    code = (f"import site, sys; site.addsitedir({str(tmp_path)!r}); print('jax' in sys.modules)\n"
            "import neural_tangents, ntkfeat\n"
            "print(ntkfeat.stax is neural_tangents.stax, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "False"]


def test_install_import_hook_is_idempotent():
    before = len(sys.meta_path)
    compat.install_import_hook()
    compat.install_import_hook()
    names = [getattr(f, "__name__", "") for f in sys.meta_path]
    assert names.count("NtkfeatPatchesJaxForNeuralTangents") == 1
    assert len(sys.meta_path) - before <= 1


def test_nf_reexports_stax_after_patching():
    import ntkfeat as nf

    assert nf.stax is compat.neural_tangents().stax
    assert nf.nt is compat.neural_tangents()
    with __import__("pytest").raises(AttributeError):
        nf.no_such_name  # noqa: B018


def test_exact_oracle_is_as_precise_as_neural_tangents_eager():
    # The oracle (nf.serial's kernel_fn) is jitted under full float32 matmul precision. On an
    # Erf network in float32 it sits as close to the float64 kernel as neural-tangents run
    # eagerly: measured 1.1e-7 vs 1.2e-7 (relative Frobenius) on a 2-core CPU. Elementwise
    # relative errors reach 5e-5 for both, on the entries near zero, so they are normalized by
    # the largest entry here. Tolerances: 1e-6, and at most 2x eager's error plus 1e-7.
    import jax
    import jax.numpy as jnp

    import ntkfeat as nf

    stax = compat.stax()
    x = np.random.RandomState(0).randn(30, 8)
    layers = [nf.Dense(512, W_std=1.5, b_std=0.1), nf.Erf(), nf.Dense(512, W_std=1.5, b_std=0.1), nf.Erf(),
              nf.Dense(1)]
    nt_kernel = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(512, W_std=1.5, b_std=0.1),
                            stax.Erf(), stax.Dense(1))[2]
    kernel_fn = nf.serial(*layers)[2]
    x32 = jnp.asarray(x, jnp.float32)
    for get in ("ntk", "nngp"):
        with jax.enable_x64(True):
            reference = np.asarray(nt_kernel(jnp.asarray(x, jnp.float64), None, get))
        assert reference.dtype == np.float64

        def error(k):
            k = np.asarray(k, np.float64)
            return (np.linalg.norm(k - reference) / np.linalg.norm(reference),
                    np.abs(k - reference).max() / np.abs(reference).max())

        ours = kernel_fn(x32, None, get)
        assert ours.dtype == jnp.float32
        ours, eager = error(ours), error(nt_kernel(x32, None, get))
        for o, e in zip(ours, eager):
            assert o < 1e-6, (get, ours, eager)
            assert o <= 2 * e + 1e-7, (get, ours, eager)

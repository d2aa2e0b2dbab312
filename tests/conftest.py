import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np
import pytest
from sklearn.datasets import load_diabetes


def _share_compiled_programs():
    """One on-disk JAX compilation cache per test run, shared by the xdist workers, the modules
    (each starts with empty in-memory caches, below) and the processes the tests start (notebook
    kernels, multi-process runs), which inherit the environment: the same program compiles once
    per run, not once per module and process. Caches of earlier runs older than a day are removed.
    A JAX_COMPILATION_CACHE_DIR set by the user is left alone."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    root = pathlib.Path(tempfile.gettempdir()) / "ntkfeat-tests-jax-cache"
    if root.is_dir():
        for old in root.iterdir():
            try:
                if time.time() - old.stat().st_mtime > 86400:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(root / run)
    # JAX's default skips programs that compile in under a second: most of the suite's are far shorter,
    # and reading one back costs less than compiling it
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if "jax" in sys.modules:  # imported before this file by a plugin: its config has read the environment
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


_share_compiled_programs()


@pytest.fixture(scope="module", autouse=True)
def _fresh_jax_caches():
    """Each test module starts without the compiled programs of the ones before: one long
    process otherwise holds every executable of the suite (an XLA compile crashed once deep into
    a full run on a 2-core machine, and passed alone)."""
    import jax

    yield
    jax.clear_caches()


@pytest.fixture(scope="session")
def tabular():
    """100 standardized rows of scikit-learn's diabetes data (10 features), float32."""
    x = load_diabetes().data
    x = (x - x.mean(0)) / x.std(0)
    return np.asarray(x[np.random.RandomState(0).permutation(len(x))[:100]], np.float32)


def rel_fro(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def fc_stack(nf, depth, w_std=2**0.5, b_std=None, readout_w=1.0, readout_b=None):
    layers = []
    for _ in range(depth):
        layers += [nf.Dense(W_std=w_std, b_std=b_std), nf.Relu()]
    layers.append(nf.Dense(W_std=readout_w, b_std=readout_b))
    return layers

import numpy as np
import pytest
from sklearn.datasets import load_diabetes


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

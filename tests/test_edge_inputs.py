"""Extreme and malformed inputs: a correct answer within a stated tolerance, or a clear error.

Each test is one case a user can reach with ordinary calls (graph patterns at any scale, rows at
float32's limits, inputs of 100,000 features, settings at their bounds).
"""

import re

import jax
import numpy as np
import pytest

import ntkfeat as nf
from ntkfeat import baselines

KEY = jax.random.PRNGKey(0)


def _rows(shape, seed=1):
    return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), shape), np.float32)


# ------------------------------------------------------------------------------ graph patterns

N_NODES, CHANNELS = 5, 4


@pytest.fixture(scope="module")
def gcn():
    """A bias-free two-layer GCN (homogeneous in x and in the pattern) and a graph batch."""
    init_fn, feature_fn, _ = nf.serial(nf.Dense(1), nf.Relu(), nf.Aggregate(), nf.Dense(1), nf.Relu(),
                                       nf.Aggregate(), nf.GlobalAvgPool(), nf.Dense(1))
    params = init_fn(KEY, (-1, N_NODES, CHANNELS), nf.Sketch(dim=256))
    x = _rows((3, N_NODES, CHANNELS), 2)
    a = np.asarray(jax.random.uniform(jax.random.PRNGKey(3), (3, N_NODES, N_NODES)), np.float32)
    return feature_fn, params, x, a


@pytest.mark.parametrize("scale", [1e10, 1e-10])
def test_pattern_scale_is_factored_out(gcn, scale):
    """Two Aggregates: phi(x, t A) = t^2 phi(x, A). Features at t = 1e10 and 1e-10 equal the
    scaled ones within 1e-5 relative (float32 rounding; measured 7e-7 and 9e-7); they were NaN
    and all zero."""
    feature_fn, params, x, a = gcn
    reference = np.asarray(feature_fn(params, x, pattern=a))
    scaled = np.asarray(feature_fn(params, x, pattern=a * np.float32(scale)), np.float64) / scale**2
    assert np.all(np.isfinite(scaled))
    assert np.abs(scaled - reference).max() <= 1e-5 * np.abs(reference).max()


def test_nan_in_pattern_raises(gcn):
    feature_fn, params, x, a = gcn
    bad = a.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"pattern has NaN or inf entries in 1 rows \(first: \[1\]\)"):
        feature_fn(params, x, pattern=bad)


def test_pattern_without_aggregate_raises(gcn):
    _, _, x, a = gcn
    init_fn, feature_fn, _ = nf.serial(nf.Dense(1), nf.Relu(), nf.GlobalAvgPool(), nf.Dense(1))
    params = init_fn(KEY, (-1, N_NODES, CHANNELS), nf.Sketch(dim=64, mode="layerwise", degree=2))
    with pytest.raises(ValueError, match="no Aggregate layer"):
        feature_fn(params, x, pattern=a)


# ------------------------------------------------------------------------- scales and overflow


def test_rows_near_float32_max():
    """Rows with entries up to 2e38 (finite; their squares are not): bias-free and biased maps
    give finite features, the bias-free ones c^1-homogeneous within 1e-5 (they were all zero)."""
    x = _rows((5, 4))
    c = np.float32(2e38) / np.abs(x).max()
    for b_std in (None, 0.1):
        init_fn, feature_fn, _ = nf.serial(nf.Dense(1, b_std=b_std), nf.Relu(), nf.Dense(1))
        params = init_fn(KEY, (-1, 4), nf.Sketch(dim=256))
        big = np.asarray(feature_fn(params, x * c), np.float64)
        assert np.all(np.isfinite(big)) and np.all(np.abs(big).max(axis=1) > 0)
        if b_std is None:
            small = np.asarray(feature_fn(params, x), np.float64) * float(c)
            assert np.abs(big - small).max() <= 1e-5 * np.abs(small).max()


def test_features_that_overflow_raise():
    """Exp's kernel grows like exp(2 q): at 10 x (q ~ 100) it is beyond float32. An error that
    names the way out, never NaN features."""
    init_fn, feature_fn, _ = nf.serial(nf.Dense(1), nf.Exp(), nf.Dense(1))
    params = init_fn(KEY, (-1, 4), nf.RandomFeatures(dim=256))
    with pytest.raises(FloatingPointError, match="float64"):
        feature_fn(params, 10 * _rows((5, 4)))


@pytest.mark.parametrize("scale", [1e19, 1e-20])
def test_gaussian_kernel_at_any_scale(scale):
    """The kernel of (c x, c bandwidth) is that of (x, bandwidth): within 1e-5 (it was NaN)."""
    x = _rows((6, 4))
    reference = np.asarray(baselines.gaussian_kernel(x, bandwidth=2.0))
    scaled = np.asarray(baselines.gaussian_kernel(x * np.float32(scale), bandwidth=2.0 * scale))
    assert np.abs(scaled - reference).max() <= 1e-5


# --------------------------------------------------------------------------- dimensions


def test_wide_sparse_inputs():
    """Bag-of-words rows of 100,000 features (a TensorSRHT over fft lengths whose product passes
    2^31 raised in randint): features exist and their Gram is close to the exact NTK (relative
    Frobenius error below 0.1 at dim 1024 on 3 rows; a wrong sketch is off by O(1))."""
    d = 100_000
    x = np.zeros((3, d), np.float32)
    x[0, [3, 70_000, 99_999]] = 1.0
    x[1, [3, 5, 70_000]] = [2.0, 1.0, 1.0]
    x[2, [10, 20, 99_999]] = 1.0
    layers = nf.serial(nf.Dense(1, W_std=2**0.5), nf.Relu(), nf.Dense(1))
    init_fn, feature_fn, kernel_fn = layers
    exact = np.asarray(kernel_fn(x, x), np.float64)
    for method in (nf.Sketch(dim=1024), nf.Sketch(dim=1024, mode="layerwise", degree=4)):
        phi = np.asarray(feature_fn(init_fn(KEY, (-1, d), method), x), np.float64)
        assert phi.shape[1] <= 1024
        assert np.linalg.norm(phi @ phi.T - exact) <= 0.1 * np.linalg.norm(exact)


def test_readout_bias_keeps_dim():
    """A readout bias adds a constant feature: the output is still at most dim wide."""
    for method in (nf.RandomFeatures(dim=64), nf.Sketch(dim=64)):
        init_fn, feature_fn, _ = nf.serial(nf.Dense(1), nf.Relu(), nf.Dense(1, b_std=0.5))
        params = init_fn(KEY, (-1, 4), method)
        assert params.out_dim <= 64
        assert feature_fn(params, _rows((3, 4))).shape[1] <= 64


def test_oneshot_series_degree_above_64():
    init_fn, _, _ = nf.serial(nf.Dense(1), nf.Erf(), nf.Dense(1))
    with pytest.raises(ValueError, match="goes up to degree 64; use degree <= 64 or mode='layerwise'"):
        init_fn(KEY, (-1, 4), nf.Sketch(dim=4096, degree=65, mode="oneshot"))


def test_zero_weight_dense_gives_the_zero_kernel():
    """W_std = 0 on a later Dense: the NTK is 0 (neural-tangents agrees); the default map gives
    zero features instead of a 'dim too small' error, and the one-shot mode says why not."""
    layers = nf.serial(nf.Dense(1, W_std=2**0.5), nf.Relu(), nf.Dense(1, W_std=0.0), nf.Relu(), nf.Dense(1))
    init_fn, feature_fn, kernel_fn = layers
    x = _rows((4, 4))
    assert np.abs(np.asarray(kernel_fn(x, x))).max() == 0.0
    assert np.abs(np.asarray(feature_fn(init_fn(KEY, (-1, 4), nf.Sketch(dim=256)), x))).max() == 0.0
    with pytest.raises(ValueError, match="W_std=0; use mode='layerwise'"):
        init_fn(KEY, (-1, 4), nf.Sketch(dim=256, mode="oneshot"))


def test_small_width_is_named():
    init_fn, _, _ = nf.serial(nf.Dense(1), nf.Relu(), nf.Dense(1), nf.Relu(), nf.Dense(1))
    with pytest.raises(ValueError, match=r"Sketch\(width=2, degree=8\) is too small .* raise width"):
        init_fn(KEY, (-1, 4), nf.Sketch(dim=256, width=2, mode="layerwise"))


def test_least_dim_hint_is_the_least_that_works():
    """The hint names the least dim that passes the layer's check, and that dim works."""
    init_fn, feature_fn, _ = nf.serial(nf.Dense(1), nf.Relu(), nf.Dense(1), nf.Relu(), nf.Dense(1))
    with pytest.raises(ValueError, match=r"use dim >= (\d+)") as info:
        init_fn(KEY, (-1, 4), nf.RandomFeatures(dim=8))
    least = int(re.search(r"use dim >= (\d+)", str(info.value)).group(1))
    assert feature_fn(init_fn(KEY, (-1, 4), nf.RandomFeatures(dim=least)), _rows((3, 4))).shape == (3, least)
    with pytest.raises(ValueError, match="too small"):
        init_fn(KEY, (-1, 4), nf.RandomFeatures(dim=least - 1))


# -------------------------------------------------------------------------- data and configs


def test_classification_on_a_regression_target_raises(tmp_path):
    rng = np.random.RandomState(0)
    path = tmp_path / "counts.npz"
    np.savez(path, x=rng.normal(size=(600, 3)).astype(np.float32), y=rng.randint(0, 400, 600).astype(np.float64))
    with pytest.raises(ValueError, match="distinct values .* looks like a regression target"):
        nf.data.load_dataset("npz", path=str(path), task="classification", n_test=100)
    assert nf.data.load_dataset("npz", path=str(path), n_test=100).task == "regression"


def test_config_seed_must_fit_the_prng():
    from experiments import config
    from experiments.config import ConfigError

    check = config.integer(0, maximum=2**32 - 1)
    assert check(2**32 - 1, "seed") == 2**32 - 1
    with pytest.raises(ConfigError, match="seed"):
        check(2**32, "seed")

"""Baseline feature maps (random Fourier, Nystrom, gradient features) against their exact kernels.

Errors are relative Frobenius errors of phi phi^T on 100 standardized diabetes rows (conftest),
with fixed keys; each bound is stated next to the value measured here (about 2x margin), so a
change of estimator or scaling shows. Exactness checks (Nystrom with every row as a landmark,
gradient features vs neural-tangents' empirical NTK) use float32 round-off bounds.
"""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.datasets import load_diabetes

import ntkfeat as nf
from ntkfeat import baselines as bl

from conftest import fc_stack, rel_fro

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def test_rows():
    """50 standardized diabetes rows disjoint from the `tabular` fixture's 100."""
    x = load_diabetes().data
    x = (x - x.mean(0)) / x.std(0)
    return np.asarray(x[np.random.RandomState(0).permutation(len(x))[100:150]], np.float32)


@pytest.fixture(scope="module")
def ntk1():
    """Exact NTK of a one-hidden-layer ReLU network, and its layers."""
    layers = fc_stack(nf, 1)
    return layers, nf.serial(*layers)[2]


def gram(phi):
    phi = np.asarray(phi, np.float64)
    return phi @ phi.T


# ---------------------------------------------------------------- random Fourier features


def test_gaussian_kernel_matches_numpy(tabular):
    d2 = np.sum((tabular[:, None, :].astype(np.float64) - tabular[None, :, :]) ** 2, -1)
    ref = np.exp(-d2 / (2 * 3.0**2))
    np.testing.assert_allclose(bl.gaussian_kernel(tabular, tabular, 3.0), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bl.gaussian_kernel(tabular, bandwidth=3.0), ref, rtol=1e-5, atol=1e-6)


def test_kernel_matmuls_run_at_full_precision(tabular):
    """On GPUs JAX's default float32 matmul is TF32; on an H200 that put the Gaussian kernel off by
    5e-4 and Nystrom with every row as a landmark at 5e-4 from exact (fp32: < 1e-4). CPUs ignore the
    precision flag, so the lowered programs are checked instead."""
    rff, nys = (importlib.import_module(f"ntkfeat.baselines.{m}") for m in ("random_fourier", "nystrom"))
    x = jnp.asarray(tabular)
    for text in (rff._gaussian.lower(x, x, 3.0).as_text(),
                 nys._project.lower(x @ x.T, jnp.eye(len(x))).as_text()):
        dots = [line for line in text.splitlines() if "dot_general" in line]
        assert dots and all("HIGHEST" in line for line in dots), dots


def test_median_bandwidth_matches_numpy(tabular):
    ref = np.median(pdist(tabular.astype(np.float64)))
    assert bl.median_bandwidth(tabular) == pytest.approx(ref, rel=1e-12)
    params = bl.random_fourier(64)[0](KEY, tabular)
    assert float(params.bandwidth) == pytest.approx(ref, rel=1e-6)


def test_median_bandwidth_subsample_is_seeded():
    x = np.random.RandomState(1).randn(1500, 5)
    full = np.median(pdist(x))
    a = bl.median_bandwidth(x, jax.random.PRNGKey(3))
    assert a == bl.median_bandwidth(x, jax.random.PRNGKey(3))  # same key, same subsample
    assert a != bl.median_bandwidth(x, jax.random.PRNGKey(4))
    assert a == pytest.approx(full, rel=0.02)  # 1000 of 1500 rows: within 0.1 % here
    with pytest.raises(ValueError, match="pass a key"):
        bl.median_bandwidth(x)


def test_random_fourier_error_falls_with_dim(tabular):
    errors = []
    for dim in (64, 256, 1024, 4096):
        init_fn, feature_fn = bl.random_fourier(dim)
        params = init_fn(KEY, tabular)
        phi = feature_fn(params, tabular)
        assert phi.shape == (100, dim)
        k = gram(phi)
        np.testing.assert_allclose(np.diag(k), 1.0, atol=1e-5)  # cos^2 + sin^2: exact diagonal
        errors.append(rel_fro(k, bl.gaussian_kernel(tabular, tabular, float(params.bandwidth))))
    # measured: 0.125, 0.075, 0.033, 0.017 (~ 1 / sqrt(dim))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.035, errors


def test_random_fourier_is_unbiased(tabular):
    """The mean of 16 independent estimates at dim 128 is ~4x closer to the kernel than one (measured
    0.021 vs 0.088): no bias shows at this resolution."""
    init_fn, feature_fn = bl.random_fourier(128, bandwidth=4.0)
    exact = bl.gaussian_kernel(tabular, tabular, 4.0)
    grams = [gram(feature_fn(init_fn(jax.random.PRNGKey(s), tabular), tabular)) for s in range(16)]
    single = np.median([rel_fro(g, exact) for g in grams])
    mean = rel_fro(np.mean(grams, axis=0), exact)
    assert mean < 0.4 * single, (mean, single)  # expected ratio 1 / sqrt(16) = 0.25


def test_random_fourier_odd_dim(tabular):
    init_fn, feature_fn = bl.random_fourier(4097, bandwidth=4.0)
    phi = feature_fn(init_fn(KEY, tabular), tabular)
    assert phi.shape == (100, 4097)
    assert rel_fro(gram(phi), bl.gaussian_kernel(tabular, tabular, 4.0)) < 0.035  # measured 0.013
    init_fn, feature_fn = bl.random_fourier(1, bandwidth=4.0)  # only the random-phase feature
    assert feature_fn(init_fn(KEY, tabular), tabular).shape == (100, 1)


def test_random_fourier_images_are_flattened():
    x = np.random.RandomState(0).randn(6, 4, 4, 2).astype(np.float32)
    init_fn, feature_fn = bl.random_fourier(8, bandwidth=2.0)
    params = init_fn(KEY, x)
    flat_init, flat_fn = bl.random_fourier(8, bandwidth=2.0)
    flat = flat_fn(flat_init(KEY, x.reshape(6, -1)), x.reshape(6, -1))
    np.testing.assert_allclose(feature_fn(params, x), flat, rtol=1e-6)
    with pytest.raises(ValueError, match="built for inputs of shape"):
        feature_fn(params, x.reshape(6, -1))


# ---------------------------------------------------------------- Nystrom


def test_nystrom_all_rows_is_exact(tabular, test_rows, ntk1):
    """With every training row a landmark, phi(x).phi(y) = K(x, L) K_LL^-1 K(L, y) = K(x, y)
    whenever y is a training row (measured 2e-7 and 3e-7 in float32)."""
    _, kernel_fn = ntk1
    init_fn, feature_fn = bl.nystrom(kernel_fn, 100)
    params = init_fn(KEY, tabular)
    assert params.rank == 100
    phi, phi_test = feature_fn(params, tabular), feature_fn(params, test_rows)
    assert rel_fro(gram(phi), kernel_fn(tabular, tabular)) < 1e-4
    cross = np.asarray(phi_test, np.float64) @ np.asarray(phi, np.float64).T
    assert rel_fro(cross, kernel_fn(test_rows, tabular)) < 1e-4


def test_nystrom_error_falls_with_dim(tabular, ntk1):
    """Uniform landmarks of one key are nested in dim, so the error cannot grow."""
    _, kernel_fn = ntk1
    exact = kernel_fn(tabular, tabular)
    errors, previous = [], None
    for dim in (10, 30, 60):
        init_fn, feature_fn = bl.nystrom(kernel_fn, dim)
        params = init_fn(KEY, tabular)
        if previous is not None:
            np.testing.assert_array_equal(params.indices[: len(previous)], previous)
        previous = params.indices
        errors.append(rel_fro(gram(feature_fn(params, tabular)), exact))
    # measured: 0.37, 0.11, 0.045
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[-1] < 0.09, errors


def test_ridge_leverage_scores_match_numpy(tabular):
    kernel = functools.partial(bl.gaussian_kernel, bandwidth=3.0)
    k = np.asarray(kernel(tabular, tabular), np.float64)
    lam = 0.5
    tau = np.diagonal(k @ np.linalg.inv(k + lam * np.eye(100)))
    # Pilot = every row: the leave-one-out form tau / (1 - tau).
    scores, _ = bl.ridge_leverage_scores(kernel, tabular, np.arange(100), lam, get=None)
    np.testing.assert_allclose(scores, tau / (1 - tau), rtol=1e-4)
    # A 20-row pilot: the residual formula for the other rows, and over-estimates everywhere.
    pilot = np.arange(0, 100, 5)
    scores, _ = bl.ridge_leverage_scores(kernel, tabular, pilot, lam, get=None, block_size=32)
    rest = np.setdiff1d(np.arange(100), pilot)
    k_rs, k_ss = k[np.ix_(rest, pilot)], k[np.ix_(pilot, pilot)]
    explained = np.sum(k_rs * np.linalg.solve(k_ss + lam * np.eye(20), k_rs.T).T, axis=1)
    ref = (np.diag(k)[rest] - explained) / lam
    np.testing.assert_allclose(scores[rest], ref, rtol=1e-4)
    assert np.all(scores >= tau * (1 - 1e-4))


def test_rls_samples_the_isolated_point():
    """200 points in a tight cluster and one far away (Gaussian kernel, sigma 1): the far point has
    ridge leverage ~1 and every cluster point ~0. With 10 landmarks, RLS sampling includes it for
    each of 20 keys (it also did for 100 of 100 keys when measured); uniform sampling would with
    probability 10 / 201 per key. Missing it costs Nystrom the whole far row of K."""
    rng = np.random.RandomState(0)
    x = np.concatenate([0.05 * rng.randn(200, 2), [[6.0, 0.0]]]).astype(np.float32)
    kernel = functools.partial(bl.gaussian_kernel, bandwidth=1.0)
    exact = kernel(x, x)
    hits, errors = {}, {}
    for sampling in ("uniform", "rls"):
        init_fn, feature_fn = bl.nystrom(kernel, 10, sampling, get=None)
        params = [init_fn(jax.random.PRNGKey(s), x) for s in range(20)]
        hits[sampling] = sum(200 in np.asarray(p.indices) for p in params)
        errors[sampling] = np.mean([rel_fro(gram(feature_fn(p, x)), exact) for p in params])
    assert hits["rls"] == 20, hits
    assert hits["uniform"] <= 4, hits  # measured 1
    assert errors["rls"] < 0.1 * errors["uniform"], errors  # measured 1.4e-5 vs 4.8e-3


# ---------------------------------------------------------------- gradient features


def test_gradient_features_equal_empirical_ntk(tabular):
    layers = fc_stack(nf, 2, b_std=0.1, readout_b=0.1)
    init_fn, feature_fn = bl.gradient_features(layers, width=64)
    params = init_fn(KEY, tabular)
    phi = feature_fn(params, tabular)
    assert phi.shape == (100, params.num_params) == (100, 10 * 64 + 64 + 64 * 64 + 64 + 64 + 1)
    emp = bl.empirical_ntk(layers, width=64)(params, tabular)
    assert rel_fro(gram(phi), emp) < 1e-4  # measured ~1e-7


def test_gradient_features_conv_equal_empirical_ntk():
    x = np.random.RandomState(0).randn(8, 6, 6, 2).astype(np.float32)
    layers = [nf.Conv(filter_shape=3, W_std=2**0.5), nf.Relu(), nf.GlobalAvgPool(), nf.Dense()]
    init_fn, feature_fn = bl.gradient_features(layers, width=8)
    params = init_fn(KEY, x)
    phi = feature_fn(params, x)
    assert params.num_params == 3 * 3 * 2 * 8 + 8
    assert rel_fro(gram(phi), bl.empirical_ntk(layers, width=8)(params, x)) < 1e-4


def test_gradient_features_approach_analytic_ntk(tabular, ntk1):
    """NTK parameterization: the empirical NTK tends to the analytic one as the width grows
    (measured 0.075 at width 512, 0.032 at 4096; ~1 / sqrt(width))."""
    layers, kernel_fn = ntk1
    exact = kernel_fn(tabular, tabular)
    errors = []
    for width in (512, 4096):
        init_fn, feature_fn = bl.gradient_features(layers, width=width)
        errors.append(rel_fro(gram(feature_fn(init_fn(KEY, tabular), tabular)), exact))
    assert errors[0] > errors[1], errors
    assert errors[1] < 0.06, errors


@pytest.mark.parametrize("projection, bounds", [("srht", (0.75, 0.2)), ("gaussian", (0.75, 0.35))])
def test_gradient_projection_keeps_gram(tabular, ntk1, projection, bounds):
    """Projecting the 352 gradient coordinates (width 32) to 32 and 256 columns. Measured:
    SRHT 0.50 -> 0.11, Gaussian 0.44 -> 0.19."""
    layers, _ = ntk1
    init_fn, feature_fn = bl.gradient_features(layers, width=32)
    full = gram(feature_fn(init_fn(KEY, tabular), tabular))
    errors = []
    for dim in (32, 256):
        init_fn, feature_fn = bl.gradient_features(layers, dim=dim, width=32, projection=projection)
        params = init_fn(KEY, tabular)
        phi = feature_fn(params, tabular)
        assert phi.shape == (100, dim) and params.out_dim == dim
        errors.append(rel_fro(gram(phi), full))
    assert errors[0] > errors[1], errors
    assert errors[0] < bounds[0] and errors[1] < bounds[1], errors
    # dim >= P: the full gradient, no projection.
    init_fn, feature_fn = bl.gradient_features(layers, dim=1000, width=32, projection=projection)
    assert init_fn(KEY, tabular).projection is None


# ---------------------------------------------------------------- shared behaviour


@pytest.fixture(scope="module")
def feature_maps(tabular, ntk1):
    layers, kernel_fn = ntk1
    maps = {
        "random_fourier": bl.random_fourier(64),
        "nystrom": bl.nystrom(kernel_fn, 20, "rls"),
        "gradient": bl.gradient_features(layers, dim=64, width=32),
    }
    return {name: (init_fn, init_fn(KEY, tabular), feature_fn) for name, (init_fn, feature_fn) in maps.items()}


@pytest.mark.parametrize("name", ["random_fourier", "nystrom", "gradient"])
def test_batching_and_jit_match_one_batch(tabular, feature_maps, name):
    init_fn, params, feature_fn = feature_maps[name]
    one = np.asarray(feature_fn(params, tabular))
    # 100 rows in batches of 32: three full batches and one padded.
    np.testing.assert_allclose(feature_fn(params, tabular, batch_size=32), one, rtol=1e-5, atol=1e-5)
    jitted = jax.jit(lambda p, x: feature_fn(p, x))(params, jnp.asarray(tabular))
    np.testing.assert_allclose(jitted, one, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feature_fn(params, tabular[:10]), one[:10], rtol=1e-5, atol=1e-5)
    # The same key gives the same parameters.
    np.testing.assert_array_equal(feature_fn(init_fn(KEY, tabular), tabular), one)


@pytest.mark.parametrize("name", ["random_fourier", "nystrom", "gradient"])
def test_bad_inputs(tabular, feature_maps, name):
    _, params, feature_fn = feature_maps[name]
    with pytest.raises(ValueError, match="built for inputs of shape"):
        feature_fn(params, tabular[:, :5])
    bad = tabular.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        feature_fn(params, bad)
    with pytest.raises(ValueError, match="batch_size"):
        feature_fn(params, tabular, batch_size=-1)
    with pytest.raises(TypeError, match="params must come from"):
        feature_fn({"not": "params"}, tabular)


def test_errors(tabular, ntk1):
    layers, kernel_fn = ntk1
    for bad_dim in (0, -3, 2.5):
        with pytest.raises(ValueError, match="dim"):
            bl.random_fourier(bad_dim)
        with pytest.raises(ValueError, match="dim"):
            bl.nystrom(kernel_fn, bad_dim)
        with pytest.raises(ValueError, match="dim"):
            bl.gradient_features(layers, dim=bad_dim)
    with pytest.raises(ValueError, match="bandwidth"):
        bl.random_fourier(8, bandwidth=0.0)
    with pytest.raises(ValueError, match="kernel"):
        bl.random_fourier(8, kernel="laplacian")
    with pytest.raises(ValueError, match="identical"):
        bl.median_bandwidth(np.ones((5, 3)))
    bad = tabular.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        bl.random_fourier(8)[0](KEY, bad)
    with pytest.raises(ValueError, match="only 100 rows"):
        bl.nystrom(kernel_fn, 101)[0](KEY, tabular)
    with pytest.raises(ValueError, match="sampling"):
        bl.nystrom(kernel_fn, 10, "kmeans")
    with pytest.raises(ValueError, match="scalar output"):
        bl.gradient_features([nf.Dense(), nf.Relu(), nf.Dense(out_dim=3)], width=8)[0](KEY, tabular)
    with pytest.raises(ValueError, match="Dense or Conv"):
        bl.gradient_features([nf.Relu()])
    with pytest.raises(ValueError, match="projection"):
        bl.gradient_features(layers, dim=8, projection="count_sketch")
    params = bl.gradient_features(layers, width=16)[0](KEY, tabular)
    with pytest.raises(ValueError, match="different architecture"):
        bl.gradient_features(layers, width=32)[1](params, tabular)
    with pytest.raises(ValueError, match="srht"):
        bl.gradient_features(layers, dim=40000, width=4096, projection="gaussian")[0](KEY, tabular)

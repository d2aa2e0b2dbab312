"""serial(): feature maps against neural-tangents, with fit error and sketch error apart.

For a sketch, the total error |phi phi^T - K| splits into the polynomial-fit bias (the exact
kernel of the polynomial network vs K, computed here without any sketch) and the sketch error
(phi phi^T vs that polynomial kernel). Each is checked on its own, with tolerances a few times
the values measured on these rows (NOTES.md), so that a regression in either shows.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkfeat as nf
from ntkfeat.features.sketch import homogeneous_polynomials
from ntkfeat.polynomials import poly_eval

from conftest import fc_stack, rel_fro


def polynomial_network_kernel(layers, x, params):
    """The layerwise NTK of an FC stack with each activation's dual replaced by its fitted
    polynomials (exact arithmetic, float64): what a noiseless layerwise sketch would compute."""
    x = np.asarray(x, np.float64)
    c = x.shape[1]
    nngp, ntk = x @ x.T / c, None
    for layer, spec in zip(layers, params.params.specs):
        if isinstance(layer, nf.Dense):
            nngp = layer.W_std**2 * nngp + layer.bias**2
            ntk = nngp if ntk is None else layer.W_std**2 * ntk + nngp
        elif isinstance(layer, nf.Relu):
            k1, k0 = homogeneous_polynomials(layer, params.method.degree, params.method.fit, round(spec.rho_min, 6))
            d = np.sqrt(np.diag(nngp))
            rho = np.clip(nngp / np.outer(d, d), -1, 1)
            if ntk is not None:
                ntk = ntk * poly_eval(k0, rho)
            nngp = np.outer(d, d) * poly_eval(k1, rho)
    return ntk


def oneshot_polynomial_kernel(params, x):
    p = params.params
    z = p.w0 * np.asarray(x, np.float64) / np.sqrt(x.shape[1])
    if p.b0 > 0:
        z = np.concatenate([z, np.full((len(z), 1), p.b0)], 1)
    n = np.linalg.norm(z, axis=1)
    rho = np.clip(z @ z.T / np.outer(n, n), -1, 1)
    return np.outer(n, n) ** p.power * poly_eval(np.asarray(p.coeffs, np.float64), rho) + p.b_last**2


CASES = [
    # (depth, W_std, b_std, readout W_std, readout b_std)
    (1, 2**0.5, None, 1.0, None),
    (2, 2**0.5, None, 1.0, None),
    (3, 2**0.5, None, 1.0, None),
    (4, 2**0.5, None, 1.0, None),
    (2, 1.0, None, 2**0.5, None),
    (2, 1.3, 0.2, 1.0, 0.1),
    (1, 2**0.5, 0.5, 1.0, None),
]


@pytest.mark.parametrize("depth,w,b,wr,br", CASES)
def test_sketch_vs_neural_tangents(tabular, depth, w, b, wr, br):
    layers = fc_stack(nf, depth, w, b, wr, br)
    init_fn, feature_fn, kernel_fn = nf.serial(*layers)
    x = tabular
    k = np.asarray(kernel_fn(x, x, "ntk"), np.float64)
    params = init_fn(jax.random.PRNGKey(0), x.shape, nf.Sketch(dim=4096, degree=8))
    phi = np.asarray(feature_fn(params, x), np.float64)
    assert phi.shape[0] == len(x) and phi.shape[1] <= 4096 + 2
    if params.mode == "oneshot":
        kp = oneshot_polynomial_kernel(params, x)
        fit_tol, sketch_tol = 0.01 + 0.008 * depth, 0.03  # fit bias grows with depth (NOTES.md)
    else:  # inner biases: layerwise
        kp = polynomial_network_kernel(layers, x, params)
        fit_tol, sketch_tol = 0.05, 0.08
    assert rel_fro(kp, k) < fit_tol
    assert rel_fro(phi @ phi.T, kp) < sketch_tol
    assert rel_fro(phi @ phi.T, k) < fit_tol + sketch_tol


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_layerwise_sketch_fit_and_sketch_error(tabular, depth):
    layers = fc_stack(nf, depth)
    init_fn, feature_fn, kernel_fn = nf.serial(*layers)
    x = tabular
    k = np.asarray(kernel_fn(x, x, "ntk"), np.float64)
    params = init_fn(jax.random.PRNGKey(1), x.shape, nf.Sketch(dim=4096, degree=8, mode="layerwise"))
    kp = polynomial_network_kernel(layers, x, params)
    phi = np.asarray(feature_fn(params, x), np.float64)
    assert rel_fro(kp, k) < 0.03
    assert rel_fro(phi @ phi.T, kp) < 0.08


@pytest.mark.parametrize("dim", [300, 243])  # even and odd FFT lengths (no padding)
def test_structured_projection_is_an_orthogonal_rotation_times_radii(dim):
    # Within a block of N = dim outputs the directions are orthonormal rows of one rotation, so
    # the projected identity's columns are orthogonal with squared norms r_i^2 N / d.
    from ntkfeat.features.random_features import StructuredProjection, gaussian_weights, project

    with jax.enable_x64(True):
        w, _ = gaussian_weights(jax.random.PRNGKey(0), dim, 2 * dim, nf.RandomFeatures(projection="structured"),
                                jnp.float64)
        assert isinstance(w, StructuredProjection)
        m = np.asarray(project(w, jnp.eye(dim, dtype=jnp.float64)))  # (dim, 2 dim): column i is w_i
    for block in (m[:, :dim], m[:, dim:]):
        gram = block.T @ block
        off = gram - np.diag(np.diag(gram))
        assert np.abs(off).max() < 1e-10 * np.abs(gram).max()
    # radii: |w|^2 ~ chi-square(d), mean d, var 2d: 2d draws give a mean within 5 s.e.
    norms = np.sum(m**2, axis=0)
    assert abs(norms.mean() - dim) < 5 * np.sqrt(2 * dim / (2 * dim))


@pytest.mark.parametrize("leverage", [False, True])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_random_features_vs_neural_tangents(tabular, depth, leverage):
    init_fn, feature_fn, kernel_fn = nf.serial(*fc_stack(nf, depth, b_std=0.1 if depth == 2 else None))
    x = tabular
    k = np.asarray(kernel_fn(x, x, "ntk"))
    errs = []
    for dim in (512, 4096):
        params = init_fn(jax.random.PRNGKey(depth), x.shape, nf.RandomFeatures(dim=dim, leverage=leverage))
        phi = feature_fn(params, x)
        errs.append(rel_fro(phi @ phi.T, k))
    assert errs[1] < errs[0]
    assert errs[1] < 0.08


def test_error_falls_as_dim_grows(tabular):
    init_fn, feature_fn, kernel_fn = nf.serial(*fc_stack(nf, 2))
    k = kernel_fn(tabular, tabular, "ntk")
    for method in (lambda d: nf.Sketch(dim=d, degree=8, mode="layerwise"), lambda d: nf.RandomFeatures(dim=d)):
        errs = []
        for dim in (256, 1024, 4096):
            e = [rel_fro(f @ f.T, k) for f in
                 (feature_fn(init_fn(jax.random.PRNGKey(s), tabular.shape, method(dim)), tabular) for s in range(2))]
            errs.append(np.mean(e))
        assert errs[0] > errs[1] > errs[2], errs


@pytest.mark.parametrize("method", [nf.Sketch(dim=1024), nf.Sketch(dim=1024, mode="layerwise"), nf.RandomFeatures(dim=1024)])
def test_float64(tabular, method):
    with jax.enable_x64(True):
        x = tabular.astype(np.float64)
        init_fn, feature_fn, kernel_fn = nf.serial(*fc_stack(nf, 2))
        params = init_fn(jax.random.PRNGKey(0), x.shape, method)
        phi = feature_fn(params, x)
        k = kernel_fn(x, x, "ntk")
        assert phi.dtype == jnp.float64 and k.dtype == jnp.float64
        # layerwise at dim 1024: 0.088 on average over 8 keys (0.104 at the worst)
        assert rel_fro(phi @ phi.T, k) < 0.15


def test_cpu_batch_budget_follows_the_cache_and_the_environment(tabular, monkeypatch):
    from ntkfeat import network

    params = nf.serial(*fc_stack(nf, 2))[0](jax.random.PRNGKey(0), tabular.shape, nf.RandomFeatures(dim=512))
    monkeypatch.delenv(network.ENV_BATCH_BYTES, raising=False)
    monkeypatch.setattr(network, "DEFAULT_BATCH_BYTES", None)
    low, high = network._CPU_BUDGET_RANGE
    cache = network.cpu_cache_bytes()  # None off Linux: then 32 MB
    expected = 32 << 20 if cache is None else min(max(cache, low), high)
    # Shared by the batches computed at once on a CPU (two by default, one when set so).
    assert nf.batching.concurrent_batches() == nf.batching.CPU_WORKERS
    assert network._batch_budget() == expected // nf.batching.CPU_WORKERS
    monkeypatch.setattr(nf.batching, "CPU_WORKERS", 1)
    assert network._batch_budget() == expected
    # The batch shrinks with the budget (rows of intermediates, rounded to the devices).
    monkeypatch.setenv(network.ENV_BATCH_BYTES, str(1 << 22))
    small = network.default_batch_size(params)
    monkeypatch.setenv(network.ENV_BATCH_BYTES, str(1 << 24))
    assert network.default_batch_size(params) >= 3 * small
    for bad in ("lots", "0", "-5"):
        monkeypatch.setenv(network.ENV_BATCH_BYTES, bad)
        with pytest.raises(ValueError, match="NTKFEAT_BATCH_BYTES"):
            network.default_batch_size(params)


@pytest.mark.parametrize("method", [nf.Sketch(dim=512), nf.Sketch(dim=512, mode="layerwise"), nf.RandomFeatures(dim=512, leverage=True)])
def test_jit_batching_and_determinism(tabular, method):
    init_fn, feature_fn, _ = nf.serial(*fc_stack(nf, 2))
    params = init_fn(jax.random.PRNGKey(3), tabular.shape, method)
    full = np.asarray(feature_fn(params, tabular))
    jitted = np.asarray(jax.jit(feature_fn)(params, tabular))
    batched = np.asarray(feature_fn(params, tabular, batch_size=7))
    np.testing.assert_allclose(jitted, full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batched, full, rtol=1e-5, atol=1e-5)
    again = init_fn(jax.random.PRNGKey(3), tabular.shape, method)
    np.testing.assert_array_equal(np.asarray(feature_fn(again, tabular)), full)
    other = init_fn(jax.random.PRNGKey(4), tabular.shape, method)
    assert not np.allclose(np.asarray(feature_fn(other, tabular)), full)
    streamed = np.concatenate([np.asarray(f) for _, f in nf.iterate_features(params, tabular, batch_size=30)])
    np.testing.assert_allclose(streamed, full, rtol=1e-5, atol=1e-5)


def test_batches_computed_in_threads_equal_one_at_a_time(tabular, monkeypatch):
    from ntkfeat import batching

    init_fn, feature_fn, _ = nf.serial(*fc_stack(nf, 2))
    params = init_fn(jax.random.PRNGKey(3), tabular.shape, nf.RandomFeatures(dim=512))
    runs = {}
    for workers in (1, 2, 3):
        monkeypatch.setattr(batching, "CPU_WORKERS", workers)
        assert batching.concurrent_batches() == workers  # one CPU device in this process
        runs[workers] = [(s, np.asarray(f)) for s, f in nf.iterate_features(params, tabular, batch_size=7)]
    for workers in (2, 3):  # same batches, same order, same values (the same programs run)
        assert [s for s, _ in runs[workers]] == [s for s, _ in runs[1]]
        for (_, a), (_, b) in zip(runs[workers], runs[1]):
            np.testing.assert_array_equal(a, b)
    # Leaving early: the generator closes and its pool waits for the running batches.
    it = nf.iterate_features(params, tabular, batch_size=7)
    next(it), next(it)
    it.close()
    # An error in a batch computed by a thread reaches the caller.
    calls = []

    def fn(xb):
        calls.append(len(calls))
        if len(calls) == 4:
            raise FloatingPointError("batch 4")
        return xb * 2

    with pytest.raises(FloatingPointError, match="batch 4"):
        list(batching.iterate(fn, np.ones((40, 3), np.float32), 5))


def test_threads_keep_the_callers_jax_scopes(tabular, monkeypatch):
    # A new thread starts from JAX's global settings: inside `with jax.enable_x64(True)` batches
    # computed by threads would silently drop to float32. They run in the caller's thread there.
    from ntkfeat import batching

    monkeypatch.setattr(batching, "CPU_WORKERS", 2)
    fn = jax.jit(lambda a: a * 2)
    x = np.arange(60.0).reshape(20, 3)
    assert {o.dtype for _, o in batching.iterate(fn, x, 4)} == {np.dtype(np.float32)}
    with jax.enable_x64(True):
        outs = [o for _, o in batching.iterate(fn, x, 4)]
    assert {o.dtype for o in outs} == {np.dtype(np.float64)}
    np.testing.assert_array_equal(np.concatenate(outs), 2 * x)


def test_nngp_features(tabular):
    init_fn, feature_fn, kernel_fn = nf.serial(*fc_stack(nf, 2))
    k = kernel_fn(tabular, tabular, "nngp")
    # The last ReLU gives the NNGP part a fifth of dim (819 features here); over 5 keys its error
    # was 0.035-0.054 (Sketch) and 0.048-0.093 (RandomFeatures).
    for method in (nf.Sketch(dim=4096, mode="layerwise"), nf.RandomFeatures(dim=4096)):
        phi = feature_fn(init_fn(jax.random.PRNGKey(0), tabular.shape, method), tabular, "nngp")
        assert rel_fro(phi @ phi.T, k) < 0.12
    with pytest.raises(ValueError, match="layerwise"):
        feature_fn(init_fn(jax.random.PRNGKey(0), tabular.shape, nf.Sketch(dim=512)), tabular, "nngp")


@pytest.mark.parametrize("method", [nf.Sketch(dim=512), nf.Sketch(dim=512, mode="layerwise"), nf.RandomFeatures(dim=512)])
def test_zero_row_gives_zero_features(tabular, method):
    x = tabular[:10].copy()
    x[3] = 0
    init_fn, feature_fn, kernel_fn = nf.serial(*fc_stack(nf, 2))
    phi = np.asarray(feature_fn(init_fn(jax.random.PRNGKey(0), x.shape, method), x))
    assert np.all(phi[3] == 0)
    assert np.all(np.asarray(kernel_fn(x, x, "ntk"))[3] == 0)
    assert np.all(np.isfinite(phi))


def test_bad_inputs_raise_clear_errors(tabular):
    init_fn, feature_fn, kernel_fn = nf.serial(*fc_stack(nf, 2))
    params = init_fn(jax.random.PRNGKey(0), tabular.shape, nf.Sketch(dim=512))
    bad = tabular[:5].copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        feature_fn(params, bad)
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        kernel_fn(bad, bad)
    with pytest.raises(ValueError, match="shape"):
        feature_fn(params, tabular[:, :5])
    with pytest.raises(ValueError, match="input_shape"):
        init_fn(jax.random.PRNGKey(0), (10,), nf.Sketch(dim=512))
    with pytest.raises(ValueError, match="too small"):
        init_fn(jax.random.PRNGKey(0), (-1, 784), nf.Sketch(dim=40, degree=8))
    with pytest.raises(ValueError, match="degree"):
        nf.Sketch(dim=512, degree=0)
    with pytest.raises(ValueError, match="dim"):
        nf.RandomFeatures(dim=0)
    with pytest.raises(ValueError, match="mode"):
        nf.Sketch(mode="fast")
    with pytest.raises(ValueError, match="renormalize"):
        nf.Sketch(renormalize="yes")
    with pytest.raises(TypeError):
        nf.serial(nf.Dense(), "relu")
    with pytest.raises(ValueError, match="W_std"):
        nf.Dense(W_std=float("nan"))
    with pytest.raises(ValueError, match="does not apply"):
        nf.serial(*fc_stack(nf, 2, b_std=0.1))[0](jax.random.PRNGKey(0), tabular.shape, nf.Sketch(mode="oneshot"))
    other_init, other_feature, _ = nf.serial(*fc_stack(nf, 1))
    with pytest.raises(ValueError, match="different architecture"):
        other_feature(params, tabular)


def test_exact_kernel_batching(tabular):
    _, _, kernel_fn = nf.serial(*fc_stack(nf, 2))
    full = np.asarray(kernel_fn(tabular, tabular[:37], "ntk"))
    blocked = np.asarray(kernel_fn(tabular, tabular[:37], "ntk", batch_size=16))
    assert blocked.shape == (100, 37)
    np.testing.assert_allclose(blocked, full, rtol=1e-4, atol=1e-5)


def test_exact_kernel_runs_at_full_matmul_precision(tabular, monkeypatch):
    """The oracle traces neural-tangents under 'highest' matmul precision (TF32, a GPU's default,
    is off by ~5e-4); precision=None leaves JAX's default. CPUs ignore the flag, so the config
    seen inside the call is checked."""
    seen = []
    check = nf.network.check_inputs

    def spy(*args, **kwargs):
        seen.append(jax.config.jax_default_matmul_precision)
        return check(*args, **kwargs)

    monkeypatch.setattr(nf.network, "check_inputs", spy)
    kernel_fn = nf.serial(*fc_stack(nf, 1))[2]
    k = kernel_fn(tabular[:4])
    np.testing.assert_allclose(kernel_fn(tabular[:4], precision=None), k, rtol=1e-4)
    assert seen == ["highest", None]
    with pytest.raises(ValueError, match="bogus"):
        kernel_fn(tabular[:4], precision="bogus")


def test_renormalized_sketches_have_the_norms_they_estimate():
    # Renormalized kappa features have norm sqrt(p(1)) for each head's polynomial p, exactly; the
    # plain ones only in expectation. A sketched convolution keeps the stacked patches' norm.
    from ntkfeat.features import linear
    from ntkfeat.features.sketch import kappa_features
    from ntkfeat.sketches import dot_product_features_init

    u = np.random.RandomState(0).randn(7, 300)
    u = jnp.asarray(u / np.linalg.norm(u, axis=1, keepdims=True), jnp.float32)
    coeffs = [np.array([0.3, 0.5, 0.2]), np.array([0.0, 0.6, 0.1])]
    p = dot_product_features_init(jax.random.PRNGKey(0), 300, coeffs, [256, 256])
    for renormalize in (False, True):
        for head, c in zip(kappa_features(p, u, renormalize), coeffs):
            norms = np.linalg.norm(np.asarray(head), axis=1)
            if renormalize:
                np.testing.assert_allclose(norms, np.sqrt(c.sum()), rtol=1e-5)
            else:
                assert np.abs(norms - np.sqrt(c.sum())).max() > 1e-3  # a sketch, not exact
    x = jnp.asarray(np.random.RandomState(1).randn(2, 6, 6, 50), jnp.float32)
    mix = linear._window_mix_init(jax.random.PRNGKey(0), 50, (3, 3), 64, jnp.float32)
    out = linear._window_mix(mix, x, (3, 3), (1, 1), "VALID", renormalize=True)
    squares = jax.lax.reduce_window(jnp.sum(x * x, -1), 0.0, jax.lax.add, (1, 3, 3), (1, 1, 1), "VALID")
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), np.sqrt(np.asarray(squares)), rtol=1e-5)


def test_auto_degree_grows_with_dim_and_beats_degree_8():
    # Sketch(degree='auto') (one-shot) takes the degree whose estimated error is smallest: higher
    # degrees (less fit bias near correlation 1) where dim affords their sketch variance. On 300
    # diabetes rows, depth 2, mean of keys 0 and 1, it measured 0.0172 vs 0.0204 (degree 8) at
    # dim 1024 and 0.0038 vs 0.0090 at 16384; asserted: lower at both, and at most 0.6x at 16384.
    from ntkfeat.data import load_dataset
    from ntkfeat.features.oneshot import AUTO_DEGREES

    x = load_dataset("diabetes").x_train[:300]
    init_fn, feature_fn, kernel_fn = nf.serial(nf.Dense(W_std=2**0.5), nf.Relu(), nf.Dense(W_std=2**0.5), nf.Relu(),
                                               nf.Dense())
    with jax.enable_x64(True):
        k = np.asarray(kernel_fn(x.astype(np.float64), None, "ntk"))
    chosen, ratios = [], []
    for dim in (1024, 16384):
        errors = {}
        for degree in ("auto", 8):
            e = []
            for key in (0, 1):
                params = init_fn(jax.random.PRNGKey(key), x.shape, nf.Sketch(dim=dim, degree=degree))
                phi = np.asarray(feature_fn(params, x), np.float64)
                e.append(np.linalg.norm(phi @ phi.T - k) / np.linalg.norm(k))
            errors[degree] = np.mean(e)
            if degree == "auto":
                chosen.append(len(params.params.coeffs) - 1)
        ratios.append(errors["auto"] / errors[8])
    assert all(q in AUTO_DEGREES for q in chosen) and chosen == sorted(chosen), chosen
    assert ratios[0] < 1.0 and ratios[1] <= 0.6, ratios

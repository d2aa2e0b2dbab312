"""No silent wrong answers at the edges: input scale, NaN under jit, half precision, argument
types and names, zero weights, bad files."""

import jax
import numpy as np
import pytest

import ntkfeat as nf

from conftest import fc_stack

METHODS = [nf.Sketch(dim=512), nf.Sketch(dim=512, mode="layerwise"), nf.RandomFeatures(dim=512),
           nf.RandomFeatures(dim=512, leverage=True)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("depth", [1, 2])
def test_features_scale_exactly_for_bias_free_stacks(tabular, method, depth):
    # A bias-free ReLU network is positively homogeneous: phi(c x) = c phi(x). The norms are
    # factored out, so float32 features stay exact from 1e-30 to 1e30 (squared norms would leave
    # float32's range beyond 1e+-19).
    init_fn, feature_fn, _ = nf.serial(*fc_stack(nf, depth))
    x = tabular[:20]
    params = init_fn(jax.random.PRNGKey(0), x.shape, method)
    assert params.power == 1.0
    base = np.asarray(feature_fn(params, x), np.float64)
    for c in (1e-30, 1e-18, 1e-5, 1e5, 1e18, 1e30):
        phi = np.asarray(feature_fn(params, (x * c).astype(np.float32)), np.float64)
        np.testing.assert_allclose(phi / c, base, rtol=2e-5, atol=2e-6 * np.abs(base).max())


def test_homogeneity_degree_is_tracked(tabular):
    x = tabular[:5]

    def power(*layers, method=nf.Sketch(dim=256, mode="layerwise")):
        return nf.serial(*layers)[0](jax.random.PRNGKey(0), x.shape, method).power

    assert power(nf.Dense(8), nf.RectifiedMonomial(2), nf.Dense(8), nf.Relu(), nf.Dense(1)) == 2.0
    assert power(nf.Dense(8, b_std=0.1), nf.Relu(), nf.Dense(1)) is None  # a bias
    assert power(nf.Dense(8), nf.Erf(), nf.Dense(1)) is None  # a general activation
    assert power(nf.Dense(8), nf.Sign(), nf.Dense(1)) == 0.0


def test_nonfinite_inputs_raise_under_jit(tabular):
    init_fn, feature_fn, _ = nf.serial(*fc_stack(nf, 2))
    params = init_fn(jax.random.PRNGKey(0), tabular.shape, nf.Sketch(dim=256))
    bad = tabular[:8].copy()
    bad[5, 3] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf values in 1 row\(s\) \(first: \[5\]\)"):
        feature_fn(params, bad)
    # Traced: the shape at trace time, the values by a host callback at run time (JAX wraps the
    # error in its own runtime error, with the same message).
    with pytest.raises(Exception, match="NaN or inf values"):
        jax.block_until_ready(jax.jit(feature_fn)(params, bad))
    with pytest.raises(ValueError, match="shape"):
        jax.jit(feature_fn)(params, bad[:, :4])
    np.testing.assert_allclose(np.asarray(jax.jit(feature_fn)(params, tabular[:8])),
                               np.asarray(feature_fn(params, tabular[:8])), rtol=1e-5, atol=1e-6)


def test_half_precision_inputs_are_computed_in_float32(tabular):
    init_fn, feature_fn, kernel_fn = nf.serial(*fc_stack(nf, 1))
    params = init_fn(jax.random.PRNGKey(0), tabular.shape, nf.Sketch(dim=256))
    half = tabular[:10].astype(np.float16)
    phi = feature_fn(params, half)
    assert phi.dtype == np.float32
    np.testing.assert_allclose(np.asarray(phi), np.asarray(feature_fn(params, half.astype(np.float32))), rtol=1e-6)
    assert kernel_fn(half).dtype == np.float32


def test_arguments_are_typed_and_named(tabular):
    with pytest.raises(ValueError, match="RandomFeatures.leverage must be True or False, got 'no'"):
        nf.RandomFeatures(leverage="no")
    with pytest.raises(ValueError, match="Sketch.renormalize must be True or False, got 1"):
        nf.Sketch(renormalize=1)
    with pytest.raises(ValueError, match="Sketch.dim must be an integer >= 2, got 512.0"):
        nf.Sketch(dim=512.0)
    assert nf.Sketch(dim=np.int64(512)).dim == 512 and type(nf.Sketch(dim=np.int64(512)).dim) is int
    assert nf.Dense(W_std=np.float32(1.5)).W_std == 1.5
    with pytest.raises(ValueError, match="Conv.filter_shape"):
        nf.Conv(8, (3.0, 3))
    init_fn, feature_fn, kernel_fn = nf.serial(*fc_stack(nf, 2))
    with pytest.raises(ValueError, match="input_shape entry must be an integer, got 9.5"):
        init_fn(jax.random.PRNGKey(0), (-1, 9.5), nf.Sketch(dim=256))
    params = init_fn(jax.random.PRNGKey(0), tabular.shape, nf.Sketch(dim=256))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 2.5"):
        feature_fn(params, tabular, batch_size=2.5)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got -1"):
        kernel_fn(tabular, tabular, batch_size=-1)
    # Too small a dimension is reported with the dimension the user gave.
    with pytest.raises(ValueError, match=r"RandomFeatures\(dim=2\) is too small"):
        init_fn(jax.random.PRNGKey(0), tabular.shape, nf.RandomFeatures(dim=2))
    with pytest.raises(ValueError, match=r"Sketch\(dim=40, degree=8\) is too small"):
        init_fn(jax.random.PRNGKey(0), tabular.shape, nf.Sketch(dim=40, mode="layerwise"))


@pytest.mark.parametrize("method", METHODS[:3])
def test_zero_weights_give_the_zero_kernel(tabular, method):
    x = tabular[:10]
    for layers in ([nf.Dense(8, W_std=0.0), nf.Relu(), nf.Dense(1)],
                   [nf.Dense(8), nf.Erf(), nf.Dense(8, W_std=0.0), nf.Gelu(), nf.Dense(1, W_std=0.0)]):
        init_fn, feature_fn, kernel_fn = nf.serial(*layers)
        phi = np.asarray(feature_fn(init_fn(jax.random.PRNGKey(0), x.shape, method), x))
        k = np.asarray(kernel_fn(x, x))
        assert np.all(np.isfinite(phi))
        np.testing.assert_allclose(phi @ phi.T, k, atol=1e-6)


def test_a_text_file_is_not_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="not an npz file"):
        nf.data.load_dataset("npz", path=str(path))


def test_init_is_traceable_and_vmaps_to_an_ensemble(tabular):
    # Parameter draws are jax.random functions of the key at static shapes: jax.vmap(init_fn) over
    # keys gives an ensemble, jax.jit(init_fn) works, and both equal separate eager calls (the
    # eager path shapes the same random bits on the host: float formulas agree to an ulp or two).
    # Every method on a ReLU and an Erf stack (their activation rules differ: homogeneous vs Mehler
    # series); jax.jit(init_fn) traces the same init as vmap, so it is checked once per method.
    x = tabular[:20]
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    relu, erf = fc_stack(nf, 2), [nf.Dense(64, W_std=1.3), nf.Erf(), nf.Dense(1)]
    cases = [(relu, nf.Sketch(dim=512, degree=8), True), (erf, nf.Sketch(dim=512, degree=8), False),
             (relu, nf.Sketch(dim=512, mode="layerwise"), True), (erf, nf.Sketch(dim=512, mode="layerwise"), False),
             (relu, nf.RandomFeatures(dim=512, leverage=True), False), (erf, nf.RandomFeatures(dim=512, leverage=True), True)]
    for layers, method, check_jit in cases:
        init_fn, feature_fn, _ = nf.serial(*layers)
        ensemble = jax.vmap(lambda k: init_fn(k, x.shape, method))(keys)
        phis = np.asarray(jax.vmap(feature_fn, (0, None))(ensemble, x))
        assert phis.shape[0] == 3
        # One member against an eager call, another against a jitted one.
        np.testing.assert_allclose(phis[1], np.asarray(feature_fn(init_fn(keys[1], x.shape, method), x)),
                                   rtol=1e-4, atol=1e-5)
        if check_jit:
            jitted = jax.jit(init_fn, static_argnums=(1, 2))(keys[0], x.shape, method)
            np.testing.assert_allclose(np.asarray(feature_fn(jitted, x)), phis[0], rtol=1e-4, atol=1e-5)
        assert not np.allclose(phis[0], phis[1])

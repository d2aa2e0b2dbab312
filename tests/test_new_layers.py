"""FanInProd, Elementwise and Dropout against neural-tangents' kernels of the same layers.

Kernel errors are relative Frobenius errors of the NTK on 20 standardized rows of the diabetes
data at dim 4096, key 0; each tolerance is twice the worst of keys 0-7 measured on these rows (as
in tests/test_architectures.py, whose depth-2 ReLU stacks measure 0.044 / 0.049 at this dim):
the features are random, so a regression shows as an error several times its usual size.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkfeat as nf

from conftest import rel_fro

DIM = 4096


@pytest.fixture(scope="module")
def rows(tabular):
    return tabular[:20]


def _kernel(kernel_fn, x, get="ntk"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neural-tangents: "FanIn layers assume independent inputs"
        return np.asarray(kernel_fn(x, x, get), np.float64)


def _error(arch, x, method, key=0, get="ntk", k=None):
    init_fn, feature_fn, kernel_fn = arch
    k = _kernel(kernel_fn, x, get) if k is None else k
    phi = np.asarray(feature_fn(init_fn(jax.random.PRNGKey(key), x.shape, method), x, get), np.float64)
    return rel_fro(phi @ phi.T, k)


# ------------------------------------------------------------------------------------ FanInProd


def _dense_relu(w_std, b_std, width=512):
    return nf.serial(nf.Dense(width, W_std=w_std, b_std=b_std), nf.Relu())


# Two Dense-Relu branches multiplied, then the readout; and three branches, the third the input
# itself (its NTK is zero: no NTK term of its own). Measured errors at dim 4096, keys 0-7:
# two 0.035-0.048 (Sketch) and 0.043-0.068 (RandomFeatures); three 0.037-0.050 and 0.036-0.075.
PRODUCTS = {
    "two": (nf.serial(nf.FanOut(2), nf.parallel(_dense_relu(2**0.5, 0.1), _dense_relu(1.5, 0.3)), nf.FanInProd(),
                      nf.Dense(1)), 0.1, 0.14),
    # neural-tangents multiplies equal shapes only: the branches keep the input's 10 channels.
    "three": (nf.serial(nf.FanOut(3), nf.parallel(_dense_relu(2**0.5, 0.1, 10), _dense_relu(1.5, 0.3, 10),
                                                   nf.Identity()), nf.FanInProd(), nf.Dense(1)), 0.1, 0.15),
}


@pytest.mark.parametrize("name", list(PRODUCTS))
def test_fan_in_prod_against_neural_tangents(rows, name):
    arch, sketch_tol, rf_tol = PRODUCTS[name]
    init_fn, feature_fn, kernel_fn = arch
    k = _kernel(kernel_fn, rows)
    for method, tol in ((nf.Sketch(dim=DIM), sketch_tol), (nf.RandomFeatures(dim=DIM), rf_tol)):
        params = init_fn(jax.random.PRNGKey(0), rows.shape, method)
        phi = np.asarray(feature_fn(params, rows), np.float64)
        assert phi.shape == (len(rows), DIM)
        err = rel_fro(phi @ phi.T, k)
        assert err < tol, (name, type(method).__name__, err)
    if name == "two":  # under jit too (one method: the product's rule is the same for both)
        np.testing.assert_allclose(np.asarray(jax.jit(feature_fn)(params, rows)), phi, rtol=1e-4, atol=1e-5)


def test_fan_in_prod_is_exact_where_the_products_are_written_out(rows):
    # Linear branches on 10 inputs: each branch has 11 NNGP features (with the bias) and 11 NTK
    # features, so every product (121 wide) fits the inner width and no sketch is drawn. What is
    # left is float32 round-off: this checks the rule itself, nngp = nngp_1 nngp_2 and
    # ntk = ntk_1 nngp_2 + nngp_1 ntk_2, against neural-tangents.
    arch = nf.serial(nf.FanOut(2), nf.parallel(nf.Dense(10, 1.3, 0.2), nf.Dense(10, 0.8, 0.5)), nf.FanInProd(),
                     nf.Dense(1, 1.1, 0.1))
    for method in (nf.Sketch(dim=512), nf.RandomFeatures(dim=512)):
        for get in ("ntk", "nngp"):
            assert _error(arch, rows, method, get=get) < 1e-5, (type(method).__name__, get)


# RandomFeatures' error on 4 images (5 x 5 x 2) at dim 2048, worst of keys 0-7 (0.021-0.066;
# Sketch's 0.023-0.051).
MEASURED_CONV = 0.066


def test_fan_in_prod_of_convolutions(images):
    # The product of the branches' kernels at every pair of positions is the inner product of
    # the tensor products of their features at those positions: convolutional branches need
    # nothing more. One method: the product's rule is the same for both.
    arch = nf.serial(nf.Conv(4, (3, 3), padding="SAME", W_std=1.5), nf.FanOut(2),
                     nf.parallel(nf.serial(nf.Relu(), nf.Conv(4, (3, 3), padding="SAME", W_std=1.4)),
                                 nf.Conv(4, (1, 1))),
                     nf.FanInProd(), nf.Flatten(), nf.Dense(1))
    assert _error(arch, images, nf.RandomFeatures(dim=2048)) < 2 * MEASURED_CONV
    assert _error(arch, images, nf.Sketch(dim=2048)) < 2 * 0.051  # Sketch: 0.023-0.051 over keys 0-7


def _check_float64(arch, x):
    # float64 and float32 draw the same parameters: features agree to float32 precision, and the
    # float64 features and kernel are float64 (as tests/test_architectures.py checks per activation).
    init_fn, feature_fn, kernel_fn = arch
    for method in (nf.Sketch(dim=512), nf.RandomFeatures(dim=512)):
        plain = np.asarray(feature_fn(init_fn(jax.random.PRNGKey(2), x.shape, method), x))
        with jax.enable_x64(True):
            x64 = x.astype(np.float64)
            phi = feature_fn(init_fn(jax.random.PRNGKey(2), x64.shape, method), x64)
            assert phi.dtype == jnp.float64 and _kernel_dtype(kernel_fn, x64) == jnp.float64
            np.testing.assert_allclose(np.asarray(phi), plain, rtol=2e-3, atol=2e-4, err_msg=type(method).__name__)


def _kernel_dtype(kernel_fn, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kernel_fn(x, x, "ntk").dtype


def test_fan_in_prod_in_float64(rows):
    _check_float64(PRODUCTS["two"][0], rows[:8])


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(4, 5, 5, 2)).astype(np.float32)


def test_fan_in_prod_errors(rows):
    def init(*layers):
        return nf.serial(*layers)[0](jax.random.PRNGKey(0), rows.shape, nf.Sketch(dim=256))

    with pytest.raises(ValueError, match="FanInProd needs branches"):
        init(nf.Dense(8), nf.FanInProd())
    with pytest.raises(ValueError, match="FanInProd needs branches of equal widths"):
        init(nf.FanOut(2), nf.parallel(nf.Dense(16), nf.Identity()), nf.FanInProd())
    # The product is not Gaussian (neural-tangents' rule): an activation needs a Dense first.
    with pytest.raises(ValueError, match="Relu needs Gaussian"):
        init(nf.FanOut(2), nf.parallel(nf.Dense(10), nf.Dense(10)), nf.FanInProd(), nf.Relu())
    with pytest.raises(ValueError, match="FanInProd"):
        init(nf.Dense(8), nf.FanOut(2))
    assert "FanInProd" not in nf.MISSING_LAYERS


# ---------------------------------------------------------------------------------- Elementwise

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(40)  # E f(g) = sum w f(node) / sqrt(2 pi)
_G1, _G2 = np.meshgrid(_NODES, _NODES, indexing="ij")
_W2 = np.outer(_WEIGHTS, _WEIGHTS) / (2 * np.pi)


def _gaussian_pair_mean(f):
    """(cov12, var1, var2) -> E[f(u) f(v)] over the centred Gaussian pair with that covariance,
    by 40 x 40-point Gauss-Hermite quadrature (u = s1 g1, v = s2 (rho g1 + sqrt(1 - rho^2) g2))."""

    def mean(cov12, var1, var2):
        s1, s2 = jnp.sqrt(var1), jnp.sqrt(var2)
        rho = jnp.clip(cov12 / jnp.maximum(s1 * s2, 1e-30), -1.0, 1.0)
        u = s1 * _G1
        v = s2 * (rho * _G1 + jnp.sqrt(1 - rho * rho) * _G2)
        return jnp.sum(_W2 * f(u) * f(v))

    return mean


# tanh has no closed-form dual: neural-tangents' Elementwise takes it from the user. Here by
# quadrature, with its derivative kernel given too (autodiff through sqrt(1 - rho^2) is NaN on
# the diagonal). It agrees with ElementwiseNumerical(tanh, deg=60) to 5.8e-4 on these rows.
TANH_NNGP = _gaussian_pair_mean(jnp.tanh)
TANH_D_NNGP = _gaussian_pair_mean(lambda z: 1 - jnp.tanh(z) ** 2)


def _fc(act):
    return nf.serial(nf.Dense(512, W_std=1.2, b_std=0.1), act, nf.Dense(512, W_std=1.2, b_std=0.1), act,
                     nf.Dense(1))


def test_elementwise_tanh_against_neural_tangents(rows):
    arch = _fc(nf.Elementwise(jnp.tanh, TANH_NNGP, TANH_D_NNGP))
    init_fn, feature_fn, kernel_fn = arch
    k = _kernel(kernel_fn, rows)
    # The oracle is neural-tangents' Elementwise with the same functions; checked against its
    # ElementwiseNumerical (deg 25: 0.45% apart, the quadrature of that layer's own oracle).
    k_numerical = _kernel(_fc(nf.ElementwiseNumerical(jnp.tanh, deg=25))[2], rows)
    assert rel_fro(k, k_numerical) < 0.01
    # Measured at keys 0-7: one-shot Sketch (the default for FC stacks of general activations)
    # 0.0058-0.0089, RandomFeatures 0.026-0.037.
    for method, tol in ((nf.Sketch(dim=DIM), 0.018), (nf.RandomFeatures(dim=DIM), 0.075)):
        assert _error(arch, rows, method, k=k) < tol, type(method).__name__


def test_elementwise_in_float64(rows):
    _check_float64(_fc(nf.Elementwise(jnp.tanh, TANH_NNGP, TANH_D_NNGP)), rows[:8])


def test_elementwise_features_are_those_of_its_function(rows):
    # The features come from fn alone: the same as ElementwiseNumerical's of the same function,
    # key and method; without nngp_fn the exact kernel is unavailable, as in
    # neural-tangents (there a bare NotImplementedError), and the features still work.
    ours = _fc(nf.Elementwise(jnp.tanh))
    theirs = _fc(nf.ElementwiseNumerical(jnp.tanh, deg=25))
    method = nf.RandomFeatures(dim=256)
    a = ours[1](ours[0](jax.random.PRNGKey(3), rows.shape, method), rows)
    b = theirs[1](theirs[0](jax.random.PRNGKey(3), rows.shape, method), rows)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(NotImplementedError, match="without nngp_fn.*ElementwiseNumerical"):
        ours[2](rows, rows)
    with pytest.raises(ValueError, match="Elementwise needs fn"):
        nf.Elementwise()
    with pytest.raises(ValueError, match="Elementwise needs fn"):
        nf.Elementwise(nngp_fn=TANH_NNGP)
    with pytest.raises(ValueError, match="Elementwise.nngp_fn must be a function"):
        nf.Elementwise(jnp.tanh, 1.0)


# -------------------------------------------------------------------------------------- Dropout


def test_dropout_test_mode_is_the_identity(rows):
    # Same layer count, same keys: the features of Dropout(mode='test') are those of Identity
    # (one method: the rule is the same for both).
    def arch(middle):
        return nf.serial(nf.Dense(512, W_std=2**0.5, b_std=0.1), nf.Relu(), middle, nf.Dense(1))

    dropped, kept = arch(nf.Dropout(0.5, mode="test")), arch(nf.Identity())
    method = nf.RandomFeatures(dim=256)
    a = dropped[1](dropped[0](jax.random.PRNGKey(0), rows.shape, method), rows)
    b = kept[1](kept[0](jax.random.PRNGKey(0), rows.shape, method), rows)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(_kernel(dropped[2], rows), _kernel(kept[2], rows), rtol=1e-6)


def test_dropout_train_mode_has_a_kernel_and_no_features(rows):
    arch = nf.serial(nf.Dense(512, W_std=2**0.5, b_std=0.1), nf.Relu(), nf.Dropout(0.5), nf.Dense(1))
    test = nf.serial(nf.Dense(512, W_std=2**0.5, b_std=0.1), nf.Relu(), nf.Dropout(0.5, "test"), nf.Dense(1))
    # neural-tangents' train-mode rule: the kernel of an input with itself times 1 / rate, the rest
    # unchanged. No map of one input at a time has that jump on the diagonal.
    k_train, k_test = _kernel(arch[2], rows), _kernel(test[2], rows)
    off = ~np.eye(len(rows), dtype=bool)
    np.testing.assert_allclose(k_train[off], k_test[off], rtol=1e-5, atol=1e-6)
    assert np.all(np.diag(k_train) > 1.2 * np.diag(k_test))
    for method in (nf.Sketch(dim=256), nf.RandomFeatures(dim=256)):
        with pytest.raises(ValueError, match=r"Dropout\(rate=0.5, mode='train'\).*mode='test'"):
            arch[0](jax.random.PRNGKey(0), rows.shape, method)


def test_dropout_arguments_as_in_neural_tangents():
    assert nf.Dropout(0.5).mode == "train"  # neural-tangents' default
    for rate, mode in ((0.0, "test"), (1.5, "test"), (-0.1, "train"), (0.5, "eval"), (True, "test")):
        with pytest.raises(ValueError, match="Dropout"):
            nf.Dropout(rate, mode)
    assert nf.Dropout(1, "test").rate == 1.0

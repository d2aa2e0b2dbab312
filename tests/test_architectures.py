"""General architectures against neural-tangents: every activation, the combinators, LayerNorm,
pooling and graph aggregation, under both methods, jitted and not, in float32 and float64.

Tolerances are a few times the errors measured on these rows and keys (stated beside each):
the features are random, so a regression shows as an error several times its usual size.
"""

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkfeat as nf
from ntkfeat import compat
from ntkfeat.exact import duals

from conftest import rel_fro

ACTIVATIONS = {
    "Relu": nf.Relu(), "LeakyRelu": nf.LeakyRelu(0.1), "ABRelu": nf.ABRelu(-0.5, 1.0), "Abs": nf.Abs(),
    "Sign": nf.Sign(), "Erf": nf.Erf(), "Gelu": nf.Gelu(), "Sigmoid_like": nf.Sigmoid_like(), "Sin": nf.Sin(),
    "Cos": nf.Cos(), "Exp": nf.Exp(0.5, 0.5), "Gaussian": nf.Gaussian(), "ExpNormalized": nf.ExpNormalized(),
    "Rbf": nf.Rbf(0.5), "Gabor": nf.Gabor(), "Hermite": nf.Hermite(2), "Monomial": nf.Monomial(2),
    "RectifiedMonomial": nf.RectifiedMonomial(2), "Polynomial": nf.Polynomial((0.2, 1.0, -0.3)),
    "ElementwiseNumerical": nf.ElementwiseNumerical(jnp.tanh, deg=25),
}


def _fc(act, depth=2, w=1.2):
    layers = []
    for _ in range(depth):
        layers += [nf.Dense(512, W_std=w, b_std=0.1), act]
    return nf.serial(*layers, nf.Dense(1, W_std=1.0))


def _masked_rel(a, b):
    # neural-tangents' RectifiedMonomial is NaN where two inputs are perfectly correlated (its closed
    # form divides by sin(theta)); those entries are left out of the comparison.
    mask = np.isfinite(b)
    return float(np.linalg.norm((a - b)[mask]) / np.linalg.norm(b[mask]))


def _kernel(kernel_fn, x, get="ntk"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(kernel_fn(x, x, get), np.float64)


@pytest.fixture(scope="module")
def rows(tabular):
    return tabular[:40]


# Relative Frobenius error of depth-2 features with inner biases on 40 rows at dim 4096, keys 0-3
# (NOTES.md): (Sketch, RandomFeatures) worst of the 4 keys. Oscillating activations (Sin, Rbf,
# Gabor) have kernels with small off-diagonal entries against a large diagonal, so their
# relative error is larger at the same variance; it halves at 4x the dimension. The tolerance is
# twice the worst key.
MEASURED = {
    "Relu": (0.044, 0.049), "LeakyRelu": (0.049, 0.05), "ABRelu": (0.05, 0.06), "Abs": (0.054, 0.046),
    "Sign": (0.095, 0.061), "Erf": (0.046, 0.052), "Gelu": (0.042, 0.055), "Sigmoid_like": (0.003, 0.005),
    "Sin": (0.058, 0.068), "Cos": (0.024, 0.039), "Exp": (0.007, 0.015), "Gaussian": (0.018, 0.026),
    "ExpNormalized": (0.039, 0.061), "Rbf": (0.084, 0.092), "Gabor": (0.107, 0.115), "Hermite": (0.036, 0.128),
    "Monomial": (0.036, 0.141), "RectifiedMonomial": (0.126, 0.278), "Polynomial": (0.022, 0.075),
    "ElementwiseNumerical": (0.039, 0.052),
}


class KernelOnly(nf.layers.activations.Activation):
    """A user's activation known by its dual kernel only (no function, no Mehler coefficients)."""

    def dual(self):
        from ntkfeat.layers.activations import HomogeneousDual

        return HomogeneousDual(1, lambda rho: np.asarray(rho), lambda rho: np.ones_like(rho),
                               lambda q: np.eye(q + 1)[min(q, 1)])


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_against_neural_tangents(rows, name):
    act = ACTIVATIONS[name]
    init_fn, feature_fn, kernel_fn = _fc(act)
    k = _kernel(kernel_fn, rows)
    # ExpNormalized and Hermite have kernels but no network function at the inputs' variances:
    # their random features are psi(w.u) of the unit directions (random Fourier features of a
    # Gaussian kernel on the sphere, Hermite polynomials). Their errors halve from dim 512 to
    # 4096 on these rows (ExpNormalized 0.148-0.162 -> 0.046-0.061, Hermite 0.17-0.32 -> 0.09-0.13).
    for method, measured in zip([nf.Sketch(dim=4096, mode="layerwise"), nf.RandomFeatures(dim=4096)], MEASURED[name]):
        params = init_fn(jax.random.PRNGKey(0), rows.shape, method)
        phi = np.asarray(feature_fn(params, rows), np.float64)
        err = _masked_rel(phi @ phi.T, k)
        assert err < 2 * measured, (name, type(method).__name__, err)


@pytest.mark.parametrize("name", ["Erf", "Sin", "LeakyRelu"])
def test_error_falls_with_dim(rows, name):
    init_fn, feature_fn, kernel_fn = _fc(ACTIVATIONS[name])
    k = _kernel(kernel_fn, rows)

    def error(method, key):
        phi = np.asarray(feature_fn(init_fn(jax.random.PRNGKey(key), rows.shape, method), rows), np.float64)
        return rel_fro(phi @ phi.T, k)

    for method in (nf.Sketch, nf.RandomFeatures):
        errs = [np.mean([error(method(dim=dim), key) for key in range(2)]) for dim in (512, 4096)]
        # 8x the dimension: 1/sqrt(8) = 0.35 of the error for a pure variance; measured 0.3-0.45
        assert errs[1] < 0.6 * errs[0], (name, method.__name__, errs)


# The Sketch at degree 8 rather than its automatic degree (32 at dim 1024): the same one-shot rules
# on a tree of 12 sketch nodes instead of 80, compiled in half the time. Every activation under
# the Sketch, whose series and rules are per activation; RandomFeatures sample the activation's
# own function on every kind (test_gradients runs each activation's in float64), so one of each
# kind stands for the rest here: homogeneous (Relu, Sign: no derivative), Mehler series (Erf,
# Gabor) and numerical (ElementwiseNumerical).
# Exp is left out: its layerwise Mehler series in float32 gives some features of ~1e-8 (float64)
# as ~2e-4, round-off beyond this test's float32 tolerance (its kernel error is covered above).
RF_KINDS = ("Relu", "Sign", "Erf", "Gabor", "ElementwiseNumerical")


@pytest.mark.parametrize("name,method", [pytest.param(a, nf.Sketch(dim=1024, degree=8), id=f"{a}-sketch")
                                         for a in ACTIVATIONS if a != "Exp"]
                         + [pytest.param(a, nf.RandomFeatures(dim=1024), id=f"{a}-rf") for a in RF_KINDS])
def test_jit_and_float64(rows, name, method):
    # feature_fn always runs the map jitted (eagerly called, it calls a jitted apply on each batch),
    # so every activation's rules are traced here; jax.jit(feature_fn) adds only the traced-input
    # wrapper, which is the same for every activation: test_jit_of_feature_fn checks it.
    rows = rows[:16]
    init_fn, feature_fn, kernel_fn = _fc(ACTIVATIONS[name])
    params = init_fn(jax.random.PRNGKey(2), rows.shape, method)
    plain = np.asarray(feature_fn(params, rows))
    with jax.enable_x64(True):
        x64 = rows.astype(np.float64)
        params64 = init_fn(jax.random.PRNGKey(2), x64.shape, method)
        phi = feature_fn(params64, x64)
        k = kernel_fn(x64, x64)
        assert phi.dtype == jnp.float64 and k.dtype == jnp.float64
        # float64 and float32 draw the same parameters: the features agree to float32 precision
        np.testing.assert_allclose(np.asarray(phi), plain, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("method", [nf.Sketch(dim=1024, degree=8), nf.Sketch(dim=1024, mode="layerwise"),
                                    nf.RandomFeatures(dim=1024)])
@pytest.mark.parametrize("name", ["Relu", "Erf"])
def test_jit_of_feature_fn(rows, name, method):
    rows = rows[:16]
    init_fn, feature_fn, _ = _fc(ACTIVATIONS[name])
    params = init_fn(jax.random.PRNGKey(2), rows.shape, method)
    np.testing.assert_allclose(np.asarray(jax.jit(feature_fn)(params, rows)), np.asarray(feature_fn(params, rows)),
                               rtol=2e-4, atol=2e-5)


# One-shot series of stacks of Dense layers (with biases) and general activations
# (`features/oneshot_general.py`, the default for them): relative error on these 40 rows at dim
# 4096, worst of keys 0-3 (NOTES.md); the tolerance is twice that. Layerwise maps measured 1.3-5x
# more on the same rows (MEASURED above), except Rbf and Gabor (about the same).
ONESHOT_MEASURED = {
    "Erf": 0.0117, "Gelu": 0.0080, "Sin": 0.0178, "Cos": 0.0170, "Gaussian": 0.0088, "Rbf": 0.0593,
    "Gabor": 0.0915, "Polynomial": 0.0043, "ElementwiseNumerical": 0.0094,
}


@pytest.mark.parametrize("name", list(ONESHOT_MEASURED) + ["Sigmoid_like"])
def test_oneshot_series_of_general_activations(rows, name):
    from ntkfeat.features.oneshot_general import GeneralOneShotParams

    init_fn, feature_fn, kernel_fn = _fc(ACTIVATIONS[name])
    k = _kernel(kernel_fn, rows)
    params = init_fn(jax.random.PRNGKey(1), rows.shape, nf.Sketch(dim=4096))
    assert params.mode == "oneshot" and isinstance(params.params, GeneralOneShotParams)
    assert params.out_dim <= 4096
    phi = np.asarray(feature_fn(params, rows), np.float64)
    # Sigmoid_like's NTK is nearly a quadratic in the inputs: measured below 5e-5 at every key.
    tolerance = 2 * ONESHOT_MEASURED[name] if name in ONESHOT_MEASURED else 1e-3
    assert rel_fro(phi @ phi.T, k) < tolerance, name


@pytest.mark.parametrize("name", ["Erf", "Sin", "Gaussian", "Polynomial"])
def test_oneshot_series_bias_without_sketching(rows, name):
    # On 3 input features every degree up to 8 is written exactly (no sketch tree), so what is
    # left is the series' own bias: ranks, tail lumps and interpolation between grid variances.
    # Measured 0.0021 / 0.0025 / 0.0036 / 0.0029, diagonals within 0.23% of the exact NTK's.
    x = rows[:, :3]
    init_fn, feature_fn, kernel_fn = _fc(ACTIVATIONS[name])
    k = _kernel(kernel_fn, x)
    params = init_fn(jax.random.PRNGKey(0), x.shape, nf.Sketch(dim=4096, degree=8))
    assert params.mode == "oneshot" and params.params.features.tree is None
    phi = np.asarray(feature_fn(params, x), np.float64)
    assert rel_fro(phi @ phi.T, k) < 0.008, name
    np.testing.assert_allclose(np.sum(phi * phi, axis=1), np.diag(k), rtol=0.01)


def test_oneshot_series_falls_back_and_reports(rows):
    # Exp's NTK overflows on the grid of variances: 'auto' takes the layerwise map, 'oneshot' says why.
    init_fn, _, _ = _fc(ACTIVATIONS["Exp"])
    assert init_fn(jax.random.PRNGKey(0), rows.shape, nf.Sketch(dim=1024)).mode == "layerwise"
    with pytest.raises(ValueError, match="overflows"):
        init_fn(jax.random.PRNGKey(0), rows.shape, nf.Sketch(dim=1024, mode="oneshot"))
    # Homogeneous and general activations mixed: layerwise.
    mixed = nf.serial(nf.Dense(512, 1.2, 0.1), nf.Relu(), nf.Dense(512, 1.2, 0.1), nf.Erf(), nf.Dense(1))
    assert mixed[0](jax.random.PRNGKey(0), rows.shape, nf.Sketch(dim=1024)).mode == "layerwise"
    init_fn, _, _ = _fc(ACTIVATIONS["Erf"])
    params = init_fn(jax.random.PRNGKey(0), rows.shape, nf.Sketch(dim=4096))
    (report,) = nf.describe(params, rows)
    assert report["kind"] == "one-shot Mehler series of the NTK" and report["degree"] == params.params.degree
    assert 0.5 < report["ntk_kept_min"] <= report["ntk_kept_mean"] <= 1.0 and report["rows_beyond_grid"] == 0
    assert nf.describe(params, 100 * rows)[0]["rows_beyond_grid"] == len(rows)


def test_oneshot_series_degree_follows_the_tree_cost(monkeypatch):
    # 'auto' takes the highest degree whose PolySketch tree costs at most TREE_COST x dim, else the
    # cheapest. At dim 8192 on 9 inputs, degree 32 costs 3.66 x dim for Erf, 16 costs 2.91 x dim:
    # with the bound at 3, Erf must step down to 16; with the default bound it keeps 32. Gaussian's
    # plan covers variances up to 64x the typical one, where its series spreads to high degrees:
    # there it follows the same rule (measured: no degree within 5 x dim, the cheapest is taken).
    from ntkfeat.features import oneshot_general as og
    from ntkfeat.sketches.dot_product import sketch_tree_cost

    def layers(name):
        return (nf.Dense(512, 2**0.5), ACTIVATIONS[name], nf.Dense(512, 2**0.5), ACTIVATIONS[name], nf.Dense(1))

    def chosen(name):
        params = nf.serial(*layers(name))[0](jax.random.PRNGKey(0), (-1, 9), nf.Sketch(dim=8192)).params
        return params.degree

    def costs(name):
        out = {}
        for degree in og.AUTO_DEGREES:
            plan = og.general_plan(tuple(layers(name)), degree)
            out[degree] = sketch_tree_cost(9, plan.weights, 8192, {m: g.shape[1] for m, g in plan.factors.items()})
        return out

    def rule(name):
        within = [d for d, c in costs(name).items() if c <= og.TREE_COST * 8192]
        return within[0] if within else min(costs(name), key=costs(name).get)

    assert chosen("Erf") == og.AUTO_DEGREES[0] == 32
    assert chosen("Gaussian") == rule("Gaussian")
    monkeypatch.setattr(og, "TREE_COST", 3.0)
    assert chosen("Erf") == 16 == rule("Erf")


def test_homogeneous_auto_degree_stays_within_relus_cost():
    # The homogeneous fit's degree 'auto' keeps its sketch tree within COST_FACTOR x the tree of
    # the ReLU network of the same depth: Abs's degree-32 fit costs 2.1x ReLU's (one wide block
    # of even degree), so it steps down; ReLU and LeakyRelu keep the bound-free choice.
    from ntkfeat.features import oneshot as os1
    from ntkfeat.sketches.dot_product import sketch_tree_cost

    reference = os1.reference_cost(2, 9, 8192)
    for name in ("Abs", "Relu", "LeakyRelu"):
        init_fn, _, _ = nf.serial(nf.Dense(512, 2**0.5), ACTIVATIONS[name], nf.Dense(512, 2**0.5),
                                  ACTIVATIONS[name], nf.Dense(1))
        params = init_fn(jax.random.PRNGKey(0), (-1, 9), nf.Sketch(dim=8192)).params
        coeffs = np.asarray(params.coeffs, np.float64)
        assert sketch_tree_cost(9, coeffs, 8192) <= os1.COST_FACTOR * reference, name
        free = os1.choose_polynomial(os1.oneshot_kernel_fn(os1.flat_layers(init_fn.layer))[2], 9, 8192)
        if name == "Abs":
            assert sketch_tree_cost(9, free, 8192) > 2 * reference and len(coeffs) < len(free)
        else:
            assert len(coeffs) == len(free), name


def test_mehler_features_keep_the_diagonal(rows):
    # The truncated series' tail is kept on the diagonal, so renormalized features have the exact
    # second moment E[sigma(sqrt(q) g)^2] at each input's own variance q.
    act = nf.Sin()
    init_fn, feature_fn, kernel_fn = nf.serial(nf.Dense(512, W_std=1.5), act)
    params = init_fn(jax.random.PRNGKey(0), rows.shape, nf.Sketch(dim=2048, degree=6, mode="layerwise"))
    phi = np.asarray(feature_fn(params, rows, "nngp"), np.float64)
    k = _kernel(kernel_fn, rows, "nngp")
    np.testing.assert_allclose(np.sum(phi * phi, axis=1), np.diag(k), rtol=2e-4)


def test_dual_kernels_closed_forms():
    rho = np.linspace(-1, 1, 41)
    np.testing.assert_allclose(duals.rectified_moment(1, rho), nf.exact.arccos_kernel1(rho) / 2, atol=1e-14)
    np.testing.assert_allclose(duals.rectified_moment(0, rho), nf.exact.arccos_kernel0(rho) / 2, atol=1e-14)
    np.testing.assert_allclose(duals.homogeneous_mehler_squares(1, 1.0, 0.0, 12),
                               nf.exact.arccos_kernel1_taylor(12) / 2, atol=1e-15)
    # The Mehler series of a homogeneous activation sums to its angular integral.
    for k, s_pos, s_neg in [(1, 1.0, -0.1), (2, 1.0, 0.0), (3, 1.0, -1.0), (0, 1.0, -1.0)]:
        c = duals.homogeneous_mehler_squares(k, s_pos, s_neg, 400)
        for r in (-0.7, 0.0, 0.5):
            assert np.polyval(c[::-1], r) == pytest.approx(duals.homogeneous_dual(k, s_pos, s_neg, r), abs=1e-9)
    # Gauss-Hermite Mehler coefficients of a smooth activation: sin(sqrt(q) g) has
    # a_l(q) = (-1)^((l-1)/2) e^(-q/2) q^(l/2) / sqrt(l!) for odd l, 0 for even l.
    q = np.array([0.5, 2.0])
    a, (second, even, odd) = duals.mehler_coefficients(np.sin, q, 9)
    for l in range(10):
        exact = 0.0 if l % 2 == 0 else (-1) ** ((l - 1) // 2) * np.exp(-q / 2) * q ** (l / 2) / np.sqrt(
            float(np.prod(np.arange(1, l + 1))))
        np.testing.assert_allclose(a[:, l], exact, atol=1e-12)
    np.testing.assert_allclose(second, (1 - np.exp(-2 * q)) / 2, rtol=1e-12)
    np.testing.assert_allclose(even, 0.0, atol=1e-15)


def _wrn_block(c, mismatch=False):
    main = nf.serial(nf.Relu(), nf.Conv(c, (3, 3), padding="SAME"), nf.Relu(), nf.Conv(c, (3, 3), padding="SAME"))
    shortcut = nf.Conv(c, (3, 3), padding="SAME") if mismatch else nf.Identity()
    return nf.serial(nf.FanOut(2), nf.parallel(main, shortcut), nf.FanInSum())


ARCHITECTURES = {
    # name: (layers, Sketch tolerance, RandomFeatures tolerance); measured errors in comments
    "wide-resnet": (nf.serial(nf.Conv(16, (3, 3), padding="SAME"), _wrn_block(16, True), _wrn_block(16),
                              nf.GlobalAvgPool(), nf.Dense(1)), 0.1, 0.1),  # 0.037 / 0.022
    "myrtle-like": (nf.serial(nf.Conv(16, (3, 3), padding="SAME", W_std=2**0.5), nf.Relu(), nf.AvgPool((2, 2), (2, 2)),
                              nf.Conv(16, (3, 3), padding="SAME", W_std=2**0.5), nf.Relu(), nf.AvgPool((2, 2), (2, 2)),
                              nf.Flatten(), nf.Dense(1)), 0.06, 0.06),  # 0.017 / 0.014
    "concat-layernorm": (nf.serial(nf.Conv(16, (3, 3)), nf.FanOut(2),
                                   nf.parallel(nf.serial(nf.Relu(), nf.Conv(8, (3, 3))), nf.Conv(16, (3, 3))),
                                   nf.FanInConcat(), nf.Dense(16), nf.LayerNorm(), nf.Gelu(), nf.GlobalSumPool(),
                                   nf.Dense(1)), 0.06, 0.06),
    "sumpool-erf": (nf.serial(nf.Conv(16, (3, 3), W_std=1.5), nf.Erf(), nf.Conv(16, (2, 2)), nf.SumPool((2, 2), (2, 2)),
                              nf.Flatten(), nf.Dense(1)), 0.15, 0.15),  # 0.042 / 0.044
}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_combinators_against_neural_tangents(images, name):
    arch, sketch_tol, rf_tol = ARCHITECTURES[name]
    init_fn, feature_fn, kernel_fn = arch
    k = _kernel(kernel_fn, images)
    # feature_fn runs each batch jitted, so both methods' rules are traced here; jax.jit(feature_fn)
    # adds the traced-input wrapper of image maps, checked once per architecture.
    for method, tol in ((nf.Sketch(dim=4096), sketch_tol), (nf.RandomFeatures(dim=4096), rf_tol)):
        params = init_fn(jax.random.PRNGKey(0), images.shape, method)
        phi = np.asarray(feature_fn(params, images), np.float64)
        assert rel_fro(phi @ phi.T, k) < tol, (name, type(method).__name__, rel_fro(phi @ phi.T, k))
        if isinstance(method, nf.Sketch):
            np.testing.assert_allclose(np.asarray(jax.jit(feature_fn)(params, images)), phi, rtol=1e-3, atol=1e-4)


def _graphs(n=3, nodes=12, channels=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, nodes, channels)).astype(np.float32)
    a = (rng.random((n, nodes, nodes)) < 0.3).astype(np.float32)
    a = np.minimum(np.maximum(a, a.transpose(0, 2, 1)) + np.eye(nodes, dtype=np.float32), 1.0)
    return x, a / a.sum(axis=1, keepdims=True)


def test_graph_aggregation_against_neural_tangents():
    x, a = _graphs()
    gcn = nf.serial(nf.Aggregate(), nf.Dense(64, W_std=2**0.5), nf.Relu(), nf.Aggregate(), nf.Dense(64, W_std=2**0.5),
                    nf.Relu(), nf.Aggregate(), nf.Dense(1))
    init_fn, feature_fn, kernel_fn = gcn
    k = np.asarray(kernel_fn(x, x, "ntk", pattern=(a, a)), np.float64)  # (n1, n2, nodes, nodes)
    assert k.shape == (3, 3, 12, 12)
    blocked = np.asarray(kernel_fn(x, x, "ntk", pattern=(a, a), batch_size=2), np.float64)
    np.testing.assert_allclose(blocked, k, rtol=1e-4, atol=1e-6)
    for method, tol in ((nf.Sketch(dim=4096), 0.05), (nf.RandomFeatures(dim=4096), 0.1)):  # measured 0.012 / 0.035
        params = init_fn(jax.random.PRNGKey(0), x.shape, method)
        phi = np.asarray(feature_fn(params, x, pattern=a), np.float64)
        assert phi.shape[:2] == (3, 12)
        assert rel_fro(np.einsum("aim,bjm->abij", phi, phi), k) < tol
        batched = np.asarray(feature_fn(params, x, pattern=a, batch_size=2), np.float64)
        np.testing.assert_allclose(batched, phi, rtol=1e-4, atol=1e-5)


def test_kernel_fn_returns_both_kernels(rows):
    kernel_fn = _fc(nf.Erf())[2]
    both = kernel_fn(rows, rows, ("nngp", "ntk"))
    np.testing.assert_allclose(both.ntk, kernel_fn(rows, rows, "ntk"), rtol=1e-6)
    np.testing.assert_allclose(both.nngp, kernel_fn(rows, rows, "nngp"), rtol=1e-6)
    blocked = kernel_fn(rows, rows, ("nngp", "ntk"), batch_size=16)
    np.testing.assert_allclose(blocked.ntk, both.ntk, rtol=1e-4, atol=1e-6)


def test_signatures_match_neural_tangents():
    # A neural-tangents architecture ports by changing the module name: same names, same
    # positional order.
    stax = compat.stax()
    for name in nf.layers.ACTIVATIONS + nf.layers.LINEAR + nf.layers.COMBINATORS:
        ours = list(inspect.signature(getattr(nf, name)).parameters)
        theirs = list(inspect.signature(getattr(stax, name)).parameters)
        assert ours == theirs, name
    assert nf.Dense(512).out_dim == 512 and nf.Dense(512).W_std == 1.0
    conv = nf.Conv(128, (3, 3), (2, 2), "SAME", 1.5, 0.1)
    assert (conv.out_chan, conv.filter_shape, conv.strides, conv.padding, conv.W_std, conv.b_std) == (
        128, (3, 3), (2, 2), "SAME", 1.5, 0.1)
    assert nf.AvgPool((3, 3)).window_shape == (3, 3) and nf.AvgPool((3, 3)).strides == (1, 1)


def test_layers_unpack_like_neural_tangents(rows):
    init_fn, feature_fn, kernel_fn = nf.Dense(1, W_std=1.5)
    assert nf.serial(nf.Dense(1))[2] is not None
    k = np.asarray(kernel_fn(rows, rows))
    np.testing.assert_allclose(k, 1.5**2 * rows @ rows.T / rows.shape[1], rtol=1e-5)
    phi = feature_fn(init_fn(jax.random.PRNGKey(0), rows.shape, nf.Sketch(dim=64)), rows)
    np.testing.assert_allclose(np.asarray(phi @ phi.T), k, rtol=1e-4, atol=1e-5)  # linear: exact


def test_bad_architectures_raise_clear_errors(rows, images):
    def init(arch, shape, method=nf.Sketch(dim=256)):
        return arch[0](jax.random.PRNGKey(0), shape, method)

    with pytest.raises(ValueError, match=r"layer 0 \(Relu\).*Gaussian"):
        init(nf.serial(nf.Relu(), nf.Dense(1)), rows.shape)
    with pytest.raises(ValueError, match="FanOut"):
        init(nf.serial(nf.Dense(8), nf.parallel(nf.Relu(), nf.Identity())), rows.shape)
    with pytest.raises(ValueError, match="branches of one spatial shape"):
        init(nf.serial(nf.Conv(8, (3, 3)), nf.FanOut(2), nf.parallel(nf.Conv(8, (3, 3)), nf.Identity()),
                       nf.FanInSum()), images.shape)
    with pytest.raises(ValueError, match="equal widths"):
        init(nf.serial(nf.Dense(8), nf.FanOut(2), nf.parallel(nf.Dense(16), nf.Identity()), nf.FanInSum()),
             rows.shape)
    with pytest.raises(ValueError, match="ends with 2 branches"):
        init(nf.serial(nf.Dense(8), nf.FanOut(2)), rows.shape)
    with pytest.raises(ValueError, match="LayerNorm.*Gaussian"):
        init(nf.serial(nf.Dense(8), nf.Relu(), nf.LayerNorm(), nf.Dense(1)), rows.shape)
    with pytest.raises(NotImplementedError, match=r"KernelOnly.*RandomFeatures.*Sketch"):
        init(nf.serial(nf.Dense(8), KernelOnly(), nf.Dense(1)), rows.shape, nf.RandomFeatures(dim=256))
    with pytest.raises(TypeError, match="neural-tangents layer"):
        nf.serial(compat.stax().Relu())
    with pytest.raises(ValueError, match="parameterization"):
        nf.Dense(8, parameterization="standard")
    with pytest.raises(ValueError, match="Monomial.degree"):
        nf.Monomial(7)
    x, a = _graphs()
    gcn = nf.serial(nf.Aggregate(), nf.Dense(8), nf.Relu(), nf.Aggregate(), nf.Dense(1))
    params = init(gcn, x.shape)
    with pytest.raises(ValueError, match="pattern"):
        gcn[1](params, x)
    with pytest.raises(ValueError, match=r"pattern has shape \(3, 12, 11\)"):
        gcn[1](params, x, pattern=a[:, :, :11])
    with pytest.raises(ValueError, match="pattern1 has shape"):
        gcn[2](x, x, pattern=(a[:2], a))

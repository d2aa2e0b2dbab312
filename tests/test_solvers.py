"""ntkfeat.solvers against plain NumPy (float64 np.linalg.solve) and scikit-learn references.

Features are float32 throughout (as feature maps produce them); references are computed in float64
from the same float32 values (exactly representable), so closed-form solvers, which work in
float64, must agree to ~1e-9 relative. JAX array functions run both jitted and not.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.linear_model import Ridge

from ntkfeat import solvers as S

from conftest import rel_fro

CLOSED_FORM_RTOL = 1e-9  # float64 solves of systems with condition number <= ~1e3


def problem(n, m, k, seed=0, noise=0.5):
    """float32 Gaussian features, linear targets plus noise."""
    rng = np.random.RandomState(seed)
    z = rng.randn(n, m).astype(np.float32)
    y = (z @ rng.randn(m, k) + noise * rng.randn(n, k)).astype(np.float32)
    return z, y


def ridge_reference(z, y, lam):
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    return np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ y)


def maybe_jit(fn, jit, **kwargs):
    return jax.jit(fn, **kwargs) if jit else fn


def brute_force_scores(z, y, lambdas, splits, metric):
    """Validation scores by refitting per lambda and fold (the slow way the solvers avoid)."""
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    sse, correct, rows = np.zeros(len(lambdas)), np.zeros(len(lambdas)), 0
    for train, val in splits:
        for i, lam in enumerate(lambdas):
            p = z[val] @ np.linalg.lstsq(z[train].T @ z[train] + lam * np.eye(z.shape[1]), z[train].T @ y[train],
                                         rcond=None)[0]
            sse[i] += np.sum((p - y[val]) ** 2)
            correct[i] += np.sum(p.argmax(1) == y[val].argmax(1))
        rows += len(val)
    return correct / rows if metric == "accuracy" else sse / (rows * y.shape[1])


def clusters(n, m, k, seed=0, spread=1.5):
    """A k-class problem: Gaussian clusters around random centers, float32."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, n)
    z = (rng.randn(k, m)[labels] * spread / np.sqrt(m) * 4 + rng.randn(n, m)).astype(np.float32)
    return z, labels


# --- targets -------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
def test_one_hot_targets(jit):
    labels = np.array([0, 2, 1, 2])
    expected = np.eye(3)[labels] - 1 / 3
    fn = maybe_jit(S.one_hot_targets, jit, static_argnames="num_classes")
    out = fn(jnp.asarray(labels), num_classes=3)
    assert isinstance(out, jax.Array) and out.shape == (4, 3) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected, atol=1e-7)
    np.testing.assert_allclose(np.sum(out, axis=1), 0, atol=1e-6)
    host = S.one_hot_targets(labels, 3, dtype=np.float64)
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, expected)


@pytest.mark.parametrize("jit", [False, True])
def test_accuracy(jit):
    predictions = jnp.asarray([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = jnp.asarray([0, 1, 1, 1])
    fn = maybe_jit(S.accuracy, jit)
    assert float(fn(predictions, labels)) == pytest.approx(0.75)
    assert float(fn(predictions, S.one_hot_targets(labels, 2))) == pytest.approx(0.75)


# --- Gram statistics ----------------------------------------------------------------------


def test_gram_from_batches_equals_one_shot_in_float64():
    z, y = problem(1000, 24, 3, seed=1)
    z = z * np.float32(1000.0)  # large entries: a float32 accumulation would be off by ~1e-7 relative
    z64, y64 = z.astype(np.float64), y.astype(np.float64)
    sizes = [300, 1, 450, 249]  # uneven, including a single row
    starts = np.cumsum([0] + sizes)
    batches = [(z[a:b], y[a:b]) for a, b in zip(starts[:-1], starts[1:])]
    state = S.gram_from_batches(iter(batches))
    assert state.n == 1000 and state.ztz.dtype == np.float64
    assert rel_fro(state.ztz, z64.T @ z64) < 1e-13
    assert rel_fro(state.zty, z64.T @ y64) < 1e-13
    np.testing.assert_allclose(state.yty, np.sum(y64**2, 0), rtol=1e-13)

    stepwise = S.gram_init(24, 3)
    for zb, yb in batches:
        stepwise = S.gram_update(stepwise, jnp.asarray(zb), yb)  # JAX or NumPy batches alike
    for a, b in zip(stepwise, state):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    merged = S.gram_merge(S.gram_from_batches(batches[:2]), S.gram_from_batches(batches[2:]))
    for a, b in zip(merged, state):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_gram_update_is_pure():
    z, y = problem(10, 4, 2)
    state = S.gram_init(4, 2)
    S.gram_update(state, z, y)
    assert state.n == 0 and not state.ztz.any()


# --- closed-form ridge ----------------------------------------------------------------------


@pytest.mark.parametrize("n,m", [(120, 20), (20, 60)], ids=["n>m", "n<m"])
@pytest.mark.parametrize("form", ["auto", "primal", "dual"])
def test_fit_ridge_matches_numpy_and_sklearn(n, m, form):
    z, y = problem(n, m, 3, seed=2)
    lam = 0.7
    model = S.fit_ridge(z, y, lam, form)
    assert model.weights.shape == (m, 3) and model.weights.dtype == np.float64 and model.lam == lam
    reference = ridge_reference(z, y, lam)
    np.testing.assert_allclose(model.weights, reference, rtol=CLOSED_FORM_RTOL, atol=1e-12)
    sk = Ridge(alpha=lam, fit_intercept=False, solver="cholesky").fit(z.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(model.weights, sk.coef_.T, rtol=1e-7, atol=1e-10)


def test_primal_dual_and_gram_forms_agree():
    z, y = problem(30, 50, 2, seed=3)
    state = S.gram_from_batches([(z[:10], y[:10]), (z[10:], y[10:])])
    primal = S.ridge_primal(state.ztz, state.zty, 0.3)
    dual = S.ridge_dual(jnp.asarray(z), jnp.asarray(y), 0.3)
    np.testing.assert_allclose(primal, dual, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(S.fit_ridge_gram(state, 0.3).weights, primal, rtol=1e-12)


def test_lam_zero_least_squares_and_min_norm():
    z, y = problem(80, 10, 2, seed=4)  # full column rank: least squares
    np.testing.assert_allclose(S.fit_ridge(z, y, 0.0).weights,
                               np.linalg.lstsq(z.astype(np.float64), y.astype(np.float64), rcond=None)[0],
                               rtol=1e-9)
    z, y = problem(8, 30, 2, seed=5)  # full row rank: the minimum-norm interpolant
    np.testing.assert_allclose(S.fit_ridge(z, y, 0.0).weights, np.linalg.pinv(z.astype(np.float64)) @ y,
                               rtol=1e-8, atol=1e-12)


def test_one_output_vector_targets():
    z, y = problem(40, 5, 1, seed=6)
    model = S.fit_ridge(z, y[:, 0], 1.0)
    assert model.weights.shape == (5, 1)
    np.testing.assert_allclose(model.weights, ridge_reference(z, y, 1.0), rtol=CLOSED_FORM_RTOL)


@pytest.mark.parametrize("jit", [False, True])
def test_predict(jit):
    z, y = problem(50, 8, 3, seed=7)
    model = S.fit_ridge(z, y, 0.5)
    expected = z.astype(np.float64) @ model.weights
    out = maybe_jit(S.predict, jit)(model, jnp.asarray(z))
    assert isinstance(out, jax.Array) and out.dtype == jnp.float32 and out.shape == (50, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    host = S.predict(model, z)  # NumPy in: float64 NumPy out
    assert isinstance(host, np.ndarray) and host.dtype == np.float64
    np.testing.assert_allclose(host, expected, rtol=1e-12)


# --- regularization selection -----------------------------------------------------------------


@pytest.mark.parametrize(
    "method,form", [("holdout", "primal"), ("kfold", "primal"), ("kfold", "dual")]
)
def test_select_lambda_scores_equal_refitting(method, form):
    z, y = problem(60, 12, 2, seed=8, noise=2.0)
    lambdas = np.array([0.0, 0.1, 3.0, 30.0, 300.0])
    sel = S.select_lambda(z, y, lambdas, method=method, folds=4, val_fraction=0.25, seed=3, form=form)
    splits = S.validation_splits(60, method, val_fraction=0.25, folds=4, seed=3)
    np.testing.assert_allclose(sel.scores, brute_force_scores(z, y, lambdas, splits, "mse"), rtol=1e-8)
    assert sel.lam == lambdas[np.argmin(sel.scores)]


def test_select_lambda_finds_interior_optimum():
    """Weights w ~ N(0, tau^2 I), noise N(0, sigma^2): the posterior mean is ridge with
    lam* = sigma^2 / tau^2 = 100, inside the default grid (trace / m ~ n = 150). With n < 2 m the
    unregularized fit overfits and lam = 100 trace / m underfits, so the optimum is interior."""
    rng = np.random.RandomState(9)
    n, m, k, sigma, tau = 150, 80, 4, 1.0, 0.1
    z = rng.randn(n, m).astype(np.float32)
    y = (z @ (tau * rng.randn(m, k)) + sigma * rng.randn(n, k)).astype(np.float32)
    sel = S.select_lambda(z, y, method="kfold", folds=5)
    np.testing.assert_allclose(sel.lambdas, np.sum(z.astype(np.float64) ** 2) / m * np.logspace(-8, 2, 21))
    best = int(np.argmin(sel.scores))
    assert sel.lam == sel.lambdas[best] and sel.scores[best] == sel.scores.min()
    assert 0 < best < len(sel.lambdas) - 1
    assert 100 / 5 < sel.lam < 100 * 5
    assert sel.scores[best] < 0.9 * sel.scores[0] and sel.scores[best] < 0.9 * sel.scores[-1]


def test_default_grid_follows_the_feature_scale():
    z, y = problem(50, 10, 2, seed=10)
    a = S.select_lambda(z, y, method="kfold", folds=3)
    b = S.select_lambda(100 * z, y, method="kfold", folds=3)
    np.testing.assert_allclose(b.lambdas, 1e4 * a.lambdas, rtol=1e-6)
    np.testing.assert_allclose(b.scores, a.scores, rtol=1e-6)
    assert b.lam == pytest.approx(1e4 * a.lam, rel=1e-6)


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_select_lambda_accuracy(form):
    z, labels = clusters(90, 16, 3, seed=11)
    y = S.one_hot_targets(labels, 3)
    lambdas = np.array([1e-3, 1.0, 30.0, 1e3, 1e5])
    sel = S.select_lambda(z, y, lambdas, method="kfold", folds=3, metric="accuracy", form=form)
    splits = S.validation_splits(90, "kfold", folds=3)
    np.testing.assert_allclose(sel.scores, brute_force_scores(z, y, lambdas, splits, "accuracy"))
    assert sel.metric == "accuracy" and sel.scores.max() > 0.8
    # ties go to the larger lambda (the simpler model)
    assert sel.lam == lambdas[sel.scores == sel.scores.max()].max()


def test_accuracy_ties_go_to_the_larger_lambda():
    z, labels = clusters(60, 8, 2, seed=12, spread=20.0)  # separable: every lambda is perfect
    sel = S.select_lambda(z, S.one_hot_targets(labels, 2), [10.0, 1.0, 0.1], metric="accuracy")
    np.testing.assert_array_equal(sel.scores, 1.0)
    assert sel.lam == 10.0


def test_select_lambda_gram_streaming_equals_in_memory():
    z, y = problem(200, 15, 3, seed=13, noise=3.0)
    (train, val), = S.validation_splits(200, "holdout", val_fraction=0.3, seed=5)
    lambdas = np.logspace(-2, 4, 7)
    in_memory = S.select_lambda(z, y, lambdas, val_fraction=0.3, seed=5, form="primal")
    train_state = S.gram_from_batches([(z[train[:70]], y[train[:70]]), (z[train[70:]], y[train[70:]])])
    from_moments = S.select_lambda_gram(train_state, S.gram_from_batches([(z[val], y[val])]), lambdas)
    from_batches = S.select_lambda_gram(train_state, [(z[val[:20]], y[val[:20]]), (z[val[20:]], y[val[20:]])],
                                        lambdas)
    np.testing.assert_allclose(from_moments.scores, in_memory.scores, rtol=1e-8)
    np.testing.assert_allclose(from_batches.scores, in_memory.scores, rtol=1e-8)
    assert from_moments.lam == from_batches.lam == in_memory.lam
    default = S.select_lambda_gram(train_state, [(z[val], y[val])])
    np.testing.assert_allclose(default.lambdas, np.trace(train_state.ztz) / 15 * np.logspace(-8, 2, 21))


def test_select_lambda_gram_accuracy():
    z, labels = clusters(120, 10, 4, seed=14)
    y = S.one_hot_targets(labels, 4)
    lambdas = np.array([0.01, 10.0, 1e4])
    sel = S.select_lambda_gram(S.gram_from_batches([(z[:80], y[:80])]), [(z[80:], y[80:])], lambdas,
                               metric="accuracy")
    split = [(np.arange(80), np.arange(80, 120))]
    np.testing.assert_allclose(sel.scores, brute_force_scores(z, y, lambdas, split, "accuracy"))


# --- kernel ridge ---------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
def test_kernel_ridge_equals_feature_ridge_for_linear_kernel(jit):
    z, y = problem(40, 25, 2, seed=15)
    z_test, _ = problem(7, 25, 2, seed=16)
    z64 = z.astype(np.float64)
    alpha = S.kernel_ridge_fit(z64 @ z64.T, y, 0.4)
    np.testing.assert_allclose(alpha, np.linalg.solve(z64 @ z64.T + 0.4 * np.eye(40), y), rtol=1e-9)
    expected = S.predict(S.fit_ridge(z, y, 0.4, form="primal"), z_test)
    np.testing.assert_allclose(S.kernel_ridge_predict(z_test.astype(np.float64) @ z64.T, alpha), expected,
                               rtol=1e-8)
    fn = maybe_jit(S.kernel_ridge_predict, jit)
    out = fn(jnp.asarray(z_test @ z.T), jnp.asarray(alpha, jnp.float32))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_select_lambda_kernel_equals_feature_selection():
    z, y = problem(50, 30, 2, seed=17, noise=2.0)
    k = z.astype(np.float64) @ z.astype(np.float64).T
    lambdas = np.logspace(-2, 3, 6)
    sel = S.select_lambda_kernel(k, y, lambdas, method="kfold", folds=5)
    for form in ("dual", "primal"):
        features = S.select_lambda(z, y, lambdas, method="kfold", folds=5, form=form)
        np.testing.assert_allclose(sel.scores, features.scores, rtol=1e-7)
    default = S.select_lambda_kernel(k, y)
    np.testing.assert_allclose(default.lambdas, np.trace(k) / 50 * np.logspace(-8, 2, 21))


# --- iterative ------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
def test_ridge_objective(jit):
    z, y = problem(30, 6, 2, seed=18)
    w = np.random.RandomState(0).randn(6, 2).astype(np.float32)
    value = maybe_jit(S.ridge_objective, jit)(w, z, y, 2.0)
    z64, y64, w64 = (a.astype(np.float64) for a in (z, y, w))
    expected = (np.sum((z64 @ w64 - y64) ** 2) + 2.0 * np.sum(w64**2)) / 30
    assert float(value) == pytest.approx(expected, rel=1e-5)
    # the closed form minimizes it: zero gradient there
    grad = jax.grad(S.ridge_objective)(jnp.asarray(ridge_reference(z, y, 2.0), jnp.float32), z, y, 2.0)
    assert float(jnp.max(jnp.abs(grad))) < 1e-4


def batches_of(z, y, size):
    return lambda: ((z[i : i + size], y[i : i + size]) for i in range(0, len(z), size))


def test_iterative_adam_converges_to_closed_form():
    """4 minibatches (the last one short and padded), 600 Adam steps with cosine decay.
    Tolerance 1e-3 relative: the iteration is float32 and the minibatch noise only vanishes as the
    step size decays to 0; measured ~5e-5."""
    z, y = problem(230, 12, 3, seed=19)
    lam = 5.0
    fit = S.fit_ridge_iterative(batches_of(z, y, 64), 12, 3, lam, steps=600, learning_rate=0.05)
    assert fit.losses.shape == (600,) and fit.losses[-1] < fit.losses[0]
    assert fit.model.weights.shape == (12, 3) and fit.model.lam == lam
    assert rel_fro(fit.model.weights, ridge_reference(z, y, lam)) < 1e-3


def test_iterative_lbfgs_converges_to_closed_form():
    """One batch (the data fit, the Gram is assumed not to): L-BFGS with line search reaches the
    float32 floor, ~1e-7 relative; tolerance 1e-5."""
    z, y = problem(100, 10, 2, seed=20)
    fit = S.fit_ridge_iterative(lambda: iter([(z, y)]), 10, 2, 1.0, steps=15, optimizer=optax.lbfgs())
    assert rel_fro(fit.model.weights, ridge_reference(z, y, 1.0)) < 1e-5


# --- errors ---------------------------------------------------------------------------------


def test_errors_name_shapes():
    z, y = problem(20, 5, 2)
    with pytest.raises(ValueError, match=re.escape("(19, 2)")):
        S.fit_ridge(z, y[:19], 1.0)
    with pytest.raises(ValueError, match="2-D"):
        S.fit_ridge(z[0], y, 1.0)
    with pytest.raises(ValueError, match=re.escape("(5, 5)")):
        S.ridge_primal(np.eye(5), np.ones((4, 2)), 1.0)
    with pytest.raises(ValueError, match="square"):
        S.ridge_primal(np.ones((5, 4)), np.ones((5, 2)), 1.0)
    with pytest.raises(ValueError, match=re.escape("(20, 6)")):
        S.gram_update(S.gram_init(5, 2), np.ones((20, 6)), y)
    with pytest.raises(ValueError, match=re.escape("(20, 3)")):
        S.gram_from_batches([(z, y), (z, np.ones((20, 3)))])
    with pytest.raises(ValueError, match=re.escape("(3, 4)")):
        S.predict(S.fit_ridge(z, y, 1.0), np.ones((3, 4)))
    with pytest.raises(ValueError, match=re.escape("(3, 7) and alpha (5, 2)")):
        S.kernel_ridge_predict(np.ones((3, 7)), np.ones((5, 2)))
    with pytest.raises(ValueError, match=re.escape("(m, k) = (4, 2), train for (5, 2)")):
        S.select_lambda_gram(S.gram_from_batches([(z, y)]), S.gram_from_batches([(z[:, :4], y)]))
    with pytest.raises(ValueError, match="merge"):
        S.gram_merge(S.gram_init(5, 2), S.gram_init(5, 3))
    with pytest.raises(ValueError, match=re.escape("(7, 5)")):
        S.fit_ridge_iterative(lambda: iter([(np.ones((7, 5)), np.ones((7, 2)))]), 4, 2, 1.0, steps=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_errors_non_finite(bad):
    z, y = problem(20, 5, 2)
    zb, yb = z.copy(), y.copy()
    zb[3, 1], yb[7, 0] = bad, bad
    with pytest.raises(ValueError, match=r"z has NaN or inf values in 1 row\(s\) \(first: \[3\]\)"):
        S.fit_ridge(zb, y, 1.0)
    with pytest.raises(ValueError, match=r"y has NaN or inf .* \[7\]"):
        S.fit_ridge(z, yb, 1.0, form="dual")
    with pytest.raises(ValueError, match="z_batch has NaN"):
        S.gram_update(S.gram_init(5, 2), jnp.asarray(zb), y)
    with pytest.raises(ValueError, match="NaN"):
        S.select_lambda(zb, y)
    with pytest.raises(ValueError, match="NaN"):
        S.kernel_ridge_fit(zb @ zb.T, y, 1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        S.fit_ridge_iterative(batches_of(z, yb, 10), 5, 2, 1.0, steps=3)


def test_errors_regularization():
    z, y = problem(20, 5, 2)
    for lam in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="lam must be finite and >= 0"):
            S.fit_ridge(z, y, lam)
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        S.kernel_ridge_fit(z @ z.T, y, -0.1)
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        S.fit_ridge_iterative(batches_of(z, y, 10), 5, 2, -1.0)
    with pytest.raises(ValueError, match="lambdas must be finite and >= 0"):
        S.select_lambda(z, y, [1.0, -1.0])
    with pytest.raises(ValueError, match="lambdas must be a non-empty"):
        S.select_lambda(z, y, [])
    # rank-deficient without regularization: duplicated feature column, and a rank-1 kernel
    dup = np.concatenate([z, z[:, :1]], axis=1)
    with pytest.raises(ValueError, match="not numerically positive definite"):
        S.fit_ridge(dup, y, 0.0, form="primal")
    with pytest.raises(ValueError, match="not numerically positive definite"):
        S.kernel_ridge_fit(np.ones((20, 20)), y, 0.0)


def test_errors_empty_and_options():
    z, y = problem(20, 5, 2)
    with pytest.raises(ValueError, match="empty"):
        S.fit_ridge(np.ones((0, 5)), np.ones((0, 2)), 1.0)
    with pytest.raises(ValueError, match="no .*pairs"):
        S.gram_from_batches([])
    with pytest.raises(ValueError, match="seen no rows"):
        S.fit_ridge_gram(S.gram_init(5, 2), 1.0)
    with pytest.raises(ValueError, match="yielded no batches"):
        S.fit_ridge_iterative(lambda: iter([]), 5, 2, 1.0, n=10)
    with pytest.raises(ValueError, match="metric"):
        S.select_lambda(z, y, metric="r2")
    with pytest.raises(ValueError, match="method"):
        S.select_lambda(z, y, method="loo")
    with pytest.raises(ValueError, match="form"):
        S.fit_ridge(z, y, 1.0, form="svd")
    with pytest.raises(ValueError, match="val_fraction"):
        S.select_lambda(z, y, val_fraction=1.0)
    with pytest.raises(ValueError, match="folds"):
        S.select_lambda(z, y, method="kfold", folds=21)
    with pytest.raises(ValueError, match="needs predictions"):
        state = S.gram_from_batches([(z, y)])
        S.select_lambda_gram(state, state, metric="accuracy")
    with pytest.raises(ValueError, match="k >= 2"):
        S.select_lambda(z, y[:, 0], metric="accuracy")
    with pytest.raises(ValueError, match="all-zero"):
        S.select_lambda(np.zeros((20, 5), np.float32), y)
    with pytest.raises(ValueError, match="not symmetric"):
        S.kernel_ridge_fit(np.triu(np.ones((20, 20))) + 20 * np.eye(20), y, 1.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        S.one_hot_targets(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        S.one_hot_targets(np.array([0, 0]), 1)
    with pytest.raises(TypeError, match="integers"):
        S.one_hot_targets(np.array([0.0, 1.0]), 2)

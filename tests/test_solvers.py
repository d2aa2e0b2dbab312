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


@pytest.mark.parametrize("block_rows", [1, 40, 5000])
def test_gram_from_batches_gathers_small_batches(monkeypatch, block_rows):
    """Batches below SMALL_BATCH rows are gathered into blocks (a large batch first adds what is
    gathered): the statistics equal the one-shot products, vector targets too."""
    from ntkfeat.solvers import ridge

    monkeypatch.setattr(ridge, "BLOCK_ROWS", block_rows)
    monkeypatch.setattr(ridge, "GATHER_FEATURES", 24)  # gather at this test's m = 24
    z, y = problem(1000, 24, 3, seed=2)
    z64, y64 = z.astype(np.float64), y.astype(np.float64)
    starts = np.cumsum([0, 16, 16, 1, 300, 16, 7, 450, 16, 16, 16, 146])
    state = S.gram_from_batches((z[a:b], y[a:b, 0]) for a, b in zip(starts[:-1], starts[1:]))
    assert state.n == 1000 and state.zty.shape == (24,) and state.yty.shape == ()
    assert rel_fro(state.ztz, z64.T @ z64) < 1e-13
    assert rel_fro(state.zty, z64.T @ y64[:, 0]) < 1e-13
    np.testing.assert_allclose(state.yty, np.sum(y64[:, 0] ** 2), rtol=1e-13)


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
    assert model.weights.shape == (5,)
    np.testing.assert_allclose(model.weights, ridge_reference(z, y, 1.0)[:, 0], rtol=CLOSED_FORM_RTOL)


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


@pytest.mark.parametrize("method", ["holdout", "kfold"])
def test_validation_splits_keep_groups_together(method):
    # Rows 2i and 2i + 1 (an image and its mirror under flip augmentation) share a group: no
    # split may put one on each side. Singleton groups give exactly the ungrouped splits.
    n = 61  # the last group has one row
    groups = np.arange(n) // 2
    splits = S.validation_splits(n, method, val_fraction=0.2, folds=4, seed=2, groups=groups)
    for train, val in splits:
        assert not set(groups[train]) & set(groups[val])
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(n))
    if method == "holdout":
        (_, val), = splits
        assert round(0.2 * n) <= len(val) <= round(0.2 * n) + 1  # whole groups, at least the share
    else:
        assert sorted(np.concatenate([v for _, v in splits]).tolist()) == list(range(n))
    plain = S.validation_splits(n, method, val_fraction=0.2, folds=4, seed=2)
    single = S.validation_splits(n, method, val_fraction=0.2, folds=4, seed=2, groups=np.arange(n))
    for (t1, v1), (t2, v2) in zip(plain, single):
        np.testing.assert_array_equal(np.sort(v1), np.sort(v2))
    # select_lambda scores the grouped splits (same as refitting on them by hand)
    z, y = problem(n, 12, 2, seed=8, noise=2.0)
    lambdas = np.array([0.0, 0.1, 3.0, 30.0])
    sel = S.select_lambda(z, y, lambdas, method=method, val_fraction=0.2, folds=4, seed=2, groups=groups)
    np.testing.assert_allclose(sel.scores, brute_force_scores(z, y, lambdas, splits, "mse"), rtol=1e-8)
    with pytest.raises(ValueError, match="one label per row"):
        S.validation_splits(n, method, groups=groups[:-1])
    with pytest.raises(ValueError, match="2 groups"):
        S.validation_splits(n, method, groups=np.zeros(n))


def test_select_lambda_finds_interior_optimum():
    """Weights w ~ N(0, tau^2 I), noise N(0, sigma^2): the posterior mean is ridge with
    lam* = sigma^2 / tau^2 = 100, inside the default grid (trace / n ~ m = 80, times 1e-8 to 1e2).
    With n < 2 m the unregularized fit overfits and lam = 100 trace / n underfits, so the optimum
    is interior."""
    rng = np.random.RandomState(9)
    n, m, k, sigma, tau = 150, 80, 4, 1.0, 0.1
    z = rng.randn(n, m).astype(np.float32)
    y = (z @ (tau * rng.randn(m, k)) + sigma * rng.randn(n, k)).astype(np.float32)
    sel = S.select_lambda(z, y, method="kfold", folds=5)
    np.testing.assert_allclose(sel.lambdas, np.sum(z.astype(np.float64) ** 2) / n * np.logspace(-8, 2, 21))
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
    # The grid scales with the mean eigenvalue of Z Z^T over the rows seen (validation batches
    # without a row count add none): trace / n, as kernel ridge's trace(K) / n.
    np.testing.assert_allclose(default.lambdas, np.trace(train_state.ztz) / train_state.n * np.logspace(-8, 2, 21))


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
        S.select_lambda(z, y, method="bootstrap")
    with pytest.raises(ValueError, match="'gcv' and 'loo' use every row"):
        S.validation_splits(20, "gcv")
    state = S.gram_from_batches([(z, y)])
    with pytest.raises(ValueError, match="exact LOO needs the rows"):
        S.select_lambda_gram(state, method="loo")
    with pytest.raises(ValueError, match="k-fold needs the rows"):
        S.select_lambda_gram(state, method="kfold")
    with pytest.raises(ValueError, match="pass val=None"):
        S.select_lambda_gram(state, state, method="gcv")
    with pytest.raises(ValueError, match="needs validation statistics"):
        S.select_lambda_gram(state)
    with pytest.raises(ValueError, match="vector targets"):
        S.gram_merge(S.gram_from_batches([(z, y[:, 0])]), S.gram_from_batches([(z, y[:, :1])]))
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


# --- GCV and exact leave-one-out ----------------------------------------------------------------


def brute_force_loo(a, y, lam, kernel):
    """Mean over rows and outputs of squared leave-one-out errors, refitting n times.

    kernel=True: a is an (n, n) kernel, kernel ridge; else a is (n, m) features, primal ridge."""
    a, y = np.asarray(a, np.float64), np.asarray(y, np.float64)
    n = len(y)
    sse = 0.0
    for i in range(n):
        keep = np.arange(n) != i
        if kernel:
            k = a[keep][:, keep]
            p = a[i, keep] @ np.linalg.lstsq(k + lam * np.eye(n - 1), y[keep], rcond=None)[0]
        else:
            z = a[keep]
            p = a[i] @ np.linalg.lstsq(z.T @ z + lam * np.eye(a.shape[1]), z.T @ y[keep], rcond=None)[0]
        sse += np.sum((p - y[i]) ** 2)
    return sse / (n * y.shape[1])


def direct_gcv(hat, y):
    """n |Y - H Y|^2 / (n - tr H)^2 per output, from the dense hat matrix."""
    y = np.asarray(y, np.float64)
    n = len(y)
    return n * np.sum((y - hat @ y) ** 2) / (n - np.trace(hat)) ** 2 / y.shape[1]


def kernel_hat(k, lam):
    return k @ np.linalg.inv(k + lam * np.eye(len(k)))


@pytest.mark.parametrize("m", [8, 50], ids=["n>m", "n<m"])
def test_loo_and_gcv_equal_refitting_and_the_dense_hat_matrix(m):
    z, y = problem(30, m, 2, seed=21, noise=1.0)
    z64 = z.astype(np.float64)
    k = z64 @ z64.T
    lambdas = np.array([0.05, 1.0, 20.0, 400.0])
    loo = [brute_force_loo(k, y, lam, kernel=True) for lam in lambdas]
    gcv = [direct_gcv(kernel_hat(k, lam), y) for lam in lambdas]
    np.testing.assert_allclose(loo, [brute_force_loo(z, y, lam, kernel=False) for lam in lambdas], rtol=1e-7)
    results = {
        "kernel": lambda method: S.select_lambda_kernel(k, y, lambdas, method=method),
        "dual": lambda method: S.select_lambda(z, y, lambdas, method=method, form="dual"),
        "primal": lambda method: S.select_lambda(z, y, lambdas, method=method, form="primal"),
    }
    for name, select in results.items():
        sel = select("loo")
        np.testing.assert_allclose(sel.scores, loo, rtol=1e-7, err_msg=name)
        assert sel.lam == lambdas[np.argmin(loo)] and sel.metric == "mse"
        sel = select("gcv")
        np.testing.assert_allclose(sel.scores, gcv, rtol=1e-7, err_msg=name)
        assert sel.lam == lambdas[np.argmin(gcv)]
    # GCV from streamed Gram statistics: all rows, no hold-out part
    state = S.gram_from_batches([(z[:11], y[:11]), (z[11:], y[11:])])
    np.testing.assert_allclose(S.select_lambda_gram(state, None, lambdas, method="gcv").scores, gcv, rtol=1e-7)


def test_gcv_and_loo_at_lam_zero_are_the_limit():
    """lam = 0: the limit lam -> 0+. A positive definite kernel gives the classic interpolation LOO
    [K^-1 y]_i / [K^-1]_ii (refitting with lam = 0 agrees) and a finite GCV equal to GCV at a tiny
    lam; a singular kernel (the linear kernel of n > m features) gives least squares' LOO and GCV,
    the same as the primal form at lam = 0."""
    z, y = problem(25, 40, 2, seed=22)  # n < m: K = Z Z^T positive definite
    k = z.astype(np.float64) @ z.astype(np.float64).T
    tiny = 1e-9 * np.trace(k) / 25
    sel = S.select_lambda_kernel(k, y, [0.0, tiny], method="loo")
    assert sel.scores[0] == pytest.approx(brute_force_loo(k, y, 0.0, kernel=True), rel=1e-6)
    sel = S.select_lambda_kernel(k, y, [0.0, tiny], method="gcv")
    assert np.isfinite(sel.scores[0]) and sel.scores[0] == pytest.approx(sel.scores[1], rel=1e-5)
    assert sel.scores[0] == pytest.approx(direct_gcv(kernel_hat(k, tiny), y), rel=1e-4)

    z, y = problem(40, 6, 2, seed=23, noise=1.0)  # n > m: K = Z Z^T has rank 6
    k = z.astype(np.float64) @ z.astype(np.float64).T
    hat = z.astype(np.float64) @ np.linalg.pinv(z.astype(np.float64))  # least squares' projection
    for method, expected in [("loo", brute_force_loo(z, y, 0.0, kernel=False)), ("gcv", direct_gcv(hat, y))]:
        for sel in (S.select_lambda_kernel(k, y, [0.0, 1.0], method=method),
                    S.select_lambda(z, y, [0.0, 1.0], method=method, form="primal"),
                    S.select_lambda(z, y, [0.0, 1.0], method=method, form="dual")):
            assert sel.scores[0] == pytest.approx(expected, rel=1e-6), method
    state = S.gram_from_batches([(z, y)])
    assert S.select_lambda_gram(state, lambdas=[0.0], method="gcv").scores[0] == pytest.approx(direct_gcv(hat, y),
                                                                                              rel=1e-6)


def test_gcv_and_loo_find_the_interior_optimum_and_score_mse_for_classes():
    """The Bayesian problem of test_select_lambda_finds_interior_optimum (lam* = 100)."""
    rng = np.random.RandomState(9)
    n, m, k, sigma, tau = 150, 80, 4, 1.0, 0.1
    z = rng.randn(n, m).astype(np.float32)
    y = (z @ (tau * rng.randn(m, k)) + sigma * rng.randn(n, k)).astype(np.float32)
    for method in ("gcv", "loo"):
        sel = S.select_lambda(z, y, method=method)
        assert 100 / 5 < sel.lam < 100 * 5, method
    # classification: GCV and LOO rank lambdas by the one-hot regression's MSE
    zc, labels = clusters(90, 16, 3, seed=11)
    yc = S.one_hot_targets(labels, 3)
    for method in ("gcv", "loo"):
        a = S.select_lambda(zc, yc, method=method, metric="accuracy")
        b = S.select_lambda(zc, yc, method=method, metric="mse")
        assert a.metric == "mse" and a.lam == b.lam
        np.testing.assert_array_equal(a.scores, b.scores)


# --- vector targets keep their shape -------------------------------------------------------------


@pytest.mark.parametrize("form", ["auto", "primal", "dual"])
def test_vector_target_fit_ridge_and_predict(form):
    z, y = problem(30, 12, 1, seed=24)
    vector = S.fit_ridge(z, y[:, 0], 0.5, form)
    matrix = S.fit_ridge(z, y, 0.5, form)
    assert vector.weights.shape == (12,) and matrix.weights.shape == (12, 1)
    np.testing.assert_array_equal(vector.weights, matrix.weights[:, 0])
    for zz in (z, jnp.asarray(z)):
        pred = S.predict(vector, zz)
        assert pred.shape == (30,)
        np.testing.assert_allclose(pred, np.asarray(S.predict(matrix, zz))[:, 0], rtol=1e-6)
    # the silent (n, n) broadcast that a (n, 1) prediction invited is gone
    assert np.mean((S.predict(vector, z) - y[:, 0]) ** 2).shape == ()
    jitted = jax.jit(S.predict)(vector, jnp.asarray(z))
    assert jitted.shape == (30,)
    np.testing.assert_array_equal(S.ridge_primal(z.T.astype(np.float64) @ z, z.T.astype(np.float64) @ y[:, 0], 0.5),
                                  S.ridge_primal(z.T.astype(np.float64) @ z, z.T.astype(np.float64) @ y, 0.5)[:, 0])
    assert S.ridge_dual(z, y[:, 0], 0.5).shape == (12,)


def test_vector_target_kernel_ridge():
    z, y = problem(30, 12, 1, seed=25)
    z_test, _ = problem(6, 12, 1, seed=26)
    k = z.astype(np.float64) @ z.astype(np.float64).T
    k_test = z_test.astype(np.float64) @ z.astype(np.float64).T
    alpha = S.kernel_ridge_fit(k, y[:, 0], 0.3)
    alpha2 = S.kernel_ridge_fit(k, y, 0.3)
    assert alpha.shape == (30,) and alpha2.shape == (30, 1)
    np.testing.assert_array_equal(alpha, alpha2[:, 0])
    pred = S.kernel_ridge_predict(k_test, alpha)
    assert pred.shape == (6,)
    np.testing.assert_allclose(pred, S.kernel_ridge_predict(k_test, alpha2)[:, 0], rtol=1e-12)
    out = jax.jit(S.kernel_ridge_predict)(jnp.asarray(k_test, jnp.float32), jnp.asarray(alpha, jnp.float32))
    assert out.shape == (6,)
    np.testing.assert_allclose(out, pred, rtol=1e-4, atol=1e-4)


def test_vector_target_gram_statistics():
    z, y = problem(50, 7, 1, seed=27)
    v = y[:, 0]
    batches = [(z[:20], v[:20]), (z[20:], v[20:])]
    state = S.gram_from_batches(batches)
    matrix = S.gram_from_batches([(z[:20], y[:20]), (z[20:], y[20:])])
    assert state.zty.shape == (7,) and state.yty.shape == () and state.vector and not matrix.vector
    assert state.num_outputs == matrix.num_outputs == 1
    np.testing.assert_array_equal(state.zty, matrix.zty[:, 0])
    assert float(state.yty) == float(matrix.yty[0])
    fit = S.fit_ridge_gram(state, 0.7)
    assert fit.weights.shape == (7,) and S.predict(fit, z).shape == (50,)
    np.testing.assert_array_equal(fit.weights, S.fit_ridge_gram(matrix, 0.7).weights[:, 0])
    stepwise = S.gram_init(7)  # k=None: vector statistics
    for zb, yb in batches:
        stepwise = S.gram_update(stepwise, zb, yb)
    for a, b in zip(stepwise, state):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    merged = S.gram_merge(S.gram_from_batches(batches[:1]), S.gram_from_batches(batches[1:]))
    for a, b in zip(merged, state):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    # selection from vector statistics equals that from (n, 1) statistics
    (train, val), = S.validation_splits(50, "holdout", val_fraction=0.3)
    lambdas = np.logspace(-2, 3, 6)
    tv, tm = S.gram_from_batches([(z[train], v[train])]), S.gram_from_batches([(z[train], y[train])])
    vv, vm = S.gram_from_batches([(z[val], v[val])]), S.gram_from_batches([(z[val], y[val])])
    np.testing.assert_allclose(S.select_lambda_gram(tv, vv, lambdas).scores,
                               S.select_lambda_gram(tm, vm, lambdas).scores, rtol=1e-12)
    np.testing.assert_allclose(S.select_lambda_gram(tv, [(z[val], v[val])], lambdas).scores,
                               S.select_lambda_gram(tm, vm, lambdas).scores, rtol=1e-8)
    np.testing.assert_allclose(S.select_lambda_gram(state, method="gcv").scores,
                               S.select_lambda_gram(matrix, method="gcv").scores, rtol=1e-12)


def test_vector_target_iterative():
    z, y = problem(64, 6, 1, seed=28)
    vector = S.fit_ridge_iterative(batches_of(z, y[:, 0], 16), 6, 1, 2.0, steps=20, learning_rate=0.05)
    matrix = S.fit_ridge_iterative(batches_of(z, y, 16), 6, 1, 2.0, steps=20, learning_rate=0.05)
    assert vector.model.weights.shape == (6,) and matrix.model.weights.shape == (6, 1)
    np.testing.assert_array_equal(vector.model.weights, matrix.model.weights[:, 0])
    np.testing.assert_array_equal(vector.losses, matrix.losses)
    assert S.predict(vector.model, z).shape == (64,)
    warm = S.fit_ridge_iterative(batches_of(z, y[:, 0], 16), 6, 1, 2.0, steps=1, weights=vector.model.weights)
    assert warm.model.weights.shape == (6,)


def test_tiny_lambda_on_duplicated_rows_with_a_large_diagonal_is_solved():
    """Duplicated rows make K singular; with lam > 0, K + lam I is positive definite and every
    Cholesky pivot is >= lam, even when lam / K_ii ~ 1e-13 (rows of norm ~300): solved, not refused
    as singular (lam = 0 still is)."""
    rng = np.random.RandomState(29)
    x = rng.randn(30, 4)
    x[:3] *= 300.0
    x[3] = x[0]  # a duplicate of a large row
    k = (x @ x.T + 1.0) ** 2
    y = rng.randn(30)
    lam = 1e-13 * np.max(np.diag(k))
    alpha = S.kernel_ridge_fit(k, y, lam)
    residual = (k + lam * np.eye(30)) @ alpha - y
    assert np.linalg.norm(residual) < 1e-3 * np.linalg.norm(y)
    with pytest.raises(ValueError, match="not numerically positive definite"):
        S.kernel_ridge_fit(k, y, 0.0)


def test_runner_refit_skips_lambdas_below_the_kernels_roundoff():
    """experiments.fitting refits at the selected lambda, or at the best one whose solve succeeds:
    a kernel with float32-sized errors can have a negative eigenvalue (here -1e-3), and K + lam I
    then has no Cholesky factor for lam below it."""
    from experiments import fitting

    rng = np.random.RandomState(30)
    x = rng.randn(20, 3)
    s, u = np.linalg.eigh(x @ x.T + 1.0)
    k = u @ np.diag(np.r_[-1e-3, s[1:]]) @ u.T  # rank 4 plus one negative roundoff eigenvalue
    y = rng.randn(20, 1)
    sel = S.LambdaSelection(1e-6, np.array([1e-6, 1.0, 10.0]), np.array([0.1, 0.3, 0.2]), "mse")
    lam, score, alpha, note = fitting._refit(sel, lambda lam: S.kernel_ridge_fit(k, y, lam), "gcv")
    assert (lam, score) == (10.0, 0.2) and "gcv chose lambda 1e-06" in note
    np.testing.assert_allclose(alpha, np.linalg.solve(k + 10.0 * np.eye(20), y), rtol=1e-10)
    lam, _, _, note = fitting._refit(sel._replace(lam=10.0, scores=np.array([0.3, 0.3, 0.1])),
                                     lambda lam: S.kernel_ridge_fit(k, y, lam), "loo")
    assert lam == 10.0 and note is None
    with pytest.raises(ValueError, match="every lambda"):
        fitting._refit(sel._replace(lambdas=np.array([0.0, 1e-6, 1e-5])), lambda lam: S.kernel_ridge_fit(k, y, lam),
                       "gcv")

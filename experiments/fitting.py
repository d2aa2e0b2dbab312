"""Ridge on streamed features and exact kernel ridge, with the regularization chosen on training rows.

Which closed form a run uses (recorded as `solver_path`):

- 'dual': the training features fit in memory (at most IN_MEMORY_BYTES) and are fewer rows than
  columns, or the selection is k-fold: `select_lambda` + `fit_ridge` on the in-memory features
  (n x n algebra when n < m).
- 'gram': otherwise (hold-out only): float64 Gram statistics of the train and validation parts
  accumulated batch by batch (`gram_from_batches`), `select_lambda_gram`, then `fit_ridge_gram`
  on their sum. Only the m x m statistics (and, for accuracy, the validation features) are held.
- 'iterative' (solver.iterative): `fit_ridge_iterative` (optax) over streamed batches, for each
  lambda on the hold-out train part, then on all rows with the best one.
- 'kernel': exact kernel ridge (`select_lambda_kernel`, `kernel_ridge_fit`).

The default lambda grid is `default_lambdas(trace(Z^T Z), m)` over all training rows for every
feature path, so that paths differ only in how they search it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from ntkfeat import solvers

IN_MEMORY_BYTES = 1 << 30  # largest (n, m) float32 training feature matrix held for the 'dual' path


class Fit(NamedTuple):
    lam: float
    val_score: float | None  # the chosen lambda's validation mse or accuracy
    path: str
    predict: Callable  # features (b, m) -> predictions (b, k), NumPy float64


class TestScores(NamedTuple):
    sse: float  # sum over rows and outputs of squared errors
    correct: int  # rows whose argmax prediction is the argmax target
    rows: int


def targets(y: np.ndarray, task: str, num_classes: int | None) -> np.ndarray:
    """(n, k) float32 regression targets: y as a column, or one-hot minus 1/k for classes."""
    if task == "classification":
        return solvers.one_hot_targets(np.asarray(y), num_classes)
    return np.asarray(y, np.float32).reshape(-1, 1)


def choose_path(n: int, m: int, solver: dict) -> str:
    if solver["iterative"]:
        return "iterative"
    fits = n * m * 4 <= IN_MEMORY_BYTES
    n_part = n - min(max(int(round(solver["val_fraction"] * n)), 1), n - 1)
    if solver["selection"] == "kfold":
        if not fits:
            raise ValueError(f"k-fold selection keeps the ({n}, {m}) training features in memory "
                             f"({n * m * 4 / 2**30:.1f} GiB > {IN_MEMORY_BYTES / 2**30:.0f} GiB); use "
                             "solver.selection: holdout, which streams them")
        return "dual"
    return "dual" if fits and n_part < m else "gram"


def _linear(weights: np.ndarray) -> Callable:
    model = solvers.RidgeModel(weights, 0.0)
    return lambda z: solvers.predict(model, np.asarray(z))


def _lambdas(solver: dict, trace: float, m: int) -> np.ndarray:
    if solver["lambdas"] is not None:
        return np.asarray(solver["lambdas"], np.float64)
    return solvers.default_lambdas(trace, m)


def _chosen_score(selection: solvers.LambdaSelection) -> float:
    return float(selection.scores[np.flatnonzero(np.asarray(selection.lambdas) == selection.lam)[0]])


def fit_features(stream: Callable, y: np.ndarray, m: int, solver: dict, metric: str, seed: int) -> Fit:
    """Ridge on features of the training rows.

    Args:
      stream: stream(rows, desc) -> iterator of (start, phi) over the training rows `rows` (an
        index array into the training set, or None for all rows), phi (b, m).
      y: (n, k) targets of the training rows.
      m: number of features.
      solver: the resolved `solver` section.
      metric: 'mse' or 'accuracy' (selection score).
      seed: seeds the validation split.
    """
    n, k = y.shape
    path = choose_path(n, m, solver)
    if path == "dual":
        z = jnp.concatenate([phi for _, phi in stream(None, "train features")])
        lambdas = _lambdas(solver, float(jnp.sum(jnp.square(z.astype(jnp.float32)))), m)
        sel = solvers.select_lambda(z, y, lambdas, method=solver["selection"], val_fraction=solver["val_fraction"],
                                    folds=solver["folds"], seed=seed, metric=metric)
        model = solvers.fit_ridge(z, y, sel.lam)
        return Fit(sel.lam, _chosen_score(sel), path, _linear(model.weights))

    (train, val), = solvers.validation_splits(n, "holdout", val_fraction=solver["val_fraction"], seed=seed)
    if path == "iterative":
        return _fit_iterative(stream, y, m, solver, metric, seed, train, val)

    def pairs(rows, desc):
        return ((phi, y[rows[s:s + len(phi)]]) for s, phi in stream(rows, desc))

    train_state = solvers.gram_from_batches(pairs(train, "train features"))
    if metric == "accuracy":  # scored from predictions: keep the validation features
        val_batches = list(pairs(val, "validation features"))
        val_state = solvers.gram_from_batches(val_batches)
    else:
        val_batches, val_state = None, solvers.gram_from_batches(pairs(val, "validation features"))
    lambdas = _lambdas(solver, float(np.trace(train_state.ztz) + np.trace(val_state.ztz)), m)
    sel = solvers.select_lambda_gram(train_state, val_batches or val_state, lambdas, metric=metric)
    model = solvers.fit_ridge_gram(solvers.gram_merge(train_state, val_state), sel.lam)
    return Fit(sel.lam, _chosen_score(sel), path, _linear(model.weights))


def _fit_iterative(stream, y, m, solver, metric, seed, train, val) -> Fit:
    n, k = y.shape
    order = np.random.default_rng(seed).permutation(n)  # optax steps follow batches: mix the rows

    def batches_fn(rows):
        return lambda: ((phi, y[rows[s:s + len(phi)]]) for s, phi in stream(rows, None))

    def fit(rows, lam):
        return solvers.fit_ridge_iterative(batches_fn(rows), m, k, lam, n=len(rows), steps=solver["steps"],
                                           learning_rate=solver["learning_rate"]).model.weights

    lambdas = solver["lambdas"]
    score = None
    if len(lambdas) > 1:
        train, scores = order[np.isin(order, train)], []
        for lam in lambdas:
            predict = _linear(fit(train, lam))
            result = score_batches(((predict(phi), y[val[s:s + len(phi)]]) for s, phi in stream(val, None)))
            scores.append(result.correct / result.rows if metric == "accuracy" else result.sse / (result.rows * k))
        scores = np.asarray(scores)
        best = scores.max() if metric == "accuracy" else scores.min()
        lam = float(max(l for l, s in zip(lambdas, scores) if s == best))  # ties: the larger lambda
        score = float(best)
    else:
        lam = float(lambdas[0])
    return Fit(lam, score, "iterative", _linear(fit(order, lam)))


def fit_kernel(k_train: np.ndarray, y: np.ndarray, solver: dict, metric: str, seed: int):
    """Exact kernel ridge: (lambda, validation score, alpha (n, k))."""
    sel = solvers.select_lambda_kernel(k_train, y, solver["lambdas"], method=solver["selection"],
                                       val_fraction=solver["val_fraction"], folds=solver["folds"], seed=seed,
                                       metric=metric)
    return sel.lam, _chosen_score(sel), solvers.kernel_ridge_fit(k_train, y, sel.lam)


def score_batches(pairs) -> TestScores:
    """Squared errors and argmax hits over (predictions (b, k), targets (b, k)) pairs."""
    sse, correct, rows = 0.0, 0, 0
    for pred, target in pairs:
        pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
        sse += float(np.sum((pred - target) ** 2))
        if target.shape[1] > 1:
            correct += int(np.sum(np.argmax(pred, 1) == np.argmax(target, 1)))
        rows += len(target)
    return TestScores(sse, correct, rows)


def metrics(scores: TestScores, task: str, k: int, y_std: float) -> dict:
    """test_mse (standardized targets; one-hot for classes), test_rmse in original units, test_accuracy."""
    if scores.rows == 0:
        return {"test_rmse": None, "test_accuracy": None, "test_mse": None}
    mse = scores.sse / (scores.rows * k)
    if task == "classification":
        return {"test_rmse": None, "test_accuracy": scores.correct / scores.rows, "test_mse": mse}
    return {"test_rmse": float(np.sqrt(mse) * y_std), "test_accuracy": None, "test_mse": mse}

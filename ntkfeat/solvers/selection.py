"""Choosing the ridge regularization on held-out data, one factorization per fold.

For a symmetric positive semi-definite A = U diag(s) U^T, (A + lam I)^{-1} = U diag(1/(s + lam)) U^T,
so after one eigendecomposition every lambda of the grid is a diagonal rescaling: O(m^3) once
(primal, A = Z_t^T Z_t) or O(n_t^3) once (dual or kernel, A = K_tt) per fold, then O(n_v r k) per
lambda for the validation predictions. Refactoring per lambda would cost the cubic term L times.

Default grid: lambdas = (trace(A) / dim(A)) * logspace(-8, 2, 21). trace(A) / dim(A) is the mean
eigenvalue of the Gram (trace(Z^T Z) / m) or of the kernel (trace(K) / n); ridge shrinks the
direction of eigenvalue s by s / (s + lam), so lambda relative to the mean eigenvalue means the
same thing at every feature scale, from no shrinkage (1e-8) to shrinking everything (1e2).

Scores: 'mse' is the mean over validation rows and outputs of (prediction - target)^2 (lower is
better); 'accuracy' the fraction of validation rows whose argmax prediction matches the argmax
target (higher is better, for `one_hot_targets`). Ties go to the larger lambda, the simpler model.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random
from ntkfeat.solvers import _checks
from ntkfeat.solvers._float64 import (
    eigen_rotate,
    host,
    moments,
    outer_rows,
    path_errors,
    path_sse_from_moments,
    spectral_fold,
    sum_squares,
    times,
    x64,
)
from ntkfeat.solvers.ridge import GramState

_METHODS = ("holdout", "kfold")
_METRICS = ("mse", "accuracy")
_FORMS = ("auto", "primal", "dual")
RELATIVE_GRID = np.logspace(-8, 2, 21)


class LambdaSelection(NamedTuple):
    """The chosen regularization and the validation score of every candidate."""

    lam: float  # the best lambda of the grid
    lambdas: np.ndarray  # (L,) candidates, in the order given
    scores: np.ndarray  # (L,) validation mse (lower is better) or accuracy (higher is better)
    metric: str


def default_lambdas(trace: float, dim: int) -> np.ndarray:
    """(trace / dim) * logspace(-8, 2, 21): the grid scaled to the mean eigenvalue of a Gram or kernel."""
    scale = float(trace) / int(dim)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"cannot scale the default lambda grid: trace / dim = {scale:g} (all-zero features or kernel?); "
            "pass lambdas explicitly"
        )
    return scale * RELATIVE_GRID


def _check_options(metric: str, method: str = "holdout", k: int | None = None) -> None:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if metric == "accuracy" and k is not None and k < 2:
        raise ValueError(f"metric='accuracy' needs one target column per class (k >= 2), got k={k}")


def validation_splits(n: int, method: str = "holdout", *, val_fraction: float = 0.1, folds: int = 5,
                      seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_rows, val_rows) index pairs from a random permutation of range(n) made from `seed`.

    'holdout': one split with round(val_fraction * n) validation rows (at least 1, at most n - 1).
    'kfold': `folds` splits whose validation parts partition the rows (sizes differ by at most 1).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if n < 2:
        raise ValueError(f"validation needs at least 2 rows, got {n}")
    order = _random.permutation(jax.random.PRNGKey(seed), n)
    if method == "holdout":
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        n_val = min(max(int(round(val_fraction * n)), 1), n - 1)
        parts = [order[:n_val]]
    else:
        if not isinstance(folds, (int, np.integer)) or not 2 <= folds <= n:
            raise ValueError(f"folds must be an integer in [2, n={n}], got {folds!r}")
        parts = np.array_split(order, folds)
    splits = []
    for val in parts:
        mask = np.zeros(n, bool)
        mask[val] = True
        splits.append((np.flatnonzero(~mask), np.flatnonzero(mask)))
    return splits


def _best(lambdas: np.ndarray, scores: np.ndarray, metric: str) -> float:
    target = np.max(scores) if metric == "accuracy" else np.min(scores)
    return float(np.max(lambdas[scores == target]))


def _score(sse, correct, rows: int, k: int, metric: str) -> np.ndarray:
    return np.asarray(correct, np.float64) / rows if metric == "accuracy" else host(sse) / (rows * k)


def _selection(lambdas, sse, correct, rows, k, metric) -> LambdaSelection:
    scores = _score(sse, correct, rows, k, metric)
    return LambdaSelection(_best(lambdas, scores, metric), lambdas, scores, metric)


@jax.jit
def _kernel_fold_errors(kernel, y, train, val, lambdas):
    """Validation (sse (L,), correct (L,)) of one fold from the full (n, n) kernel; gathers inside
    the jit, so a fold costs one compilation per shape, not one per indexing operation."""
    s, a, b = spectral_fold(kernel[train][:, train], kernel[val][:, train], y[train])
    return path_errors(a, s, b, y[val], lambdas)


@jax.jit
def _primal_fold_errors(z, y, gram, cross, val, lambdas):
    """Validation (sse, correct) of one fold; its train Gram is the full Gram minus the fold's, so
    k folds cost n m^2 + sum n_v m^2 instead of k n_t m^2."""
    z_val, y_val = z[val], y[val]
    val_gram, val_cross, _ = moments(z_val, y_val)
    s, a, b = spectral_fold(gram - val_gram, z_val, cross - val_cross)
    return path_errors(a, s, b, y_val, lambdas)


def _pooled(fold_results):
    """(sse, correct) summed over folds, on the host."""
    sse, correct = 0.0, 0
    for fold_sse, fold_correct in fold_results:
        sse, correct = sse + host(fold_sse), correct + np.asarray(fold_correct)
    return sse, correct


def select_lambda(z, y, lambdas=None, *, method: str = "holdout", val_fraction: float = 0.1, folds: int = 5,
                  seed: int = 0, metric: str = "mse", form: str = "auto") -> LambdaSelection:
    """The ridge regularization with the best validation score, among a grid.

    Args:
      z: (n, m) features (any float dtype; all algebra in float64).
      y: (n, k) targets (or (n,)); for metric='accuracy', one-hot style targets (`one_hot_targets`).
      lambdas: candidates >= 0 (default: `default_lambdas(trace(Z^T Z), m)`, from all n rows).
      method: 'holdout' (one random split) or 'kfold' (scores pooled over the folds).
      val_fraction: validation share for 'holdout'.
      folds: number of folds for 'kfold'.
      seed: the split's permutation comes from jax.random.PRNGKey(seed).
      metric: 'mse' or 'accuracy'.
      form: 'primal' (eigendecomposition of the m x m train Gram), 'dual' (of the n_t x n_t train
        kernel Z_t Z_t^T) or 'auto': dual when the largest train part has fewer rows than m.

    Returns:
      LambdaSelection(lam, lambdas, scores, metric). Refit on all rows with `fit_ridge(z, y, lam)`.
    """
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    z = _checks.features(z)
    y = _checks.targets(y, z)
    n, m = z.shape
    _check_options(metric, method, y.shape[1])
    splits = validation_splits(n, method, val_fraction=val_fraction, folds=folds, seed=seed)
    with x64():
        if lambdas is None:
            lambdas = default_lambdas(float(sum_squares(z)), m)
        lambdas = _checks.regularization_grid(lambdas)
        z, y = jnp.asarray(z), jnp.asarray(y)  # on the device once, not once per fold
        if form == "dual" or (form == "auto" and max(len(t) for t, _ in splits) < m):
            kernel = outer_rows(z, z)
            sse, correct = _pooled(_kernel_fold_errors(kernel, y, t, v, lambdas) for t, v in splits)
        else:
            gram, cross, _ = moments(z, y)
            sse, correct = _pooled(_primal_fold_errors(z, y, gram, cross, v, lambdas) for _, v in splits)
    rows = sum(len(v) for _, v in splits)
    return _selection(lambdas, sse, correct, rows, y.shape[1], metric)


def select_lambda_kernel(k_train, y, lambdas=None, *, method: str = "holdout", val_fraction: float = 0.1,
                         folds: int = 5, seed: int = 0, metric: str = "mse") -> LambdaSelection:
    """`select_lambda` for exact kernel ridge: one eigendecomposition of K_tt per fold.

    Args:
      k_train: (n, n) kernel matrix of the training rows (symmetric positive semi-definite).
      y: (n, k) targets (or (n,)).
      lambdas: candidates >= 0 (default: `default_lambdas(trace(K), n)`).
      method, val_fraction, folds, seed, metric: as in `select_lambda`.

    Returns:
      LambdaSelection(lam, lambdas, scores, metric).
    """
    k_train = _checks.square(k_train, "k_train")
    y = _checks.targets(y, k_train, like_name="k_train")
    _check_options(metric, method, y.shape[1])
    n = k_train.shape[0]
    splits = validation_splits(n, method, val_fraction=val_fraction, folds=folds, seed=seed)
    with x64():
        kernel = jnp.asarray(k_train).astype(jnp.float64)
        if lambdas is None:
            lambdas = default_lambdas(float(jnp.trace(kernel)), n)
        lambdas = _checks.regularization_grid(lambdas)
        y = jnp.asarray(y)
        sse, correct = _pooled(_kernel_fold_errors(kernel, y, t, v, lambdas) for t, v in splits)
    rows = sum(len(v) for _, v in splits)
    return _selection(lambdas, sse, correct, rows, y.shape[1], metric)


def select_lambda_gram(train: GramState, val, lambdas=None, *, metric: str = "mse") -> LambdaSelection:
    """Hold-out selection from streamed statistics, without holding the training features.

    One eigendecomposition of the train Gram, Z_t^T Z_t = U diag(s) U^T, then for every lambda
    W = U diag(1/(s + lam)) U^T Z_t^T Y_t is scored on the validation part:

    - val a `GramState` (metric='mse' only): from the validation moments,
      ||Z_v W - Y_v||^2 = tr(W^T Z_v^T Z_v W) - 2 tr(W^T Z_v^T Y_v) + ||Y_v||^2, O(m^2) per lambda.
    - val an iterable of (z_val (b, m), y_val (b, k)) batches, e.g. [(z_val, y_val)]: from
      predictions, batch by batch; needed for metric='accuracy'.

    Args:
      train: statistics of the training rows (`gram_from_batches`).
      val: validation statistics or batches (rows disjoint from the training rows).
      lambdas: candidates >= 0 (default: `default_lambdas(trace(train.ztz), m)`).
      metric: 'mse' or 'accuracy'.

    Returns:
      LambdaSelection(lam, lambdas, scores, metric). Refit on all rows with
      `fit_ridge_gram(gram_merge(train, val_state), lam)`.
    """
    if not isinstance(train, GramState):
        raise TypeError(f"train must be a GramState, got {type(train).__name__}")
    if train.n == 0:
        raise ValueError("the training GramState has seen no rows")
    _check_options(metric)
    m, k = train.num_features, train.num_outputs
    if lambdas is None:
        lambdas = default_lambdas(np.trace(train.ztz), m)
    lambdas = _checks.regularization_grid(lambdas)
    with x64():
        s, u, b = eigen_rotate(train.ztz, train.zty)
        if isinstance(val, GramState):
            if metric == "accuracy":
                raise ValueError("metric='accuracy' needs predictions: pass validation batches, e.g. [(z_val, y_val)]")
            if (val.num_features, val.num_outputs) != (m, k):
                raise ValueError(
                    f"val statistics are for (m, k) = {(val.num_features, val.num_outputs)}, train for {(m, k)}"
                )
            if val.n == 0:
                raise ValueError("the validation GramState has seen no rows")
            sse = path_sse_from_moments(s, u, b, val.ztz, val.zty, val.yty, lambdas)
            return _selection(lambdas, sse, 0, val.n, k, metric)
        sse, correct, rows = 0.0, 0, 0
        for i, pair in enumerate(val):
            try:
                z_val, y_val = pair
            except (TypeError, ValueError):
                raise TypeError(f"val batch {i} must be a pair (z_val, y_val), got {type(pair).__name__}") from None
            z_val = _checks.features(z_val, "z_val", width=m)
            y_val = _checks.targets(y_val, z_val, "y_val", "z_val", outputs=k)
            batch_sse, batch_correct = path_errors(times(z_val, u), s, b, y_val, lambdas)
            sse, correct = sse + host(batch_sse), correct + np.asarray(batch_correct)
            rows += z_val.shape[0]
        if rows == 0:
            raise ValueError("val yielded no (z_val, y_val) batches")
    return _selection(lambdas, sse, correct, rows, k, metric)

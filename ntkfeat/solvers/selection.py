"""Choosing the ridge regularization: held-out data, generalized cross-validation or exact
leave-one-out, one factorization per fold (one in all for GCV and LOO).

Methods (the same names in `select_lambda`, `select_lambda_kernel` and `select_lambda_gram`):

- 'holdout': one random split, a share `val_fraction` of the rows held out.
- 'kfold': `folds` splits whose validation parts partition the rows, scores pooled.
- 'gcv': generalized cross-validation on all rows, GCV = n |Y - H Y|^2 / (n - tr H)^2 with
  H = A (A + lam I)^{-1} the hat matrix (per output, i.e. divided by k). It needs only tr H =
  sum_j s_j / (s_j + lam) and the residual, both from one eigendecomposition, so it works on
  streamed Gram statistics too (`select_lambda_gram(state, method='gcv')`, no hold-out part).
  Caveat, measured on the UCI sets (NOTES.md): a duplicated row with an equal target (wine,
  concrete, power, protein have some) is a direction of A's null space that counts in n - tr H
  at no residual, so GCV -> 0 as lam -> 0 and GCV picks the smallest lambda; a near-noiseless
  smooth target with an ill-conditioned A does the same. Prefer 'loo' or 'kfold' there.
- 'loo': exact leave-one-out, the mean over rows and outputs of (r_i / (1 - H_ii))^2, with
  H_ii from the eigenvectors (dual: A = K or Z Z^T) or H_ii = z_i^T (Z^T Z + lam I)^{-1} z_i
  (primal); needs the rows in memory, so not on streamed statistics.

GCV and LOO score the mean squared error of the (one-hot) regression whatever `metric` is asked
for: with metric='accuracy' they still rank lambdas by that MSE, and the LambdaSelection says
metric='mse'. At lam = 0 they give the lam -> 0+ limit (see `_float64`); a lambda at which some
1 - H_ii is 0 (the fit interpolates that row) scores inf for LOO.

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
target (higher is better, for `one_hot_targets`; holdout and kfold only). Ties go to the larger
lambda, the simpler model.
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
    gcv_path_dual,
    gcv_path_gram,
    host,
    loo_path_dual,
    loo_path_primal,
    moments,
    outer_rows,
    path_errors,
    path_sse_from_moments,
    spectral_fold,
    sum_squares,
    times,
    x64,
)
from ntkfeat.solvers.ridge import GramState, _matrix_statistics

_METHODS = ("holdout", "kfold", "gcv", "loo")
_SPLIT_METHODS = ("holdout", "kfold")  # the ones that hold rows out
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
                      seed: int = 0, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_rows, val_rows) index pairs from a random permutation of range(n) made from `seed`.

    'holdout': one split with round(val_fraction * n) validation rows (at least 1, at most n - 1).
    'kfold': `folds` splits whose validation parts partition the rows (sizes differ by at most 1).
    groups: (n,) labels of rows that must stay on the same side (an image and its mirror image
      under flip augmentation: otherwise the validation score sees near-copies of training rows
      and favours too little regularization). Then the permutation is of the groups: holdout
      takes whole groups until round(val_fraction * n) rows, folds partition the groups.
    """
    if method not in _SPLIT_METHODS:
        hint = " ('gcv' and 'loo' use every row, without splits)" if method in _METHODS else ""
        raise ValueError(f"method must be one of {_SPLIT_METHODS}, got {method!r}{hint}")
    if n < 2:
        raise ValueError(f"validation needs at least 2 rows, got {n}")
    if groups is None:
        members = None  # every row its own group
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have one label per row, shape ({n},), got {groups.shape}")
        labels, inverse = np.unique(groups, return_inverse=True)
        if len(labels) < 2:
            raise ValueError("validation needs at least 2 groups of rows")
        by_group = np.argsort(inverse, kind="stable")  # rows grouped, in row order within a group
        members = np.split(by_group, np.cumsum(np.bincount(inverse))[:-1])  # O(n log n), not O(n x groups)
    units = n if members is None else len(members)
    order = np.asarray(_random.permutation(jax.random.PRNGKey(seed), units))
    if method == "holdout":
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        n_val = min(max(int(round(val_fraction * n)), 1), n - 1)
        if members is not None:  # whole groups, until at least n_val rows (and one group left)
            sizes = np.cumsum([len(members[g]) for g in order])
            n_val = min(int(np.searchsorted(sizes, n_val)) + 1, units - 1)
        parts = [order[:n_val]]
    else:
        if not isinstance(folds, (int, np.integer)) or not 2 <= folds <= units:
            kind = "rows" if members is None else "groups"
            raise ValueError(f"folds must be an integer in [2, {units}] (the number of {kind}), got {folds!r}")
        parts = np.array_split(order, folds)
    if members is not None:
        parts = [np.concatenate([members[g] for g in part]) for part in parts]
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


def _whole(lambdas, sse, rows: int, k: int) -> LambdaSelection:
    """GCV or LOO: sums of squared errors over all rows -> mean squared errors, lowest wins."""
    scores = host(sse) / (rows * k)
    return LambdaSelection(_best(lambdas, scores, "mse"), lambdas, scores, "mse")


def _kernel_whole(kernel, y, lambdas, method: str):
    """GCV or LOO sums of squared errors (L,) from one eigendecomposition of the (n, n) kernel."""
    s, u, b = eigen_rotate(kernel, y)
    if method == "gcv":
        return gcv_path_dual(s, b, lambdas)
    return loo_path_dual(s, u, b, lambdas)


def _pooled(fold_results):
    """(sse, correct) summed over folds, on the host."""
    sse, correct = 0.0, 0
    for fold_sse, fold_correct in fold_results:
        sse, correct = sse + host(fold_sse), correct + np.asarray(fold_correct)
    return sse, correct


def select_lambda(z, y, lambdas=None, *, method: str = "holdout", val_fraction: float = 0.1, folds: int = 5,
                  seed: int = 0, metric: str = "mse", form: str = "auto", groups=None) -> LambdaSelection:
    """The ridge regularization with the best validation score, among a grid.

    Args:
      z: (n, m) features (any float dtype; all algebra in float64).
      y: (n, k) targets (or (n,)); for metric='accuracy', one-hot style targets (`one_hot_targets`).
      lambdas: candidates >= 0 (default: `default_lambdas(trace(Z^T Z), n)`, from all n rows: the
        mean eigenvalue of Z Z^T, which stands for the kernel, so the grid is kernel ridge's).
      method: 'holdout' (one random split), 'kfold' (scores pooled over the folds), 'gcv'
        (generalized cross-validation) or 'loo' (exact leave-one-out); see the module docstring.
      val_fraction: validation share for 'holdout'.
      folds: number of folds for 'kfold'.
      seed: the split's permutation comes from jax.random.PRNGKey(seed) (holdout, kfold).
      metric: 'mse' or 'accuracy' (gcv and loo always score the MSE: see the module docstring).
      groups: (n,) labels of rows kept on the same side of every split (`validation_splits`);
        holdout and kfold only (GCV and LOO leave out single rows).
      form: 'primal' (eigendecomposition of the m x m train Gram), 'dual' (of the n_t x n_t train
        kernel Z_t Z_t^T) or 'auto': dual when the largest train part (all n rows for gcv and
        loo) has fewer rows than m.

    Returns:
      LambdaSelection(lam, lambdas, scores, metric). Refit on all rows with `fit_ridge(z, y, lam)`.
    """
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    z = _checks.features(z)
    y = _checks.targets(y, z)
    n, m = z.shape
    _check_options(metric, method, y.shape[1])
    if method in _SPLIT_METHODS:
        splits = validation_splits(n, method, val_fraction=val_fraction, folds=folds, seed=seed, groups=groups)
    elif n < 2:
        raise ValueError(f"{method} selection needs at least 2 rows, got {n}")
    with x64():
        if lambdas is None:
            lambdas = default_lambdas(float(sum_squares(z)), n)
        lambdas = _checks.regularization_grid(lambdas)
        z, y = jnp.asarray(z), jnp.asarray(y)  # on the device once, not once per fold
        if method not in _SPLIT_METHODS:
            if form == "dual" or (form == "auto" and n < m):
                sse = _kernel_whole(outer_rows(z, z), y, lambdas, method)
            elif method == "gcv":
                gram, cross, yty = moments(z, y)
                s, _, c = eigen_rotate(gram, cross)
                sse = gcv_path_gram(s, c, yty, n, lambdas)
            else:
                sse = loo_path_primal(z, y, lambdas)
            return _whole(lambdas, sse, n, y.shape[1])
        if form == "dual" or (form == "auto" and max(len(t) for t, _ in splits) < m):
            kernel = outer_rows(z, z)
            sse, correct = _pooled(_kernel_fold_errors(kernel, y, t, v, lambdas) for t, v in splits)
        else:
            gram, cross, _ = moments(z, y)
            sse, correct = _pooled(_primal_fold_errors(z, y, gram, cross, v, lambdas) for _, v in splits)
    rows = sum(len(v) for _, v in splits)
    return _selection(lambdas, sse, correct, rows, y.shape[1], metric)


def select_lambda_kernel(k_train, y, lambdas=None, *, method: str = "holdout", val_fraction: float = 0.1,
                         folds: int = 5, seed: int = 0, metric: str = "mse", groups=None) -> LambdaSelection:
    """`select_lambda` for exact kernel ridge: one eigendecomposition of K_tt per fold.

    Args:
      k_train: (n, n) kernel matrix of the training rows (symmetric positive semi-definite).
      y: (n, k) targets (or (n,)).
      lambdas: candidates >= 0 (default: `default_lambdas(trace(K), n)`).
      method, val_fraction, folds, seed, metric, groups: as in `select_lambda` ('gcv' and 'loo'
        use one eigendecomposition of the whole K).

    Returns:
      LambdaSelection(lam, lambdas, scores, metric).
    """
    k_train = _checks.square(k_train, "k_train")
    y = _checks.targets(y, k_train, like_name="k_train")
    _check_options(metric, method, y.shape[1])
    n = k_train.shape[0]
    if method in _SPLIT_METHODS:
        splits = validation_splits(n, method, val_fraction=val_fraction, folds=folds, seed=seed, groups=groups)
    elif n < 2:
        raise ValueError(f"{method} selection needs at least 2 rows, got {n}")
    with x64():
        kernel = jnp.asarray(k_train).astype(jnp.float64)
        if lambdas is None:
            lambdas = default_lambdas(float(jnp.trace(kernel)), n)
        lambdas = _checks.regularization_grid(lambdas)
        y = jnp.asarray(y)
        if method not in _SPLIT_METHODS:
            kernel = (kernel + kernel.T) / 2
            return _whole(lambdas, _kernel_whole(kernel, y, lambdas, method), n, y.shape[1])
        sse, correct = _pooled(_kernel_fold_errors(kernel, y, t, v, lambdas) for t, v in splits)
    rows = sum(len(v) for _, v in splits)
    return _selection(lambdas, sse, correct, rows, y.shape[1], metric)


def select_lambda_gram(train: GramState, val=None, lambdas=None, *, metric: str = "mse",
                       method: str = "holdout") -> LambdaSelection:
    """Selection from streamed statistics, without holding the training features.

    One eigendecomposition of the Gram, Z^T Z = U diag(s) U^T; every lambda is then a diagonal
    rescaling of W = U diag(1/(s + lam)) U^T Z^T Y.

    method='holdout' (the default): `train` holds the training part, and W is scored on the
    validation part `val`:

    - val a `GramState` (metric='mse' only): from the validation moments,
      ||Z_v W - Y_v||^2 = tr(W^T Z_v^T Z_v W) - 2 tr(W^T Z_v^T Y_v) + ||Y_v||^2, O(m^2) per lambda.
    - val an iterable of (z_val (b, m), y_val (b, k)) batches, e.g. [(z_val, y_val)]: from
      predictions, batch by batch; needed for metric='accuracy'.

    method='gcv': `train` holds all training rows, val is None; GCV = n |Y - Z W|^2 / (n - tr H)^2
    (per output) with tr H = sum_j s_j / (s_j + lam) and the residual from the statistics,
    y^T y - 2 w^T Z^T y + w^T Z^T Z w, O(m k) per lambda. Scored as MSE also for metric='accuracy'
    (the one-hot regression). Exact LOO needs each row's leverage z_i^T (Z^T Z + lam I)^{-1} z_i,
    i.e. the rows: use `select_lambda(z, y, method='loo')` on in-memory features.

    Args:
      train: statistics of the training rows (`gram_from_batches`): the fitting part for
        'holdout', all rows for 'gcv'.
      val: validation statistics or batches (rows disjoint from train's) for 'holdout'; None for 'gcv'.
      lambdas: candidates >= 0 (default: `default_lambdas(trace(train.ztz), n)`, n the rows seen).
      metric: 'mse' or 'accuracy'.
      method: 'holdout' or 'gcv'.

    Returns:
      LambdaSelection(lam, lambdas, scores, metric). Refit with `fit_ridge_gram(state, lam)`, state
      `gram_merge(train, val_state)` for 'holdout' and `train` itself for 'gcv'.
    """
    if not isinstance(train, GramState):
        raise TypeError(f"train must be a GramState, got {type(train).__name__}")
    if method not in ("holdout", "gcv"):
        hint = {"loo": " (exact LOO needs the rows: select_lambda(z, y, method='loo'))",
                "kfold": " (k-fold needs the rows: select_lambda(z, y, method='kfold'))"}.get(method, "")
        raise ValueError(f"method must be 'holdout' or 'gcv' on streamed statistics, got {method!r}{hint}")
    if train.n == 0:
        raise ValueError("the training GramState has seen no rows")
    _check_options(metric, method)
    m, k = train.num_features, train.num_outputs
    ztz, zty, yty = _matrix_statistics(train)
    if lambdas is None:
        lambdas = default_lambdas(np.trace(ztz), train.n + (0 if val is None or not hasattr(val, "n") else val.n))
    lambdas = _checks.regularization_grid(lambdas)
    if method == "gcv":
        if val is not None:
            raise ValueError("method='gcv' uses all rows of `train` and no validation part: pass val=None (merge "
                             "the parts with gram_merge first)")
        if train.n < 2:
            raise ValueError(f"gcv selection needs at least 2 rows, got {train.n}")
        with x64():
            s, _, c = eigen_rotate(ztz, zty)
            sse = gcv_path_gram(s, c, yty, train.n, lambdas)
        return _whole(lambdas, sse, train.n, k)
    if val is None:
        raise ValueError("method='holdout' needs validation statistics or batches (val); method='gcv' needs none")
    with x64():
        s, u, b = eigen_rotate(ztz, zty)
        if isinstance(val, GramState):
            if metric == "accuracy":
                raise ValueError("metric='accuracy' needs predictions: pass validation batches, e.g. [(z_val, y_val)]")
            if (val.num_features, val.num_outputs) != (m, k):
                raise ValueError(
                    f"val statistics are for (m, k) = {(val.num_features, val.num_outputs)}, train for {(m, k)}"
                )
            if val.n == 0:
                raise ValueError("the validation GramState has seen no rows")
            val_ztz, val_zty, val_yty = _matrix_statistics(val)
            sse = path_sse_from_moments(s, u, b, val_ztz, val_zty, val_yty, lambdas)
            return _selection(lambdas, sse, 0, val.n, k, metric)
    sse, correct, rows = 0.0, 0, 0
    # Batches are pulled outside the float64 scope (a feature map behind the iterator runs in the
    # caller's precision).
    for i, pair in enumerate(val):
        try:
            z_val, y_val = pair
        except (TypeError, ValueError):
            raise TypeError(f"val batch {i} must be a pair (z_val, y_val), got {type(pair).__name__}") from None
        with x64():
            z_val = _checks.features(z_val, "z_val", width=m)
            y_val = _checks.targets(y_val, z_val, "y_val", "z_val", outputs=k)
            batch_sse, batch_correct = path_errors(times(z_val, u), s, b, y_val, lambdas)
            sse, correct = sse + host(batch_sse), correct + np.asarray(batch_correct)
        rows += z_val.shape[0]
    if rows == 0:
        raise ValueError("val yielded no (z_val, y_val) batches")
    return _selection(lambdas, sse, correct, rows, k, metric)

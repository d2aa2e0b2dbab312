"""Ridge regression on explicit features, at any number of rows.

    W = argmin ||Z W - Y||_F^2 + lam ||W||_F^2 = (Z^T Z + lam I)^{-1} Z^T Y      (primal, m x m solve)
                                                = Z^T (Z Z^T + lam I)^{-1} Y      (dual, n x n solve)

Z (n, m) features, Y (n, k) targets, no intercept (center the targets, e.g. `one_hot_targets`).
Results keep the target's shape: a vector target y (n,) gives weights (m,) and predictions (n,),
Y (n, k) (also k = 1) gives weights (m, k) and predictions (n, k).
The primal form needs only the sufficient statistics Z^T Z, Z^T Y, accumulated over row batches
in a `GramState`, so n is bounded by time, not memory.

Precision: statistics and solves are float64 whatever the feature dtype, computed by JAX on its
default device with 64-bit mode on only for those calls (see `_float64`); states and weights are
returned as NumPy float64.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat.batching import pad_rows
from ntkfeat.solvers import _checks
from ntkfeat.solvers._float64 import host, moments, outer_rows, regularized_solve, transpose_times, x64

_FORMS = ("auto", "primal", "dual")


class GramState(NamedTuple):
    """Sufficient statistics of ridge regression over the rows seen so far (NumPy float64).

    They keep the target's shape: statistics of vector targets y (b,) have zty (m,) and yty ()
    (and `fit_ridge_gram` gives weights (m,)); of Y (b, k), zty (m, k) and yty (k,).
    """

    ztz: np.ndarray  # (m, m) sum_i z_i z_i^T
    zty: np.ndarray  # (m, k) sum_i z_i y_i^T, or (m,) for vector targets
    yty: np.ndarray  # (k,)   sum_i y_i^2, per output (for residuals and validation errors), or ()
    n: int  # rows seen

    @property
    def num_features(self) -> int:
        return self.ztz.shape[0]

    @property
    def num_outputs(self) -> int:
        return 1 if self.zty.ndim == 1 else self.zty.shape[1]

    @property
    def vector(self) -> bool:
        """True for statistics of vector targets y (b,)."""
        return self.zty.ndim == 1


class RidgeModel(NamedTuple):
    """A fitted linear model on features: predictions Z W."""

    weights: np.ndarray  # (m, k) float64, or (m,) when fitted on a vector target (predictions (n,))
    lam: float  # the regularization it was fitted with


def gram_init(m: int, k: int | None = None) -> GramState:
    """Zero statistics for m features and k outputs; k=None for vector targets y (b,)."""
    m, outputs = int(m), 1 if k is None else int(k)
    if m < 1 or outputs < 1:
        raise ValueError(f"need m >= 1 features and k >= 1 outputs, got m={m}, k={k}")
    if k is None:
        return GramState(np.zeros((m, m)), np.zeros(m), np.zeros(()), 0)
    return GramState(np.zeros((m, m)), np.zeros((m, outputs)), np.zeros(outputs), 0)


def _is_vector(y) -> bool:
    """A 1-D target (n,), as opposed to (n, k) (k = 1 included)."""
    return len(getattr(y, "shape", np.shape(y))) == 1


def _shaped(state_like_vector: bool, zty: np.ndarray, yty: np.ndarray):
    """Moments (m, k), (k,) in the layout of a vector (m,), () or matrix state."""
    return (zty[:, 0], yty.reshape(())) if state_like_vector else (zty, yty)


def _matrix_statistics(state: GramState):
    """(ztz (m, m), zty (m, k), yty (k,)) whatever the state's target shape."""
    if state.vector:
        return state.ztz, state.zty.reshape(-1, 1), np.reshape(state.yty, (1,))
    return state.ztz, state.zty, state.yty


def _check_batch(z, y, m: int | None = None, k: int | None = None):
    z = _checks.features(z, "z_batch", width=m)
    return z, _checks.targets(y, z, "y_batch", "z_batch", outputs=k)


def _check_state(state) -> GramState:
    if not isinstance(state, GramState):
        raise TypeError(f"expected a GramState (from gram_init / gram_from_batches), got {type(state).__name__}")
    return state


def gram_update(state: GramState, z_batch, y_batch) -> GramState:
    """The statistics with one more batch of rows added (pure: `state` is not modified).

    ztz + z^T z, zty + z^T y, yty + sum(y^2), n + rows; products in float64 on the batch's device
    (one m x m transfer to the host per call: prefer `gram_from_batches` for many batches).

    Args:
      state: from `gram_init` or a previous update.
      z_batch: (b, m) features, any float dtype.
      y_batch: (b, k) targets, or (b,) when k = 1 (the state keeps its own target shape).
    """
    state = _check_state(state)
    z, y = _check_batch(z_batch, y_batch, state.num_features, state.num_outputs)
    with x64():
        ztz, zty, yty = (host(a) for a in moments(z, y))
    zty, yty = _shaped(state.vector, zty, yty)
    return GramState(state.ztz + ztz, state.zty + zty, state.yty + yty, state.n + z.shape[0])


# Every Z^T Z update writes a whole m x m float64 matrix, which costs as much as the product of
# about 32 rows: with at least GATHER_FEATURES features (an 8 MB matrix), batches of fewer than
# SMALL_BATCH rows (16 images: a CNN's feature batch on a CPU) are gathered into blocks of
# BLOCK_ROWS before their update. 16-row batches at m = 4096 took 278 s per 45,000 rows one by
# one, 26 s gathered (NOTES.md). Narrower features are added batch by batch, as they come.
GATHER_FEATURES = 1024
SMALL_BATCH = 64
BLOCK_ROWS = 1024


def gram_from_batches(batches: Iterable) -> GramState:
    """Statistics of all rows of an iterable of (z_batch (b, m), y_batch (b, k)) pairs.

    Sums stay on the device in float64 and come to the host once, so the cost is the n m^2
    products; with m >= `GATHER_FEATURES`, batches of fewer than `SMALL_BATCH` rows are gathered
    into blocks of about `BLOCK_ROWS` first, and updates shorter than the largest so far are
    zero-padded to it (one compilation). The statistics keep the first batch's target shape:
    vector y_batch (b,) gives zty (m,). With a feature map:

        batches = ((f, y[s:s + len(f)]) for s, f in nf.iterate_features(params, x, batch_size=4096))
        state = gram_from_batches(batches)
    """
    sums, n, width, shape, vector = None, 0, 0, (None, None), False
    pending, queued = [], 0

    def add(z, y):
        nonlocal sums, width
        with x64():
            rows = z.shape[0]
            width = max(width, rows)
            if rows < width:  # zero rows add nothing; one batch shape means one compilation
                z, y = (pad_rows(jnp.asarray(a), width, zeros=True) for a in (z, y))
            part = moments(z, y)
            sums = part if sums is None else tuple(a + b for a, b in zip(sums, part))

    def add_pending():
        nonlocal pending, queued
        if pending:
            add(*(parts[0] if len(parts) == 1 else jnp.concatenate(parts) for parts in zip(*pending)))
        pending, queued = [], 0

    # Each batch is pulled outside the float64 scope: a feature map behind the iterator must run
    # (and compile) in the caller's precision, not in float64.
    for i, pair in enumerate(batches):
        try:
            z, y = pair
        except (TypeError, ValueError):
            raise TypeError(f"batch {i} must be a pair (z_batch, y_batch), got {type(pair).__name__}") from None
        with x64():
            if n == 0:
                vector = _is_vector(y)
            z, y = _check_batch(z, y, *shape)
        rows = z.shape[0]
        n += rows
        shape = (z.shape[1], y.shape[1])
        if rows >= SMALL_BATCH or shape[0] < GATHER_FEATURES:
            add_pending()
            add(z, y)
        else:
            pending.append((z, y))
            queued += rows
            if queued >= BLOCK_ROWS:
                add_pending()
    add_pending()
    if sums is None:
        raise ValueError("batches yielded no (z_batch, y_batch) pairs: there is nothing to fit")
    with x64():
        ztz, zty, yty = (host(a) for a in sums)
    return GramState(ztz, *_shaped(vector, zty, yty), n)


def gram_merge(a: GramState, b: GramState) -> GramState:
    """Statistics of the union of two disjoint sets of rows (e.g. train and validation parts)."""
    a, b = _check_state(a), _check_state(b)
    if (a.num_features, a.num_outputs) != (b.num_features, b.num_outputs):
        raise ValueError(
            f"cannot merge statistics for (m, k) = {(a.num_features, a.num_outputs)} and "
            f"{(b.num_features, b.num_outputs)}"
        )
    if a.vector != b.vector:
        raise ValueError(
            f"cannot merge statistics of vector targets (zty (m,)) with those of (n, 1) targets (zty (m, 1)): got "
            f"zty {a.zty.shape} and {b.zty.shape}; accumulate both from targets of the same shape"
        )
    return GramState(a.ztz + b.ztz, a.zty + b.zty, a.yty + b.yty, a.n + b.n)


def _vector(weights: np.ndarray, vector: bool) -> np.ndarray:
    """(m, 1) -> (m,) for a vector target."""
    return weights[:, 0] if vector else weights


def _solved(result, lam: float, what: str) -> np.ndarray:
    """The solution of `regularized_solve`, or a clear error when the system was singular."""
    x, singular = result
    if bool(singular):
        raise ValueError(
            f"{what} + lam I is not numerically positive definite at lam={lam:g}: the matrix is rank-deficient "
            "(fewer independent rows than features, or duplicated features); use lam > 0"
        )
    return host(x)


def ridge_primal(ztz, zty, lam: float) -> np.ndarray:
    """W = (Z^T Z + lam I)^{-1} Z^T Y by Cholesky, in float64.

    Args:
      ztz: (m, m) Gram Z^T Z (symmetric positive semi-definite; the lower triangle is read).
      zty: (m, k) Z^T Y, or (m,).
      lam: >= 0; lam = 0 needs a full-rank Gram.

    Returns:
      float64 weights in zty's shape: (m, k), or (m,).
    """
    lam = _checks.regularization(lam)
    ztz = _checks.square(ztz, "ztz")
    vector = _is_vector(zty)
    zty = _checks.targets(zty, ztz, "zty", "ztz")
    with x64():
        return _vector(_solved(regularized_solve(ztz, zty, lam), lam, "Z^T Z"), vector)


def ridge_dual(z, y, lam: float) -> np.ndarray:
    """W = Z^T alpha with alpha = (Z Z^T + lam I)^{-1} Y, in float64: the same W as the primal
    form (push-through identity), at O(n^2 m + n^3) instead of O(n m^2 + m^3); for n < m.

    Args:
      z: (n, m) features.
      y: (n, k) targets, or (n,).
      lam: >= 0; lam = 0 gives the minimum-norm interpolant when Z has full row rank.

    Returns:
      float64 weights (m, k), or (m,) for y (n,).
    """
    lam = _checks.regularization(lam)
    z = _checks.features(z)
    vector = _is_vector(y)
    y = _checks.targets(y, z)
    with x64():
        alpha = _solved(regularized_solve(outer_rows(z, z), y, lam), lam, "Z Z^T")
        return _vector(host(transpose_times(z, alpha)), vector)


def fit_ridge(z, y, lam: float, form: str = "auto") -> RidgeModel:
    """Ridge regression of y on z with regularization lam.

    Args:
      z: (n, m) features (any float dtype; solved in float64).
      y: (n, k) targets, or (n,) for one output (weights are then (m,), predictions (n,)).
      lam: >= 0.
      form: 'primal' (m x m solve), 'dual' (n x n solve) or 'auto': dual when n < m.

    Returns:
      RidgeModel with float64 weights (m, k), or (m,) for y (n,).
    """
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    lam = _checks.regularization(lam)
    z = _checks.features(z)
    vector = _is_vector(y)
    y = _checks.targets(y, z)
    if form == "dual" or (form == "auto" and z.shape[0] < z.shape[1]):
        return RidgeModel(_vector(ridge_dual(z, y, lam), vector), lam)
    with x64():
        ztz, zty, _ = moments(z, y)
        return RidgeModel(_vector(_solved(regularized_solve(ztz, zty, lam), lam, "Z^T Z"), vector), lam)


def fit_ridge_gram(state: GramState, lam: float) -> RidgeModel:
    """Ridge regression from accumulated statistics (primal form); weights (m,) for statistics of
    vector targets, else (m, k)."""
    state = _check_state(state)
    if state.n == 0:
        raise ValueError("the GramState has seen no rows: there is nothing to fit")
    return RidgeModel(ridge_primal(state.ztz, state.zty, lam), _checks.regularization(lam))


def predict(model: RidgeModel, z):
    """Predictions z W: (n, k), or (n,) for a model fitted on a vector target (weights (m,)).

    NumPy z is computed in NumPy float64; a JAX z (also under jit) in JAX at z's dtype with
    full-precision matmul (no TF32 on GPUs).
    """
    w = model.weights
    if not _checks.is_tracer(z) and not _checks.is_tracer(w):
        z = _checks.as_array(z, "z")
        if z.ndim != 2 or z.shape[1] != w.shape[0]:
            raise ValueError(
                f"z has shape {tuple(z.shape)}, but the model's weights {tuple(w.shape)} need (n, {w.shape[0]})"
            )
    if isinstance(z, np.ndarray):
        return np.asarray(z, np.float64) @ np.asarray(w, np.float64)
    return jnp.dot(z, jnp.asarray(w, z.dtype), precision=jax.lax.Precision.HIGHEST)

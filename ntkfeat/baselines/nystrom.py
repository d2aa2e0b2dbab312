"""Nystrom features of any kernel, with uniform or ridge-leverage-score landmarks.

With landmarks L (dim rows of the training data) and K_LL = U diag(mu) U^T,

    phi(x) = K(x, L) U diag(mu)^{-1/2}        so  phi(x).phi(y) = K(x, L) K_LL^+ K(L, y)

(Williams & Seeger, NIPS 2001): exact on the landmarks and on their span in feature space. The
pseudo-inverse square root drops eigenvalues mu_j <= reg * max(mu); their columns are zero, so the
features keep the static width dim whatever the rank.

Ridge leverage scores tau_i(lam) = (K (K + lam I)^{-1})_ii = phi_i^T (C + lam I)^{-1} phi_i, with
K = Phi^T Phi and C = Phi Phi^T = sum_j phi_j phi_j^T (Alaoui & Mahoney, NIPS 2015), measure how
much row i is needed to approximate K at ridge lam; sampling landmarks proportionally to them
gives a good approximation with O(d_eff log d_eff) landmarks, d_eff(lam) = sum_i tau_i (Musco &
Musco, NIPS 2017). They are estimated from a uniform pilot S of s rows (the usual two-pass scheme):

    tau~_i = phi_i^T (C_S + lam I)^{-1} phi_i = (K_ii - K_iS (K_SS + lam I)^{-1} K_Si) / lam,

with C_S = sum_{j in S} phi_j phi_j^T, and for i in S the same with i left out of S (a pilot row
would otherwise explain itself: its score would be below 1 while the others' are not capped, so an
isolated point drawn into the pilot would become unlikely to be a landmark). As C_S <= C and
(C + lam I)^{-1} is operator-decreasing in C, tau~_i >= tau_i for every pilot: over-estimates,
which is what the sampling guarantees need. The score is x_i's residual against the pilot over
lam, so it keeps the residuals' proportions: rows the pilot already spans get small scores, rows
far from it large ones.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ntkfeat import _random
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.baselines._common import (
    check_batch, check_dim, check_params, check_positive, check_train, default_dtype, map_rows, row_blocks,
)

_SAMPLINGS = ("uniform", "rls")
# Floor of the default ridge, relative to the pilot's largest eigenvalue: keeps lam > 0 (and the
# solve well-conditioned) when the pilot is numerically low-rank, e.g. with duplicate rows.
_LAM_FLOOR = 1e-6


@pytree_dataclass(meta=("input_shape",))
class NystromParams:
    """Landmarks, the map K(x, L) -> features, and where the landmarks came from."""

    landmarks: jax.Array  # (dim, *input_shape)
    projection: jax.Array  # (dim, dim): U diag(mu)^{-1/2}, zero columns for dropped eigenvalues
    indices: jax.Array  # (dim,) int: the landmarks' rows in x_train
    input_shape: tuple[int, ...]

    @property
    def out_dim(self) -> int:
        return self.projection.shape[1]

    @property
    def rank(self) -> int:
        """Number of kept eigenvalues of K_LL (nonzero feature columns)."""
        return int(np.count_nonzero(np.any(np.asarray(self.projection) != 0, axis=0)))


def _kernel_call(kernel_fn: Callable, get: str | None) -> Callable:
    """kernel(x1, x2) -> (n1, n2), checked."""

    def kernel(x1, x2):
        k = kernel_fn(x1, x2) if get is None else kernel_fn(x1, x2, get)
        if tuple(k.shape) != (x1.shape[0], x2.shape[0]):
            raise ValueError(
                f"kernel_fn returned shape {tuple(k.shape)} for inputs with {x1.shape[0]} and "
                f"{x2.shape[0]} rows; expected ({x1.shape[0]}, {x2.shape[0]})"
            )
        return k

    return kernel


def _kernel_diagonal(kernel: Callable, x, block: int) -> np.ndarray:
    # kernel_fn has no diagonal-only mode; the diagonals of block-diagonal blocks cost n * block
    # entries instead of n^2.
    return row_blocks(lambda xb: np.diagonal(np.asarray(kernel(xb, xb))), x, block)


def ridge_leverage_scores(kernel_fn: Callable, x, pilot, lam: float | None = None, *,
                          get: str | None = "ntk", block_size: int = 1024):
    """Ridge leverage scores of the rows of x, over-estimated from a pilot subset S (two-pass scheme).

        tau~_i = (K_ii - K_iS' (K_S'S' + lam I)^{-1} K_S'i) / lam,   S' = S minus {i}

    (see the module docstring): tau~_i >= tau_i = (K (K + lam I)^{-1})_ii, and when S is every row
    tau~_i = tau_i / (1 - tau_i) (the leave-one-out form). Rows of S use the Schur complement
    1 / ((K_SS + lam I)^{-1})_ii - lam as their leave-one-out residual.

    The default ridge lam is the ceil(s/2)-th largest eigenvalue of K_SS (floored at 1e-6 times
    the largest): the ridge at which the pilot's own effective dimension sum_j mu_j / (mu_j + lam)
    lies in [s/4, 3s/4] (below, if the floor applies), so the scores single out what about s landmarks can resolve. A
    trace-scaled lam = tr(K) / s is far larger on kernels with a fast-decaying spectrum and makes
    most residuals look alike (sampling close to uniform).

    Args:
      kernel_fn: kernel_fn(x1, x2, get) (or kernel_fn(x1, x2) when get is None) -> (n1, n2).
      x: (n, ...) rows.
      pilot: (s,) distinct row indices into x.
      lam: ridge > 0 on the scale of K, or None for the default above.
      get: passed to kernel_fn ('ntk' for ntkfeat's kernels); None to call kernel_fn(x1, x2).
      block_size: rows per kernel evaluation.

    Returns:
      (scores (n,) float64 >= 0, lam float).
    """
    x = check_train(x, "x")
    n = x.shape[0]
    block = check_dim("block_size", block_size)
    pilot = np.asarray(pilot, np.int64).reshape(-1)
    if pilot.size < 1 or len(np.unique(pilot)) != pilot.size or pilot.min() < 0 or pilot.max() >= n:
        raise ValueError(f"pilot must be distinct row indices in [0, {n}), got {pilot.size} indices")
    s = pilot.size
    kernel = _kernel_call(kernel_fn, get)
    x_pilot = np.asarray(x)[pilot] if isinstance(x, np.ndarray) else jnp.asarray(x)[pilot]
    k_xs = row_blocks(lambda xb: kernel(xb, x_pilot), x, block)  # (n, s)
    diag = _kernel_diagonal(kernel, x, block)
    if not (np.all(np.isfinite(k_xs)) and np.all(np.isfinite(diag))):
        raise ValueError("kernel_fn returned NaN or inf values")
    k_ss = k_xs[pilot]
    k_ss = (k_ss + k_ss.T) / 2
    if lam is None:
        mu = np.linalg.eigvalsh(k_ss)[::-1]
        if not mu[0] > 0:
            raise ValueError("the kernel is zero (or negative) on the pilot rows; no leverage scores to compute")
        lam = max(mu[math.ceil(s / 2) - 1], _LAM_FLOOR * mu[0])
    lam = check_positive("lam", lam)
    factor = scipy.linalg.cho_factor(k_ss + lam * np.eye(s), lower=True)
    residual = diag - np.sum(k_xs.T * scipy.linalg.cho_solve(factor, k_xs.T), axis=0)
    inverse_diag = np.diagonal(scipy.linalg.cho_solve(factor, np.eye(s)))
    residual[pilot] = 1.0 / inverse_diag - lam
    return np.maximum(residual, 0.0) / lam, lam


def weighted_sample_without_replacement(key, weights, k: int) -> np.ndarray:
    """k distinct indices drawn successively with probability proportional to `weights`
    (Efraimidis & Spirakis 2006: the k largest log(u_i) / w_i, u_i uniform)."""
    w = np.asarray(weights, np.float64)
    if k > w.size:
        raise ValueError(f"cannot draw {k} distinct indices from {w.size}")
    # Zero weights would tie at -inf; a tiny floor keeps the draw defined (they come last).
    top = w.max() if w.size and w.max() > 0 else 1.0
    w = np.maximum(w, 1e-12 * top)
    keys = np.log1p(-np.asarray(_random.uniform(key, (w.size,)), np.float64)) / w
    return np.argsort(-keys, kind="stable")[:k]


def nystrom_projection(k_ll, reg: float) -> np.ndarray:
    """U diag(mu)^{-1/2} for mu_j > reg * max(mu), eigenvalues in decreasing order, other columns
    zero: (dim, dim) float64."""
    k_ll = np.asarray(k_ll, np.float64)
    if not np.all(np.isfinite(k_ll)):
        raise ValueError("kernel_fn returned NaN or inf values on the landmarks")
    mu, u = np.linalg.eigh((k_ll + k_ll.T) / 2)
    mu, u = mu[::-1], u[:, ::-1]
    if not mu[0] > 0:
        raise ValueError("the kernel matrix of the landmarks is zero (or negative definite)")
    keep = mu > reg * mu[0]
    return np.where(keep, u / np.sqrt(np.where(keep, mu, 1.0)), 0.0)


@jax.jit
def _project(k, projection):
    return jnp.dot(k.astype(projection.dtype), projection, precision=jax.lax.Precision.HIGHEST)


def nystrom(kernel_fn: Callable, dim: int, sampling: str = "uniform", reg: float = 1e-6, *,
            get: str | None = "ntk", rls_lambda: float | None = None, block_size: int = 1024):
    """Nystrom features phi(x) = K(x, L) K_LL^{-1/2} of any kernel, typically ntkfeat's exact NTK.

    Args:
      kernel_fn: kernel_fn(x1, x2, get) -> (n1, n2) (e.g. the kernel_fn of `ntkfeat.serial`), or
        kernel_fn(x1, x2) with get=None (e.g. functools.partial(gaussian_kernel, bandwidth=s)).
      dim: number of landmarks (and features), 1 <= dim <= n_train.
      sampling: 'uniform' (a uniformly random subset; for one key, the landmarks of a smaller dim
        are a prefix of those of a larger one) or 'rls' (ridge-leverage-score sampling without
        replacement, scores from a uniform pilot of dim rows; see `ridge_leverage_scores`).
      reg: eigenvalues of K_LL at or below reg * (largest eigenvalue) are dropped from the
        pseudo-inverse square root. 1e-6 sits above float32 rounding of the kernel (~1e-7 relative)
        but low enough that the dropped part of K_LL is negligible.
      get: what kernel_fn computes ('ntk', 'nngp'), or None to call kernel_fn(x1, x2).
      rls_lambda: ridge of the leverage scores; None: from the pilot's spectrum.
      block_size: rows per kernel evaluation in init_fn and default rows per batch in feature_fn.

    Returns:
      (init_fn, feature_fn):
        init_fn(key, x_train) -> NystromParams (chooses the landmarks and factors K_LL).
        feature_fn(params, x, *, batch_size=None) -> (n, dim) features; K(x, L) is evaluated
          batch_size rows at a time (default block_size).
    """
    dim = check_dim("dim", dim)
    if sampling not in _SAMPLINGS:
        raise ValueError(f"sampling must be one of {_SAMPLINGS}, got {sampling!r}")
    reg = float(reg)
    if not (np.isfinite(reg) and 0 <= reg < 1):
        raise ValueError(f"reg must be in [0, 1), got {reg!r}")
    if rls_lambda is not None:
        rls_lambda = check_positive("rls_lambda", rls_lambda)
    block = check_dim("block_size", block_size)
    if not callable(kernel_fn):
        raise TypeError(f"kernel_fn must be callable, got {kernel_fn!r}")
    kernel = _kernel_call(kernel_fn, get)

    def init_fn(key, x_train) -> NystromParams:
        x = check_train(x_train)
        n = x.shape[0]
        if dim > n:
            raise ValueError(f"dim = {dim} landmarks, but x_train has only {n} rows; use dim <= {n}")
        k_pilot, k_land = _random.split(key, 2)
        if sampling == "uniform" or dim == n:
            idx = np.asarray(_random.permutation(k_land, n))[:dim]
        else:
            pilot = np.asarray(_random.permutation(k_pilot, n))[:dim]
            scores, _ = ridge_leverage_scores(kernel_fn, x, pilot, rls_lambda, get=get, block_size=block)
            idx = weighted_sample_without_replacement(k_land, scores, dim)
        landmarks = jnp.asarray(np.asarray(x)[idx]) if isinstance(x, np.ndarray) else jnp.asarray(x)[idx]
        k_ll = row_blocks(lambda lb: kernel(lb, landmarks), landmarks, block)
        projection = nystrom_projection(k_ll, reg)
        return NystromParams(
            landmarks, jnp.asarray(projection, default_dtype()), jnp.asarray(idx, jnp.int32), tuple(x.shape[1:])
        )

    def feature_fn(params: NystromParams, x, *, batch_size: int | None = None) -> jax.Array:
        check_params(params, NystromParams, "nystrom", dim, "landmarks")
        x = check_batch(x, params.input_shape)
        return map_rows(lambda xb: _project(kernel(xb, params.landmarks), params.projection), x,
                        batch_size or block)

    return init_fn, feature_fn

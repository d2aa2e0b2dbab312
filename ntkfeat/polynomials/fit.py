"""Polynomials with non-negative coefficients that approximate dot-product kernel functions.

A sketch needs K(rho) ~ sum_j c_j rho^j with every c_j >= 0: that keeps the approximate kernel
positive definite and makes every term a sketchable tensor power. These fits run once, at
parameter-creation time, on the host in float64.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.optimize

from ntkfeat.exact.arccos import arccos_kernel0_taylor, arccos_kernel1_taylor

# Coefficients below this fraction of the largest one are set to 0: they cost sketch dimensions
# and carry no kernel mass.
_RELATIVE_ZERO = 1e-7


def fit_grid(interval: tuple[float, float] = (-1.0, 1.0), num_points: int = 401) -> np.ndarray:
    """Equispaced points plus as many Chebyshev nodes on `interval`.

    The Chebyshev nodes crowd both ends, where arc-cosine kernels bend hardest (their
    derivatives blow up at rho = +-1); the equispaced half keeps the middle honest. On UCI data
    this unweighted least-squares design beat both a grid clustered at 1 only and a minimax fit
    in kernel Frobenius error (NOTES.md).
    """
    lo, hi = interval
    if not -1.0 <= lo < hi <= 1.0:
        raise ValueError(f"interval must satisfy -1 <= lo < hi <= 1, got {interval}")
    uniform = np.linspace(lo, hi, num_points)
    cheb = np.cos(np.pi * (np.arange(num_points) + 0.5) / num_points)
    cheb = lo + (hi - lo) * (cheb + 1.0) / 2.0
    return np.sort(np.concatenate([uniform, cheb]))


def fit_nonneg_polynomial(
    fn: Callable[[np.ndarray], np.ndarray],
    degree: int,
    interval: tuple[float, float] = (-1.0, 1.0),
    *,
    num_points: int = 401,
    weights: Callable[[np.ndarray], np.ndarray] | None = None,
    monotone: bool | None = None,
) -> np.ndarray:
    """Least-squares fit of `fn` on `interval` by sum_j c_j rho^j with c_j >= 0.

    Minimizes sum_i w_i^2 (p(rho_i) - fn(rho_i))^2 over the grid of `fit_grid`, subject to
    c >= 0 and, if `monotone`, p non-decreasing on the grid (automatic on [0, 1] when c >= 0;
    on negative rho it is an extra constraint, enforced by a small QP when the NNLS solution
    violates it). The default enforces it when `fn` itself is non-decreasing on the grid: the
    arc-cosine kernels are, but a whole NTK is not (K_1 falls near rho = -1, where kappa0's
    derivative blows up), and forcing it there costs an order of magnitude in fit error.

    Args:
      fn: vectorized function of rho (NumPy float64 in, float64 out).
      degree: polynomial degree q >= 0.
      interval: (lo, hi) with -1 <= lo < hi <= 1.
      num_points: grid size (twice this many points in all).
      weights: optional function of rho giving w_i.
      monotone: require p non-decreasing on the grid (None: iff fn is).

    Returns:
      float64 array of shape (degree + 1,): c_0 .. c_q, all >= 0.
    """
    if not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")
    grid = fit_grid(interval, num_points)
    target = np.asarray(fn(grid), dtype=np.float64)
    if not np.all(np.isfinite(target)):
        raise ValueError("fn returned non-finite values on the fit grid")
    w = np.ones_like(grid) if weights is None else np.asarray(weights(grid), dtype=np.float64)
    powers = np.arange(degree + 1)
    vander = grid[:, None] ** powers
    a = vander * w[:, None]
    b = target * w
    # Column scaling keeps NNLS well conditioned at high degree.
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    c, _ = scipy.optimize.nnls(a / scale, b, maxiter=50 * (degree + 1))
    c = c / scale

    if monotone is None:
        monotone = bool(np.all(np.diff(target) >= -1e-12))
    if monotone and degree >= 2:
        deriv = powers[1:] * grid[:, None] ** (powers[1:] - 1)  # p'(rho) = deriv @ c[1:]
        if np.min(deriv @ c[1:]) < -1e-9 * max(1.0, np.max(np.abs(target))):
            c = _monotone_qp(a / scale, b, deriv / scale[1:], c * scale) / scale
    c[c < _RELATIVE_ZERO * max(np.max(c), 1e-300)] = 0.0
    return c


def _monotone_qp(a, b, deriv, c0):
    """min |a c - b|^2 s.t. c >= 0, deriv @ c[1:] >= 0, started from the NNLS solution."""
    nvar = a.shape[1]

    def objective(c):
        r = a @ c - b
        return 0.5 * r @ r, a.T @ r

    cons = {
        "type": "ineq",
        "fun": lambda c: deriv @ c[1:],
        "jac": lambda c: np.hstack([np.zeros((deriv.shape[0], 1)), deriv]),
    }
    res = scipy.optimize.minimize(
        objective, c0, jac=True, bounds=[(0.0, None)] * nvar, constraints=[cons],
        method="SLSQP", options={"maxiter": 500, "ftol": 1e-14},
    )
    return np.maximum(res.x, 0.0)


def taylor_polynomial(kind: str, degree: int) -> np.ndarray:
    """Truncated Taylor coefficients of 'arccos0' or 'arccos1' (the theory's choice)."""
    if kind == "arccos0":
        return arccos_kernel0_taylor(degree)
    if kind == "arccos1":
        return arccos_kernel1_taylor(degree)
    raise ValueError(f"unknown Taylor kind {kind!r}; expected 'arccos0' or 'arccos1'")


def poly_eval(coeffs, rho):
    """p(rho) = sum_j coeffs[j] rho^j (Horner; works on NumPy and JAX arrays)."""
    out = 0.0 * rho + coeffs[-1]
    for c in coeffs[-2::-1]:
        out = out * rho + c
    return out

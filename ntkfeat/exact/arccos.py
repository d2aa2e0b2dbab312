"""Arc-cosine kernels of order 0 and 1 and their Taylor series.

Normalized forms (value 1 at rho = 1), with rho the cosine of the angle between two inputs:

    arccos_kernel0(rho) = (pi - arccos rho) / pi
    arccos_kernel1(rho) = (sqrt(1 - rho^2) + rho (pi - arccos rho)) / pi

For w ~ N(0, I): 2 E[1{w.x > 0} 1{w.y > 0}] = arccos_kernel0(rho) and
2 E[relu(w.x) relu(w.y)] = |x| |y| arccos_kernel1(rho) (Cho and Saul, 2009).
Both have non-negative Taylor coefficients, so both are positive-definite dot-product kernels.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def _module(rho):
    """NumPy (float64) for NumPy or Python inputs, jax.numpy otherwise."""
    if isinstance(rho, (np.ndarray, np.generic, float, int)):
        return np, np.clip(np.asarray(rho, dtype=np.float64), -1.0, 1.0)
    return jnp, jnp.clip(jnp.asarray(rho), -1.0, 1.0)


def arccos_kernel0(rho):
    """Order-0 arc-cosine kernel (pi - arccos rho) / pi, elementwise; rho is clipped to [-1, 1].

    NumPy inputs are computed in NumPy float64, JAX inputs in JAX at their own precision.
    """
    xp, rho = _module(rho)
    return (xp.pi - xp.arccos(rho)) / xp.pi


def arccos_kernel1(rho):
    """Order-1 arc-cosine kernel (sqrt(1 - rho^2) + rho (pi - arccos rho)) / pi, elementwise."""
    xp, rho = _module(rho)
    return (xp.sqrt(xp.maximum(1.0 - rho * rho, 0.0)) + rho * (xp.pi - xp.arccos(rho))) / xp.pi


def _arcsin_series(num_terms: int) -> np.ndarray:
    """a_i = (2i)! / (4^i (i!)^2 (2i+1)), the coefficients of arcsin(x) = sum_i a_i x^(2i+1)."""
    out = np.empty(num_terms)
    central = 1.0  # (2i)! / (4^i (i!)^2), updated by its ratio to avoid huge factorials
    for i in range(num_terms):
        if i > 0:
            central *= (2 * i - 1) / (2 * i)
        out[i] = central / (2 * i + 1)
    return out


def arccos_kernel0_taylor(degree: int) -> np.ndarray:
    """Taylor coefficients c[0..degree] of arccos_kernel0 around 0 (float64, all >= 0).

    arccos_kernel0(rho) = 1/2 + arcsin(rho) / pi.
    """
    _check_degree(degree)
    c = np.zeros(degree + 1)
    c[0] = 0.5
    a = _arcsin_series(degree // 2 + 1)
    for i, ai in enumerate(a):
        if 2 * i + 1 <= degree:
            c[2 * i + 1] = ai / math.pi
    return c


def arccos_kernel1_taylor(degree: int) -> np.ndarray:
    """Taylor coefficients c[0..degree] of arccos_kernel1 around 0 (float64, all >= 0).

    arccos_kernel1 is the antiderivative of arccos_kernel0 with value 1/pi at 0, so
    c[0] = 1/pi and c[j + 1] = arccos_kernel0_taylor[j] / (j + 1).
    """
    _check_degree(degree)
    c = np.zeros(degree + 1)
    c[0] = 1.0 / math.pi
    k0 = arccos_kernel0_taylor(max(degree - 1, 0))
    for j in range(min(degree, len(k0))):
        c[j + 1] = k0[j] / (j + 1)
    return c


def _check_degree(degree: int) -> None:
    if not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")

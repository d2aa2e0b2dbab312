"""Dual kernels of activations: E[sigma(u) sigma(v)] for jointly Gaussian (u, v).

For u, v with variances q1, q2 and correlation rho, Mehler's formula gives

    E[sigma(u) sigma(v)] = sum_l a_l(q1) a_l(q2) rho^l,   a_l(q) = E[sigma(sqrt(q) g) He_l(g)] / sqrt(l!)

(He_l: probabilists' Hermite polynomials, g ~ N(0, 1)), and the NTK's derivative kernel is the
same series of sigma' (Price's theorem: it is the derivative of the dual in the covariance).
Two families are handled here:

- Positively homogeneous sigma of degree k (sigma(c x) = c^k sigma(x) for c > 0), written
  sigma(x) = s_pos x^k for x > 0 and s_neg |x|^k for x < 0 (ReLU, LeakyRelu, ABRelu, Abs, Sign,
  RectifiedMonomial, Monomial). Then a_l(q) = q^(k/2) a_l(1), so the dual is
  (q1 q2)^(k/2) f(rho) with f(rho) = sum_l a_l(1)^2 rho^l, whose Taylor coefficients are exact
  (half-line Gaussian moments of polynomials, in integer arithmetic) and whose values come from
  an angular integral (`rectified_moment`). The derivative kernel is (q1 q2)^((k-1)/2) f'(rho).
- Any sigma with a finite Gaussian second moment: a_l(q) at each input's own q by Gauss-Hermite
  quadrature (`mehler_coefficients`), in JAX, so that it runs per input and position inside
  the feature map.

Reference: Han, Zandieh, Lee, Novak, Xiao, Karbasi, "Fast Neural Kernel Embeddings for General
Activations", NeurIPS 2022 (arXiv 2209.04121).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import jax.numpy as jnp
import numpy as np

# Gauss-Hermite nodes for the Mehler coefficients of smooth activations. Products of an
# activation with He_l for l <= 32 are integrated to float64 accuracy for the activations of
# neural-tangents at the variances seen after standardized inputs (tests compare to its kernels).
QUADRATURE_NODES = 96
# Gauss-Legendre nodes of the angular integral of `rectified_moment`: its integrand is a
# trigonometric polynomial of degree 2k, integrated exactly for k well beyond 10.
_ANGLE_NODES = 64


# ------------------------------------------------------------------------------ Hermite basics


def hermite_polynomial(l: int) -> list[int]:
    """Integer coefficients (ascending powers) of the probabilists' Hermite polynomial He_l."""
    if l < 0:
        raise ValueError(f"degree must be >= 0, got {l}")
    prev, cur = [1], [0, 1]
    if l == 0:
        return prev
    for n in range(1, l):  # He_{n+1} = x He_n - n He_{n-1}
        nxt = [0] + cur
        for i, c in enumerate(prev):
            nxt[i] -= n * c
        prev, cur = cur, nxt
    return cur


@functools.lru_cache(maxsize=64)
def gauss_hermite(num: int = QUADRATURE_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with E[h(g)] ~ sum_i w_i h(x_i), g ~ N(0, 1) (weights sum to 1)."""
    x, w = np.polynomial.hermite_e.hermegauss(num)
    return x, w / w.sum()


@functools.lru_cache(maxsize=64)
def hermite_projection(degree: int, num: int = QUADRATURE_NODES) -> np.ndarray:
    """(num, degree + 1) float64 matrix P with P[i, l] = w_i He_l(x_i) / sqrt(l!), so that
    sigma(sqrt(q) x) @ P gives the Mehler coefficients a_0(q) .. a_degree(q)."""
    x, w = gauss_hermite(num)
    out = np.empty((num, degree + 1))
    h_prev, h = np.zeros_like(x), np.ones_like(x)
    for l in range(degree + 1):  # normalized recursion: h_l = He_l / sqrt(l!)
        out[:, l] = w * h
        h_prev, h = h, (x * h - math.sqrt(l) * h_prev) / math.sqrt(l + 1)
    return out


def mehler_coefficients(fn, q, degree: int, num: int = QUADRATURE_NODES):
    """a_l(q) = E[fn(sqrt(q) g) He_l(g)] / sqrt(l!) for l = 0 .. degree, by Gauss-Hermite
    quadrature, elementwise over the array q (JAX or NumPy): shape q.shape + (degree + 1,).

    Also returns E[fn(sqrt(q) g)^2] and its even and odd parts (the second moments of
    (fn(x) +- fn(-x)) / 2), from the same evaluations: the whole diagonal of the dual kernel
    and the mass of each parity, so that what a truncated series misses is known.

    Returns:
      (coefficients, (second_moment, even_moment, odd_moment)).
    """
    x, w = gauss_hermite(num)
    xp = jnp if not isinstance(q, (np.ndarray, float, int)) else np
    q = xp.asarray(q)
    dtype = q.dtype if xp is jnp else np.float64
    # Guarded twice: the derivative at q = 0 (a zero row) is 0, not NaN.
    root = xp.where(q > 0, xp.sqrt(xp.where(q > 0, q, 1.0)), 0.0)[..., None]
    values = fn(root * xp.asarray(x, dtype))  # (..., num)
    proj = xp.asarray(hermite_projection(degree, num), dtype)
    coeffs = values @ proj
    flipped = values[..., ::-1]  # nodes are symmetric: fn at -x_i
    wq = xp.asarray(w, dtype)
    even = ((values + flipped) / 2) ** 2 @ wq
    odd = ((values - flipped) / 2) ** 2 @ wq
    return coeffs, (even + odd, even, odd)


def host_mehler_coefficients(fn, q, degree: int, num: int = QUADRATURE_NODES):
    """`mehler_coefficients` at static variances q, in float64 NumPy, evaluated at once even
    while a JAX transformation traces the caller (parameter creation plans with them)."""
    import jax

    with jax.ensure_compile_time_eval(), jax.enable_x64(True):
        a, moments = mehler_coefficients(fn, np.asarray(q, np.float64), degree, num)
        return np.asarray(a, np.float64), tuple(np.asarray(m, np.float64) for m in moments)


# ----------------------------------------------------------------------- homogeneous activations


def _half_moment(p: int) -> tuple[Fraction, Fraction]:
    """E[g^p 1{g > 0}] as (rational part, coefficient of 1 / sqrt(2 pi)): exactly one is zero.

    int_0^inf x^p e^(-x^2/2) dx = 2^((p-1)/2) Gamma((p+1)/2): for even p that over sqrt(2 pi) is
    (p-1)!! / 2; for odd p it is 2^((p-1)/2) ((p-1)/2)! / sqrt(2 pi).
    """
    if p % 2 == 0:
        double = math.prod(range(p - 1, 0, -2)) if p > 0 else 1
        return Fraction(double, 2), Fraction(0)
    h = (p - 1) // 2
    return Fraction(0), Fraction(2**h * math.factorial(h))


@functools.lru_cache(maxsize=256)
def homogeneous_mehler_coefficients(k: int, s_pos: float, s_neg: float, degree: int) -> np.ndarray:
    """Signed Mehler coefficients a_l(1), l = 0 .. degree, of the homogeneous activation
    sigma(x) = s_pos x^k (x > 0), s_neg |x|^k (x < 0): exact, from half-line moments.

    a_l(1) sqrt(l!) = (s_pos + (-1)^l s_neg) E[g^k He_l(g) 1{g > 0}] (the x < 0 half is the
    mirror image), and E[g^p 1{g>0}] is rational or rational / sqrt(2 pi). At variance q,
    a_l(q) = q^(k/2) a_l(1).
    """
    out = np.zeros(degree + 1)
    for l in range(degree + 1):
        weight = s_pos + (-1) ** l * s_neg
        if weight == 0.0:
            continue
        # He_l has powers of one parity only, so every moment is rational, or every one is a
        # rational over sqrt(2 pi): the square over l! stays exact until the final division.
        rational, radical = Fraction(0), Fraction(0)
        for i, h in enumerate(hermite_polynomial(l)):
            if h:
                r, s = _half_moment(k + i)
                rational += h * r
                radical += h * s
        square = float(rational**2 / math.factorial(l)) + float(radical**2 / math.factorial(l)) / (2 * math.pi)
        sign = (1.0 if rational + radical >= 0 else -1.0) * (1.0 if weight >= 0 else -1.0)
        out[l] = sign * abs(weight) * math.sqrt(square)
    return out


def homogeneous_mehler_squares(k: int, s_pos: float, s_neg: float, degree: int) -> np.ndarray:
    """Taylor coefficients c_l = a_l(1)^2 of f(rho) (see `homogeneous_mehler_coefficients`)."""
    return homogeneous_mehler_coefficients(k, s_pos, s_neg, degree) ** 2


@functools.lru_cache(maxsize=16)
def _legendre(num: int):
    return np.polynomial.legendre.leggauss(num)


def rectified_moment(k: int, rho) -> np.ndarray:
    """J_k(rho) = E[relu(u)^k relu(v)^k] for unit-variance u, v with correlation rho (float64).

    In polar coordinates (u, v) = r (cos phi, cos(phi - theta)) with rho = cos(theta), r^2 ~
    chi-square(2) so E r^(2k) = 2^k k!, and both factors are positive for phi in
    (theta - pi/2, pi/2):  J_k = 2^k k! / (2 pi) * int cos^k(phi) cos^k(phi - theta) dphi.
    J_0 = arccos_kernel0 / 2, J_1 = arccos_kernel1 / 2 (Cho and Saul, 2009).
    """
    rho = np.clip(np.asarray(rho, np.float64), -1.0, 1.0)
    theta = np.arccos(rho)
    if k == 0:
        return (np.pi - theta) / (2 * np.pi)
    nodes, weights = _legendre(_ANGLE_NODES)
    lo, hi = theta - np.pi / 2, np.full_like(theta, np.pi / 2)
    half = (hi - lo)[..., None] / 2
    phi = (lo + hi)[..., None] / 2 + half * nodes
    integrand = (np.cos(phi) * np.cos(phi - theta[..., None])) ** k
    return 2.0**k * math.factorial(k) / (2 * np.pi) * np.sum(weights * integrand, axis=-1) * half[..., 0]


def homogeneous_dual(k: int, s_pos: float, s_neg: float, rho) -> np.ndarray:
    """f(rho) = E[sigma(u) sigma(v)] at unit variances for sigma(x) = s_pos x^k (x > 0),
    s_neg |x|^k (x < 0):  (s_pos^2 + s_neg^2) J_k(rho) + 2 s_pos s_neg J_k(-rho)."""
    rho = np.asarray(rho, np.float64)
    out = (s_pos**2 + s_neg**2) * rectified_moment(k, rho)
    if s_pos * s_neg != 0.0:
        out = out + 2 * s_pos * s_neg * rectified_moment(k, -rho)
    return out


def homogeneous_dual_derivative(k: int, s_pos: float, s_neg: float, rho) -> np.ndarray:
    """f'(rho) = E[sigma'(u) sigma'(v)] at unit variances: sigma' is the homogeneous activation
    of degree k - 1 with slopes (k s_pos, -k s_neg) (Price's theorem). k >= 1."""
    if k < 1:
        raise ValueError("the derivative kernel of a degree-0 activation is not a function (it is zero a.e.)")
    return homogeneous_dual(k - 1, k * s_pos, -k * s_neg, rho)


__all__ = [
    "QUADRATURE_NODES", "gauss_hermite", "hermite_polynomial", "hermite_projection", "homogeneous_dual",
    "host_mehler_coefficients",
    "homogeneous_dual_derivative", "homogeneous_mehler_coefficients", "homogeneous_mehler_squares", "mehler_coefficients", "rectified_moment",
]

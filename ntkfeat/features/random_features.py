"""NTK random features at an activation: sigma(W^T z) for the NNGP, sigma'(W^T z) for the NTK.

With w ~ N(0, I), (w.z_x, w.z_y) is jointly Gaussian with the covariance the NNGP features z
hold, so sigma(w.z) / sqrt(m) are unbiased features of the activation's dual kernel, and
sigma'(w.z) / sqrt(m) of its derivative kernel; the NTK features are ntk (x) those (a
TensorSRHT, `sketches.product`).

Mehler-centred. By Mehler's formula sigma(a) = a_0(q) + a_1(q) a / sqrt(q) + r(a), q = |z|^2,
where r has no Hermite component of degree 0 or 1, so the three parts are uncorrelated and

    E[sigma(u) sigma(v)] = a_0(q_x) a_0(q_y) + a_1(q_x) a_1(q_y) rho + E[r_x(u) r_y(v)].

The features keep the first two terms exactly ([a_0(q), a_1(q) u], u = z / |z|) and sample only
the residual r(w.z); the same for sigma' with its b_0, b_1. The degree-0 and degree-1 parts are
control variates: for ReLU they are the mean of |w.z| / 2 and z / 2 (the symmetrization
relu(a) = (a + |a|) / 2 in closed form), and the step's constant 1/2 and its linear part.
The coefficients are exact for homogeneous activations (a_l(q) = q^(k/2) a_l(1)) and come from
Gauss-Hermite quadrature at each input's q otherwise.

Leverage-score sampling (Han et al. 2021) draws w from q(w) ~ |w|^2 N(w; 0, I) and weights each
feature by sqrt(d) / |w| (N/q = d / |w|^2, so unbiased for any activation; the spectral guarantee
is proven for ReLU). The draw is exact: w = r u with u uniform on the sphere and
r^2 ~ chi-square(d + 2). Orthogonal random features draw directions in blocks of d orthonormal
vectors (each still uniform on the sphere) with independent radii.

One weight matrix serves sigma and sigma' (the NNGP features use its first columns): each set
is unbiased on its own, and the one matmul is most of the cost.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random, _trig
from ntkfeat._norms import norm as safe_norm
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.exact import duals
from ntkfeat.features.activation import activation_widths, check_activation_input, check_widths, normalize
from ntkfeat.features.state import Features, Spec
from ntkfeat.features.table import register
from ntkfeat.layers.activations import Activation, ExpNormalized, Hermite, HomogeneousDual, MehlerDual, derivative
from ntkfeat.layers.methods import RandomFeatures
from ntkfeat.sketches.product import OffsetProductParams, Spectrum, offset_product, offset_product_init
from ntkfeat.sketches.fold import FoldSketchParams, fold_sketch, fold_sketch_init
from ntkfeat.sketches.srht import (
    fft_length, real_dft, real_dft_weights,
)

# Coefficients below this (relative to the activation's scale) are taken as exactly zero: the
# block they would scale is left out (e.g. the linear part of Abs, the mean of sign).
_ZERO = 1e-9


@pytree_dataclass(meta=("nngp_columns", "nngp_constant", "nngp_linear", "t_linear"))
class ActivationRFParams:
    """Parameters of an activation's random features.

    linear: sketch of u for the degree-1 parts when u is wide (None: u itself).
    weights: (d, m) random directions times radii, or their StructuredProjection; scale: (m,)
    sqrt(1/m) times the leverage weight of each column. The NNGP features use the first `nngp_columns` columns, the
    derivative features all of them. product: ntk (x) [b_0, t] (None without an NTK).
    The flags say which exact blocks exist (a zero coefficient needs none).
    """

    linear: FoldSketchParams | None
    weights: jax.Array | StructuredProjection
    scale: jax.Array
    product: OffsetProductParams | None
    nngp_columns: int
    nngp_constant: bool
    nngp_linear: bool
    t_linear: bool


class StructuredProjection(NamedTuple):
    """w_i . z for structured w (SORF, Yu et al. 2016): per block of N outputs, `SORF_STAGES` (2)
    sign-flipped orthogonal rotations Q = R2 D2 R1 D1 of the zero-padded z (N = fft_length(d)),
    then per output a radius: w_i = r_i sqrt(N / d) q_i. Q is orthogonal, so the directions of a
    block are orthogonal and E w w^T = E r^2 / d I, as for Gaussian w with r ~ chi(d); the
    rotations make each direction close to uniform on the sphere. O(N log N) per block of N
    outputs instead of O(d N): the dense product was most of the cost of wide layers.

    R1 is the real DFT of D1 z: its spectrum rfft(D1 z) is kept (the NTK product borrows its
    Hartley rows). For even N, the spectrum's N real numbers are packed into N / 2 complex ones
    (the Nyquist term in the imaginary slot of the zero frequency), and the later rotations are
    complex FFTs of length N / 2, with their signs flipping real and imaginary parts apart: each
    an orthogonal map of R^N, one FFT and one pass, 0.7x the real-DFT stages of odd N. The
    normalizing factors are folded into the signs and the radii."""

    first: jax.Array  # (blocks, d) signs D1
    rest: jax.Array  # (blocks, SORF_STAGES - 1, N): the later stages' signs, times the normalizing factors
    radius: jax.Array  # (columns,) r_i sqrt(N / d), times the last normalizing factor


def structured_first_stage(p: StructuredProjection, z: jax.Array) -> jax.Array:
    """(..., d) -> (..., blocks, N // 2 + 1): rfft(D1 z) at length N, per block."""
    n = p.rest.shape[-1]
    return jnp.fft.rfft(z[..., None, :] * p.first.astype(z.dtype), n=n, axis=-1)


def structured_project(p: StructuredProjection, z: jax.Array, first=None) -> jax.Array:
    """(..., d) -> (..., columns). `first`: `structured_first_stage(p, z)` when the caller has it."""
    n = p.rest.shape[-1]
    r = structured_first_stage(p, z) if first is None else first
    if n % 2 == 0:
        h = n // 2
        c = r[..., :h].at[..., 0].set(jax.lax.complex(r[..., 0].real, r[..., h].real))
        for stage in range(p.rest.shape[1]):
            signs = p.rest[:, stage].astype(z.dtype)
            c = jnp.fft.fft(jax.lax.complex(c.real * signs[:, :h], c.imag * signs[:, h:]), axis=-1)
        v = jnp.concatenate([c.real, c.imag], axis=-1)
    else:
        v = jnp.concatenate([r.real, r.imag[..., 1 : (n + 1) // 2]], axis=-1)  # unnormalized real DFT
        for stage in range(p.rest.shape[1]):
            v = real_dft(v * p.rest[:, stage].astype(z.dtype), n, np.ones(n))
    v = v.reshape(v.shape[:-2] + (-1,))[..., : p.radius.shape[0]]
    return v * p.radius.astype(z.dtype)


def _sorf_factors(n: int, stages: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-stage factors (stages, N) on the signs, factor (N,) on the radii) that make
    `structured_project` orthonormal (see StructuredProjection)."""
    w = real_dft_weights(n)  # the real DFT's coordinate weights
    if n % 2 == 0:
        h = n // 2
        pack = np.concatenate([w[:h], np.r_[w[h], w[h + 1 :]]])  # [Re r_0..r_(h-1)], [Re r_h, Im r_1..]
        unitary = np.full(n, h**-0.5)  # an unnormalized complex FFT of length h
        return np.stack([pack] + [unitary] * (stages - 1)), unitary
    return np.stack([w] * stages), w


def project(weights, z: jax.Array) -> jax.Array:
    """z @ W for dense weights (d, m) or a StructuredProjection."""
    if isinstance(weights, StructuredProjection):
        return structured_project(weights, z)
    return z @ weights.astype(z.dtype)


def sphere_directions(key, dim: int, count: int, orthogonal: bool) -> jax.Array:
    """(dim, count) unit columns, uniform on the sphere; in orthonormal blocks if `orthogonal`."""
    if not orthogonal:
        g = _random.normal(key, (dim, count))
        return g / jnp.linalg.norm(g, axis=0, keepdims=True)
    blocks = -(-count // dim)
    return jnp.concatenate([_random.haar_orthogonal(k, dim) for k in _random.split(key, blocks)], 1)[:, :count]


# Rotations per structured block. Two cost 0.85x the time of three per row (depth 2, dim 8192,
# protein) at the same kernel error: over protein and kin8nm (500 rows, dim 8192) and diabetes
# (100 rows, dim 4096) at depths 2-4, 8 keys, plain and leverage, the mean errors of the 18
# cells sum to 0.3073 / 0.3081 with two against 0.3093 / 0.3078 with three, maxima mixed (NOTES.md).
SORF_STAGES = 2
# Above this input width the weights are structured (when the method says 'auto'): the dense
# product costs d operations per output, the structured one ~SORF_STAGES log2(d) FFT passes.
STRUCTURED_ABOVE = 128


def gaussian_weights(key, dim: int, count: int, method: RandomFeatures, dtype):
    """(W, column_scale): Gaussian (or tilted) weights, dense (dim, count) or structured, and the
    per-feature scale sqrt(1/m) (times the leverage weight sqrt(d) / |w|)."""
    k_dir, k_rad = _random.split(key, 2)
    if method.leverage:
        radius = _random.chi(k_rad, dim + 2, count)  # |w| under the tilted law
        scale = np.sqrt(dim / count) / radius
    else:
        radius = _random.chi(k_rad, dim, count)  # |w| for w ~ N(0, I)
        scale = jnp.full((count,), (1.0 / count) ** 0.5)
    structured = method.projection == "structured" or (method.projection == "auto" and dim > STRUCTURED_ABOVE)
    if structured:
        n = fft_length(dim)
        blocks = -(-count // n)
        k1, k2 = _random.split(k_dir, 2)
        stage_factors, last = _sorf_factors(n, SORF_STAGES - 1)
        weights = StructuredProjection(
            jnp.asarray(_random.rademacher(k1, (blocks, dim)), dtype),
            jnp.asarray(_random.rademacher(k2, (blocks, SORF_STAGES - 1, n)), dtype) * jnp.asarray(stage_factors, dtype),
            jnp.asarray(radius * np.sqrt(n / dim) * np.tile(last, blocks)[:count], dtype),
        )
        return weights, jnp.asarray(scale, dtype)
    u = sphere_directions(k_dir, dim, count, method.orthogonal)
    return jnp.asarray(u * radius, dtype), jnp.asarray(scale, dtype)


# ------------------------------------------------------------------------------ coefficients


def _typical_coefficients(layer: Activation, q: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(a_0, a_1) and (b_0, b_1) at variances around q (to decide which blocks exist)."""
    dual = layer.dual()
    if isinstance(dual, HomogeneousDual):
        a = dual.coefficients(1)
        b = dual.derivative_coefficients(1) if dual.derivative_coefficients else None
        return np.abs(a), None if b is None else np.abs(b)
    qs = q * np.array([0.25, 1.0, 4.0])
    a, _ = duals.host_mehler_coefficients(dual.fn, qs, 1)
    b, _ = duals.host_mehler_coefficients(dual.fn_prime, qs, 1)
    return np.max(np.abs(a), axis=0), np.max(np.abs(b), axis=0)


def _coefficients(layer: Activation, q, derivative: bool):
    """(c_0(q), c_1(q)) per row: the degree-0 and -1 Mehler coefficients of sigma (or sigma')."""
    dual = layer.dual()
    if isinstance(dual, HomogeneousDual):
        c = dual.derivative_coefficients(1) if derivative else dual.coefficients(1)
        power = (dual.degree - 1 if derivative else dual.degree) / 2
        amp = jnp.ones_like(q) if power == 0 else jnp.where(q > 0, jnp.where(q > 0, q, 1.0) ** power, 0.0)
        return c[0] * amp, c[1] * amp
    a, _ = duals.mehler_coefficients(dual.fn_prime if derivative else dual.fn, q, 1)
    return a[..., 0], a[..., 1]


def _second_moment(layer: Activation, diag):
    """E[sigma(sqrt(q) g)^2] at the exact diagonal q (the NNGP diagonal after the layer)."""
    dual = layer.dual()
    if isinstance(dual, HomogeneousDual):
        return float(dual.f(1.0)) * (diag**dual.degree if dual.degree else jnp.ones_like(diag))
    _, (second, _, _) = duals.mehler_coefficients(dual.fn, diag, 0)
    return second


# ------------------------------------------------------------------------------------- rule


def activation_init(layer: Activation, key, spec: Spec, ctx):
    name = type(layer).__name__
    spec = check_activation_input(spec, ctx, name)
    dual = layer.dual()
    if isinstance(dual, HomogeneousDual) and dual.coefficients is None:
        raise NotImplementedError(
            f"{ctx.where}: {name} has no feature rule for RandomFeatures (its neural-tangents kernel is not "
            f"E[sigma(u) sigma(v)] of a function at the inputs' variances); use Sketch"
        )
    method, q = ctx.method, spec.nngp_scale
    (a0, a1), b = _typical_coefficients(layer, q)
    top = max(a0, a1, 1e-300)
    has_derivative = b is not None and spec.ntk_dim > 0 and np.any(b > _ZERO * max(b.max(), 1e-300))
    if isinstance(dual, HomogeneousDual):
        nngp_scale = q**dual.degree * float(dual.f(1.0))
        ntk_scale = spec.ntk_scale * q ** (dual.degree - 1) * float(dual.f_prime(1.0)) if has_derivative else 0.0
    else:
        _, (second, _, _) = duals.host_mehler_coefficients(dual.fn, [q], 0)
        _, (second_prime, _, _) = duals.host_mehler_coefficients(dual.fn_prime, [q], 0)
        nngp_scale = float(second[0])
        ntk_scale = spec.ntk_scale * float(second_prime[0]) if has_derivative else 0.0
    m_nngp, m_ntk, m_t = activation_widths(ctx, spec, nngp_scale, ntk_scale)
    check_widths(ctx, name, m_nngp, m_ntk, bool(has_derivative), scales=(nngp_scale, ntk_scale))
    d = spec.nngp_dim
    k_lin, k_w, k_prod = _random.split(key, 3)
    nngp_constant = bool(a0 > _ZERO * top)
    nngp_linear = bool(a1 > _ZERO * top)
    b_top = max(b.max(), 1e-300) if has_derivative else 1.0
    t_linear = bool(has_derivative and b[1] > _ZERO * b_top)
    lin_dim = d if d <= m_nngp // 2 else m_nngp // 2
    lin_dim = lin_dim if nngp_linear or t_linear else 0
    m1 = max(m_nngp - (lin_dim if nngp_linear else 0) - int(nngp_constant), 1)
    columns = max(m1, m_t) if has_derivative else m1
    weights, scale = gaussian_weights(k_w, d, columns, method, ctx.dtype)
    # A structured projection of one block starts with the spectrum rfft(D1 z); the product's z
    # block takes its Hartley rows from it (no transform of its own). The degree-1 parts of a
    # wide u take a fold sketch (`sketches.fold`: one elementwise pass, no transform). Its
    # variance is an SRHT's to first order, and it keeps the heavy coordinates (the layer
    # before's constant and linear blocks, first, and a Dense bias, last) exact. Borrowing the
    # projection's spectrum for it instead raised the error of deep stacks (NOTES.md).
    shared = weights.rest.shape[-1] if isinstance(weights, StructuredProjection) and weights.first.shape[0] == 1 else 0
    linear = fold_sketch_init(k_lin, d, lin_dim, ctx.dtype) if 0 < lin_dim < d else None
    product, ntk_width = None, 0
    if has_derivative:
        constant = 1.0 if b[0] > _ZERO * b_top else 0.0  # a placeholder: the real one is per row
        t_dim = (lin_dim if t_linear else 0) + columns
        blocks, mass, borrowed = spec.ntk_dim, None, None
        if shared and spec.ntk_ends_with_nngp:  # ntk = [other, z]
            other = spec.ntk_dim - d
            blocks, borrowed = ((other, d), (None, shared)) if other else ((d,), (shared,))
            mass = (max(spec.ntk_scale - spec.nngp_scale, 0.0), spec.nngp_scale) if other else None
        product, ntk_width = offset_product_init(k_prod, blocks, t_dim, constant, m_ntk, ctx.dtype,
                                                 weights=mass, borrowed=borrowed)
    params = ActivationRFParams(linear, weights, scale, product, m1, nngp_constant, nngp_linear, t_linear)
    out = spec._replace(
        nngp_dim=int(nngp_constant) + (lin_dim if nngp_linear else 0) + m1, ntk_dim=ntk_width, rho_min=-1.0,
        nngp_scale=nngp_scale, ntk_scale=ntk_scale, ntk_ends_with_nngp=False, gaussian=False,
        power=spec.power * dual.degree if isinstance(dual, HomogeneousDual) and spec.power is not None else None,
    )
    return params, out


def activation_apply(layer: Activation, params: ActivationRFParams, spec: Spec, f: Features, ctx) -> Features:
    z = f.nngp
    # The variance of w.z, the one the sampled features see, from a norm that neither under- nor
    # overflows and has a finite derivative at zero rows.
    root = safe_norm(z)
    q = root * root
    inv_root = jnp.where(root > 0, 1.0 / jnp.where(root > 0, root, 1.0), 0.0)
    weights, first = params.weights, None
    if isinstance(weights, StructuredProjection) and weights.first.shape[0] == 1:
        first = structured_first_stage(weights, z)  # (..., 1, N // 2 + 1): rfft(D1 z)
    lin = None
    if params.nngp_linear or params.t_linear:
        u = z * inv_root[..., None]
        lin = u if params.linear is None else fold_sketch(params.linear, u)
    a = structured_project(weights, z, first) if first is not None else project(weights, z)  # the one projection
    m1, columns = params.nngp_columns, params.scale.shape[0]
    a1 = a[..., :m1]
    c0, c1 = _coefficients(layer, q, derivative=False)
    residual = layer.fn(a1) - c0[..., None] - c1[..., None] * a1 * inv_root[..., None]
    # The columns' scale is for all of them; the NNGP features average over their first m1.
    parts = [c0[..., None]] if params.nngp_constant else []
    if params.nngp_linear:
        parts.append(c1[..., None] * lin)
    parts.append(residual * (params.scale[:m1] * (columns / m1) ** 0.5).astype(z.dtype))
    nngp = jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    diag = None if f.diag is None else _second_moment(layer, f.diag)
    if f.ntk is None or params.product is None:
        return Features(nngp, None, diag)
    b0, b1 = _coefficients(layer, q, derivative=True)
    d_residual = _fn_prime(layer)(a) - b0[..., None] - b1[..., None] * a * inv_root[..., None]
    t_parts = [b1[..., None] * lin] if params.t_linear else []
    t_parts.append(d_residual * params.scale.astype(z.dtype))
    t = jnp.concatenate(t_parts, axis=-1) if len(t_parts) > 1 else t_parts[0]
    if params.product.signs[-1] is not None:
        ntk = offset_product(params.product, f.ntk, t, constant=b0)
    else:  # the last block is z, whose spectrum the projection took
        borrowed = Spectrum(first[..., 0, :], z)
        other = f.ntk.shape[-1] - z.shape[-1]
        x, src = ((f.ntk[..., :other], None), (None, borrowed)) if other else ((None,), (borrowed,))
        ntk = offset_product(params.product, x, t, src, constant=b0)
    return Features(nngp, ntk, diag)


def _fn_prime(layer: Activation):
    dual = layer.dual()
    return dual.fn_prime if isinstance(dual, MehlerDual) else derivative(layer.fn)


register(Activation, RandomFeatures, activation_init, activation_apply)


# ------------------------------------------------------------- ExpNormalized and Hermite


@pytree_dataclass(meta=("nngp_columns",))
class DirectionRFParams:
    """Random features psi(w.u) of the unit directions u = z / |z|, times |z|^k.

    weights: Gaussian directions (d, m) (or structured; ExpNormalized: (d, m / 2), each giving a
    cosine and a sine); product: ntk (x) t for the NTK (None without one). The NNGP features use
    the first `nngp_columns` columns of psi, t all of them.
    """

    weights: jax.Array | StructuredProjection
    product: OffsetProductParams | None
    nngp_columns: int


def _direction_waves(layer, a):
    """(psi(a), chi(a)) with E[psi(w.u_x) psi(w.u_y)] = f(rho), E[chi chi] = f'(rho) for unit u,
    averaged over the columns (pairs of columns for ExpNormalized).

    ExpNormalized, f = exp(gamma (rho + shift)): E[cos(sqrt(gamma) w.(u_x - u_y))] =
    exp(-gamma |u_x - u_y|^2 / 2) = exp(gamma (rho - 1)): random Fourier features of the Gaussian
    kernel on the sphere, [cos, sin] of each direction side by side (lower variance than one
    cosine with a random phase, and half the projections), times exp(gamma (1 + shift) / 2).
    Hermite(k), f = rho^k: E[He_k(w.u_x) He_k(w.u_y)] / k! = rho^k (Mehler), and f' = k rho^(k - 1)
    from He_(k - 1)."""
    if isinstance(layer, ExpNormalized):
        g = layer.gamma
        angle = math.sqrt(g) * a
        sin, cos = _trig.sincos(angle)
        waves = jnp.stack([cos, sin], axis=-1).reshape(a.shape[:-1] + (2 * a.shape[-1],))
        waves = waves * (math.sqrt(2.0) * math.exp(g * (1 + layer.shift) / 2))
        return waves, math.sqrt(g) * waves
    k = layer.degree
    return layer.fn(a), (math.sqrt(k) * Hermite(k - 1).fn(a) if k > 0 else None)


def direction_init(layer, key, spec: Spec, ctx):
    """ExpNormalized and Hermite: neural-tangents defines their kernels, not a network function at
    the inputs' variances: nngp' = (q_x q_y)^(k/2) f(rho), ntk' = ntk (q_x q_y)^((k-1)/2) f'(rho)
    (ExpNormalized: k = 1, f = exp(gamma (rho + shift)); Hermite(k): f = rho^k). Features
    |z|^k psi(w.u) and |z|^(k-1) chi(w.u) (`_direction_waves`) with plain Gaussian directions
    (leverage sampling is a ReLU result)."""
    name = type(layer).__name__
    spec = check_activation_input(spec, ctx, name)
    dual, q = layer.dual(), spec.nngp_scale
    k = dual.degree
    slope = 0.0 if dual.f_prime is None else float(dual.f_prime(1.0))
    has_derivative = spec.ntk_dim > 0 and slope > 0
    nngp_scale = q**k * float(dual.f(1.0))
    ntk_scale = spec.ntk_scale * q ** (k - 1) * slope if has_derivative else 0.0
    m_nngp, m_ntk, m_t = activation_widths(ctx, spec, nngp_scale, ntk_scale)
    check_widths(ctx, name, m_nngp, m_ntk, has_derivative, scales=(nngp_scale, ntk_scale))
    columns = max(m_nngp, m_t) if has_derivative else m_nngp
    pairs = isinstance(layer, ExpNormalized)  # a cosine and a sine per direction
    if pairs:
        m_nngp, columns = m_nngp - m_nngp % 2, columns - columns % 2
    k_w, k_prod = _random.split(key, 2)
    plain = dataclasses.replace(ctx.method, leverage=False)
    weights, _ = gaussian_weights(k_w, spec.nngp_dim, columns // 2 if pairs else columns, plain, ctx.dtype)
    product, ntk_width = None, 0
    if has_derivative:
        product, ntk_width = offset_product_init(k_prod, spec.ntk_dim, columns, 0.0, m_ntk, ctx.dtype)
    out = spec._replace(
        nngp_dim=m_nngp, ntk_dim=ntk_width, rho_min=-1.0, nngp_scale=nngp_scale, ntk_scale=ntk_scale,
        ntk_ends_with_nngp=False, gaussian=False, power=None if spec.power is None else spec.power * k,
    )
    return DirectionRFParams(weights, product, m_nngp), out


def direction_apply(layer, params: DirectionRFParams, spec: Spec, f: Features, ctx) -> Features:
    u, _, norm = normalize(f.nngp, None)
    k, m = layer.dual().degree, params.nngp_columns
    psi, chi = _direction_waves(layer, project(params.weights, u))
    amp = jnp.ones_like(norm) if k == 0 else norm**k
    nngp = (amp / math.sqrt(m))[..., None] * psi[..., :m]
    diag = None if f.diag is None else _second_moment(layer, f.diag)
    if f.ntk is None or params.product is None:
        return Features(nngp, None, diag)
    amp_t = jnp.ones_like(norm) if k == 1 else norm ** (k - 1)
    t = (amp_t / math.sqrt(chi.shape[-1]))[..., None] * chi
    return Features(nngp, offset_product(params.product, f.ntk, t), diag)


register(ExpNormalized, RandomFeatures, direction_init, direction_apply)
register(Hermite, RandomFeatures, direction_init, direction_apply)

__all__ = ["ActivationRFParams", "DirectionRFParams", "StructuredProjection", "gaussian_weights", "project", "sphere_directions"]

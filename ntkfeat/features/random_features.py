"""NTK random features at an activation: sigma(W^T z) for the NNGP, sigma'(W^T z) for the NTK.

With w ~ N(0, I), (w.z_x, w.z_y) is jointly Gaussian with the covariance the NNGP features z
hold, so sigma(w.z) / sqrt(m) are unbiased features of the activation's dual kernel, and
sigma'(w.z) / sqrt(m) of its derivative kernel; the NTK features are ntk (x) those, sketched
by `paired_product`: its residual block pairs each random column with one Hartley row of the
incoming NTK features (no transform of the columns: they are random already).

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

from ntkfeat import _random
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.exact import duals
from ntkfeat.features.activation import activation_widths, check_activation_input, check_widths, normalize
from ntkfeat.features.state import Features, Spec
from ntkfeat.features.table import register
from ntkfeat.layers.activations import Activation, ExpNormalized, Hermite, HomogeneousDual, MehlerDual, derivative
from ntkfeat.layers.methods import RandomFeatures
from ntkfeat.sketches.product import OffsetProductParams, offset_product, offset_product_init
from ntkfeat.sketches.srht import (
    HartleyRows, SRHTParams, fft_length, hartley_gather, hartley_rows, real_dft, real_dft_weights, split_proportional,
    srht, srht_init, stratified_indices,
)

# Coefficients below this (relative to the activation's scale) are taken as exactly zero: the
# block they would scale is left out (e.g. the linear part of Abs, the mean of sign).
_ZERO = 1e-9


@pytree_dataclass(meta=("nngp_columns", "nngp_constant", "nngp_linear", "t_linear"))
class ActivationRFParams:
    """Parameters of an activation's random features.

    linear: SRHT of u for the degree-1 parts when u is wide (None: u itself).
    weights: (d, m) random directions times radii, or their StructuredProjection; scale: (m,)
    sqrt(1/m) times the leverage weight of each column. The NNGP features use the first `nngp_columns` columns, the
    derivative features all of them. product: ntk (x) [b_0, t] (None without an NTK).
    The flags say which exact blocks exist (a zero coefficient needs none).
    """

    linear: SRHTParams | None
    weights: jax.Array | StructuredProjection
    scale: jax.Array
    product: OffsetProductParams | None
    nngp_columns: int
    nngp_constant: bool
    nngp_linear: bool
    t_linear: bool


class StructuredProjection(NamedTuple):
    """w_i . z for structured w (SORF, Yu et al. 2016): per block of N outputs, three sign-flipped
    orthogonal rotations Q = R3 D3 R2 D2 R1 D1 of the zero-padded z (N = fft_length(d)), then per
    output a radius: w_i = r_i sqrt(N / d) q_i. Q is orthogonal, so the directions of a block are
    orthogonal and E w w^T = E r^2 / d I, as for Gaussian w with r ~ chi(d); the three rotations
    make each direction close to uniform on the sphere. O(N log N) per block of N outputs instead
    of O(d N): the dense product was most of the cost of wide layers.

    R1 is the real DFT of D1 z, computed by one rfft. For even N, the spectrum's N real numbers
    are packed into N / 2 complex ones
    (the Nyquist term in the imaginary slot of the zero frequency), and R2, R3 are complex FFTs
    of length N / 2, with D2, D3 flipping real and imaginary parts apart: each an orthogonal map
    of R^N, one FFT and one pass, 0.7x the real-DFT stages of odd N. The normalizing factors are
    folded into the signs and the radii."""

    first: jax.Array  # (blocks, d) signs D1
    rest: jax.Array  # (blocks, 2, N) D2 and D3, times the normalizing factors
    radius: jax.Array  # (columns,) r_i sqrt(N / d), times the last normalizing factor


def structured_project(p: StructuredProjection, z: jax.Array) -> jax.Array:
    """(..., d) -> (..., columns)."""
    n = p.rest.shape[-1]
    r = jnp.fft.rfft(z[..., None, :] * p.first.astype(z.dtype), n=n, axis=-1)  # rfft(D1 z) per block
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


# Rotations per structured block. Two (with this library's real DFT) gave about the same mean
# error on 100 diabetes rows at depths 2-4 but a heavier tail (one of 8 keys at 0.105 against at
# most 0.081 at depth 4), so three stay.
SORF_STAGES = 3
# Above this input width the weights are structured (when the method says 'auto'): the dense
# product costs d operations per output, the structured one ~3 log2(d) FFT passes.
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


def _derivative_masses(layer: Activation, q: float, constant: bool, linear: bool) -> tuple[float, float, float]:
    """(b_0^2, b_1^2, E sigma'^2 - b_0^2 - b_1^2) at variance q: the shares of the derivative
    kernel's diagonal in its constant, linear and residual parts (0 for a part left out)."""
    dual = layer.dual()
    if isinstance(dual, HomogeneousDual):
        b = np.asarray(dual.derivative_coefficients(1), np.float64)
        total = float(dual.f_prime(1.0))
    else:
        a, (second, _, _) = duals.host_mehler_coefficients(dual.fn_prime, [q], 1)
        b, total = a[0], float(second[0])
    c, l = (b[0] ** 2 if constant else 0.0), (b[1] ** 2 if linear else 0.0)
    rest = total - b[0] ** 2 - b[1] ** 2
    return float(c), float(l), float(rest if rest > _ZERO * max(total, 1e-300) else 0.0)



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
    m_nngp, m_ntk, _ = activation_widths(ctx, spec, nngp_scale, ntk_scale)
    check_widths(ctx, name, m_nngp, m_ntk, bool(has_derivative))
    d = spec.nngp_dim
    k_lin, k_w, k_prod = _random.split(key, 3)
    nngp_constant = bool(a0 > _ZERO * top)
    nngp_linear = bool(a1 > _ZERO * top)
    b_top = max(b.max(), 1e-300) if has_derivative else 1.0
    t_linear = bool(has_derivative and b[1] > _ZERO * b_top)
    lin_dim = d if d <= m_nngp // 2 else m_nngp // 2
    lin_dim = lin_dim if nngp_linear or t_linear else 0
    m1 = max(m_nngp - (lin_dim if nngp_linear else 0) - int(nngp_constant), 1)
    linear = srht_init(k_lin, d, lin_dim, ctx.dtype) if 0 < lin_dim < d else None
    product, ntk_width, residual = None, 0, 0
    if has_derivative:
        masses = _derivative_masses(layer, q, bool(b[0] > _ZERO * b_top), t_linear)
        widths, block_masses = (spec.ntk_dim,), None
        if spec.ntk_ends_with_nngp and spec.ntk_dim > d:  # ntk = [other, z]: two transforms, no concatenation
            widths = (spec.ntk_dim - d, d)
            block_masses = (max(spec.ntk_scale - spec.nngp_scale, 0.0), spec.nngp_scale)
        product, ntk_width = paired_init(k_prod, widths, d, masses, m_ntk, linear is None, ctx.dtype, block_masses)
        residual = product.residual
    # One projection serves both: the NNGP features use its first m1 columns, the product's
    # residual block its first `residual`.
    weights, scale = gaussian_weights(k_w, d, max(m1, residual), method, ctx.dtype)
    params = ActivationRFParams(linear, weights, scale, product, m1, nngp_constant, nngp_linear, t_linear)
    out = spec._replace(
        nngp_dim=int(nngp_constant) + (lin_dim if nngp_linear else 0) + m1, ntk_dim=ntk_width, rho_min=-1.0,
        nngp_scale=nngp_scale, ntk_scale=ntk_scale, ntk_ends_with_nngp=False, gaussian=False,
        power=spec.power * dual.degree if isinstance(dual, HomogeneousDual) and spec.power is not None else None,
    )
    return params, out


def _columns(values, scale, count: int, columns: int, dtype):
    """The first `count` of `columns` random features, scaled so that their inner products
    still estimate the whole kernel (each column's scale is for all `columns`)."""
    return values * (scale[:count] * (columns / count) ** 0.5).astype(dtype)


def activation_apply(layer: Activation, params: ActivationRFParams, spec: Spec, f: Features, ctx) -> Features:
    z = f.nngp
    q = jnp.sum(z * z, axis=-1)  # the variance of w.z, the one the sampled features see
    inv_root = jnp.where(q > 0, jax.lax.rsqrt(jnp.where(q > 0, q, 1.0)), 0.0)
    u = z * inv_root[..., None]
    lin = su = None
    if params.nngp_linear or params.t_linear:
        if params.linear is None:
            lin = u
        else:  # an SRHT of u, its spectrum kept for the NTK product's b_1 block
            su = jnp.fft.rfft(u * params.linear.signs.astype(u.dtype), n=params.linear.fft_len, axis=-1)
            lin = hartley_gather(su, params.linear.rows) * (1.0 / params.linear.out_dim) ** 0.5
    a = project(params.weights, z)  # the one projection
    m1, columns = params.nngp_columns, params.scale.shape[0]
    a1 = a[..., :m1]
    c0, c1 = _coefficients(layer, q, derivative=False)
    parts = [c0[..., None]] if params.nngp_constant else []
    if params.nngp_linear:
        parts.append(c1[..., None] * lin)
    residual = layer.fn(a1) - c0[..., None] - c1[..., None] * a1 * inv_root[..., None]
    parts.append(_columns(residual, params.scale, m1, columns, z.dtype))
    nngp = jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    diag = None if f.diag is None else _second_moment(layer, f.diag)
    if f.ntk is None or params.product is None:
        return Features(nngp, None, diag)
    b0, b1 = _coefficients(layer, q, derivative=True)
    p = params.product
    r = None
    if p.residual:
        ak = a[..., : p.residual]
        r = _fn_prime(layer)(ak) - b0[..., None] - b1[..., None] * ak * inv_root[..., None]
        r = _columns(r, params.scale, p.residual, columns, z.dtype)
    x = f.ntk if len(p.widths) == 1 else (f.ntk[..., : p.widths[0]], f.ntk[..., p.widths[0] :])
    return Features(nngp, paired_product(p, x, u, su, r, b0, b1), diag)


# ------------------------------------------------------------------------ paired product


@pytree_dataclass(meta=("exact_constant", "exact_linear", "widths", "x_lens", "u_len", "residual"))
class PairedProductParams:
    """NTK features after an activation: x (x) t with t = [b_0, b_1 u, r], x the incoming NTK
    features, as three blocks (see `paired_product`). x may come as a direct sum of blocks
    [x_1, ..., x_B] (widths); each has its own transform H(D_b x_b), independent of every other
    draw, and each sketch's rows are split over the blocks in proportion to their masses.

    x_signs: per block, D_b. constant: per block, the rows for b_0 x (None: exact, or no b_0).
    x_rows, u_rows: per block, the TensorSRHT row pairs of b_1 x (x) u (None: exact, or no b_1);
    u_signs: u's own signs when the activation has no SRHT of u (None: it borrows that SRHT's
    transform, `ActivationRFParams.linear`). pair: per block, the rows paired with residual
    columns (block b takes the next len(pair[b]) columns); residual: how many columns in all.
    """

    x_signs: tuple
    constant: tuple
    x_rows: tuple
    u_rows: tuple
    u_signs: jax.Array | None
    pair: tuple
    exact_constant: bool
    exact_linear: bool
    widths: tuple[int, ...]
    x_lens: tuple[int, ...]
    u_len: int
    residual: int


def paired_init(key, widths, u_dim: int, masses, out_dim: int, own_u: bool, dtype, block_masses=None):
    """Widths of the three blocks in proportion to their masses (b_0^2, b_1^2 and the residual's
    second moment at the typical variance), a block exact where x (or x (x) u) fits its share.
    Returns (params, output width)."""
    widths = tuple(int(w) for w in widths)
    x_dim = sum(widths)
    block_masses = widths if block_masses is None else tuple(block_masses)
    present = [i for i, m in enumerate(masses) if m > 0]
    if not present:
        raise ValueError("paired_init: the derivative kernel has no mass")
    shares = dict(zip(present, split_proportional(out_dim, [masses[i] for i in present], minimum=1)))
    k = [0, 0, 0]
    exact_c = exact_u = False
    if 0 in shares:
        exact_c = x_dim <= shares[0]
        k[0] = x_dim if exact_c else shares[0]
        rest = [i for i in present if i != 0]
        if rest:
            shares.update(zip(rest, split_proportional(out_dim - k[0], [masses[i] for i in rest], minimum=1)))
    if 1 in shares:
        exact_u = x_dim * u_dim <= shares[1]
        k[1] = x_dim * u_dim if exact_u else shares[1]
    if 2 in shares:
        k[2] = out_dim - k[0] - k[1]
    if min(k[i] for i in present) < len(widths):
        raise ValueError(f"out_dim={out_dim} leaves a block of the NTK product without features")
    x_lens, u_len = tuple(fft_length(w) for w in widths), fft_length(u_dim)
    keys = iter(_random.split(key, 4 * len(widths) + 2))

    def rows(count, sketched=True):
        if not count or not sketched:
            return (None,) * len(widths)
        ks = split_proportional(count, block_masses)
        return tuple(hartley_rows(stratified_indices(next(keys), n, c), n, dtype) for n, c in zip(x_lens, ks))

    x_rows = rows(k[1], not exact_u)
    u_rows = tuple(None if r is None else hartley_rows(stratified_indices(next(keys), u_len, r.index.shape[0]), u_len, dtype)
                   for r in x_rows)
    params = PairedProductParams(
        tuple(jnp.asarray(_random.rademacher(next(keys), (w,)), dtype) for w in widths),
        rows(k[0], not exact_c), x_rows, u_rows,
        jnp.asarray(_random.rademacher(next(keys), (u_dim,)), dtype) if own_u and k[1] and not exact_u else None,
        rows(k[2]), exact_c, exact_u, widths, x_lens, u_len, k[2],
    )
    return params, sum(k)


def paired_product(p: PairedProductParams, x, u, u_spectrum, residual, b0, b1):
    """[b_0 x, b_1 x (x) u, x (x) r] sketched; the Gram estimates <x, x'> <t, t'>:

    - b_0 x: exact, or an SRHT of x;
    - b_1 x (x) u: exact (narrow x and u), or a TensorSRHT of x and u (u's transform borrowed
      from the activation's SRHT of u when there is one: `u_spectrum`);
    - x (x) r, paired: residual column j (r_j from one random direction w_j, scaled so that
      sum_j r_j r_j' estimates the residual kernel) times one row of H(D_b x_b):
      E H_P(D x) H_P(D x') = <x, x'> with D, P independent of w_j, so every term is unbiased
      (block b's k_b of the k columns are scaled by sqrt(k / k_b)). The columns are random
      already: no transform of r, no product of two sketches.

    x: an array, or a tuple with one array per block.
    """
    blocks = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    spectra = [None] * len(blocks)

    def gathered(b, rows):
        if spectra[b] is None:
            xb = blocks[b]
            spectra[b] = jnp.fft.rfft(xb * p.x_signs[b].astype(xb.dtype), n=p.x_lens[b], axis=-1)
        return hartley_gather(spectra[b], rows)

    whole = lambda: jnp.concatenate(blocks, axis=-1) if len(blocks) > 1 else blocks[0]  # noqa: E731
    outs = []
    if p.exact_constant:
        outs.append(b0[..., None] * whole())
    else:
        outs += [b0[..., None] * gathered(b, r) * (1.0 / r.index.shape[0]) ** 0.5
                 for b, r in enumerate(p.constant) if r is not None]
    if p.exact_linear:
        xs = whole()
        outs.append(b1[..., None] * (xs[..., :, None] * u[..., None, :]).reshape(xs.shape[:-1] + (-1,)))
    elif p.x_rows[0] is not None:
        if u_spectrum is None:
            u_spectrum = jnp.fft.rfft(u * p.u_signs.astype(u.dtype), n=p.u_len, axis=-1)
        for b, (xr, ur) in enumerate(zip(p.x_rows, p.u_rows)):
            outs.append((b1 * (1.0 / xr.index.shape[0]) ** 0.5)[..., None] * gathered(b, xr)
                        * hartley_gather(u_spectrum, ur))
    start = 0
    for b, r in enumerate(p.pair):
        if r is not None:
            kb = r.index.shape[0]
            outs.append(gathered(b, r) * residual[..., start : start + kb] * (p.residual / kb) ** 0.5)
            start += kb
    return jnp.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]

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
        waves = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1).reshape(a.shape[:-1] + (2 * a.shape[-1],))
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
    check_widths(ctx, name, m_nngp, m_ntk, has_derivative)
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

"""NTK Sketch at an activation: sketched polynomial approximations of its dual kernel.

Homogeneous activations (ReLU and relatives, monomials, Hermite, ExpNormalized): the dual is
(q_x q_y)^(k/2) f(rho) and the derivative kernel (q_x q_y)^((k-1)/2) f'(rho). With u = z / |z|
and P, P' features of non-negative polynomial fits of f and f' on [rho_min, 1]
(`dot_product_features`, two heads sharing their FFTs),

    nngp' = q^(k/2) P(u),    t = P'(u) without its constant c,    ntk' = q^((k-1)/2) ntk (x) [c, t]

so <nngp'(x), nngp'(y)> ~ the dual and <ntk', ntk''> ~ ntk * f'. For ReLU (k = 1, f = kappa1 / 2,
f' = kappa0 / 2) these are neural-tangents' rules.

Other activations: Mehler's formula E[sigma(u) sigma(v)] = sum_l a_l(q_x) a_l(q_y) rho^l with
a_l(q) taken at each input's own variance (Gauss-Hermite quadrature, `exact.duals`), so

    nngp' = [a_l(q) S_l(u)]_l,    t = [b_l(q) S_l(u)]_{l >= 1},    ntk' = ntk (x) [b_0(q), t]

with S_l a degree-l sketch (exact for the low degrees where that is cheap) and b_l the
coefficients of sigma'. The series is truncated at `Sketch.degree`; what it leaves out of the
diagonal, the second moment r(q) of each parity beyond the degree, is put on two degrees of that
parity (one just above the degree, one near twice it; see `coefficients_with_tail`): the
diagonal stays exact, and the rest of the tail is approximated, where truncation drops it.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random
from ntkfeat._norms import norm as safe_norm, rescale, safe_sqrt
from ntkfeat.exact import duals
from ntkfeat.features.activation import activation_widths, check_activation_input, check_widths, normalize
from ntkfeat.features.state import Features, Spec
from ntkfeat.features.table import register
from ntkfeat.layers.activations import Activation, HomogeneousDual
from ntkfeat.layers.methods import Sketch, layer_degree
from ntkfeat.polynomials.fit import fit_nonneg_polynomial
from ntkfeat.sketches.dot_product import DotProductFeatureParams, dot_product_features, dot_product_features_init
from ntkfeat.sketches.product import OffsetProductParams, offset_product, offset_product_init

# Sketched correlations scatter around the exact ones; fit a little below the exact bound.
_RHO_MARGIN = 0.05
# Variances at which a general activation's Mehler coefficients are sampled when the dimension
# is split between degrees: factors of the typical variance (inputs vary around it).
_TYPICAL_SPREAD = (0.25, 0.5, 1.0, 2.0, 4.0)
# A degree whose share of the kernel is below this (relative) carries nothing and gets no features.
_NEGLIGIBLE = 1e-12


class ActivationSketchParams(NamedTuple):
    """kappa: features of the dual's polynomial and (second head) of its derivative's, from
    one sketch tree. product: ntk (x) [c, t] (None when the NTK is zero after the layer)."""

    kappa: DotProductFeatureParams
    product: OffsetProductParams | None


# ----------------------------------------------------------------------------- polynomials


@functools.lru_cache(maxsize=256)
def homogeneous_polynomials(layer: Activation, degree: int, fit: str, rho_min: float):
    """(c, d): coefficients of the polynomials standing for f and f' (d None: no derivative)."""
    dual = layer.dual()
    exact = dual.polynomial is not None and dual.polynomial <= degree
    interval = (max(-1.0, rho_min), 1.0)
    if exact:
        c = dual.taylor(dual.polynomial)
    elif fit == "taylor":
        c = dual.taylor(degree)
    else:
        c = fit_nonneg_polynomial(dual.f, degree, interval)
    if dual.f_prime is None:
        return c, None
    if exact or fit == "taylor":
        # f' of the Taylor polynomial of degree + 1: the exact derivative series, truncated.
        series = dual.taylor(dual.polynomial if exact else degree + 1)
        d = series[1:] * np.arange(1, len(series))
        d = d if len(d) else np.zeros(1)
    else:
        d = fit_nonneg_polynomial(dual.f_prime, degree, interval)
    return c, d


def _next_rho_min(f, rho_min: float) -> float:
    """A lower bound on the output correlation f(rho) / f(1) over rho in [rho_min, 1]."""
    grid = np.linspace(max(-1.0, rho_min), 1.0, 401)
    top = float(f(1.0))
    if top <= 0:
        return -1.0
    return max(-1.0, float(np.min(f(grid))) / top - _RHO_MARGIN)


def polynomials_at_one(params: DotProductFeatureParams) -> jax.Array:
    """(heads,) each head's polynomial at 1: sum_j c_j, the squared norm its features estimate."""
    return jnp.sum(params.sqrt_coeffs**2, axis=-1)


def kappa_features(params: DotProductFeatureParams, u: jax.Array, renormalize: bool) -> tuple[jax.Array, ...]:
    """Every head's features of the unit vectors u. Renormalized, each sketched degree block has
    the norm it estimates, sqrt(c_j), so each head has the norm of its polynomial at 1 (the kappa1
    and kappa0 sketches then err with the correlation they estimate, not on their own). u has
    norm 1 (or 0, and then zero features whatever the target)."""
    return dot_product_features(params, u, heads=True, renormalize=renormalize, x_norm=1.0)


# ------------------------------------------------------------------------------ shared init


def _product_init(key, spec: Spec, kappa: DotProductFeatureParams, constant: float, t_dim: int, m_ntk: int, dtype):
    """The ntk (x) [c, t] sketch. When the NTK features end with the NNGP features, that block
    borrows the kappa features' transform of the same vector (no FFT of its own)."""
    blocks, weights, borrowed = spec.ntk_dim, None, None
    transform = kappa.input_transform()
    if spec.ntk_ends_with_nngp and transform is not None:
        other = spec.ntk_dim - spec.nngp_dim
        blocks, weights, borrowed = (spec.nngp_dim,), None, (transform,)
        if other:
            blocks = (other, spec.nngp_dim)
            weights = (max(spec.ntk_scale - spec.nngp_scale, 0.0), spec.nngp_scale)
            borrowed = (None, transform)
    return offset_product_init(key, blocks, t_dim, constant, m_ntk, dtype, weights=weights, borrowed=borrowed)


def _kappa_and_product(key, spec: Spec, ctx, c, d, nngp_scale: float, ntk_scale: float):
    """Features of the polynomials c (NNGP) and d (derivative; its constant d[0] kept apart)."""
    try:
        return _draw_kappa_and_product(key, spec, ctx, c, d, nngp_scale, ntk_scale)
    except ValueError as e:
        if "too small" not in str(e):
            raise
        method = ctx.method
        # An inner layer's share is the width; the last activation's is a part of dim.
        setting = "width" if method.width is not None and not ctx.final else "dim"
        value = method.width if setting == "width" else method.dim
        raise ValueError(f"{ctx.where}: Sketch({setting}={value}, degree={layer_degree(method)}) is too small for this "
                         f"layer (its share: {e}); raise {setting} or lower degree") from None


def _draw_kappa_and_product(key, spec: Spec, ctx, c, d, nngp_scale: float, ntk_scale: float):
    m_nngp, m_ntk, m_t = activation_widths(ctx, spec, nngp_scale, ntk_scale)
    check_widths(ctx, "it", m_nngp, m_ntk, bool(spec.ntk_dim) and d is not None, least=2,
                 scales=(nngp_scale, ntk_scale))
    key_f, key_t = _random.split(key, 2)
    if not spec.ntk_dim or d is None:
        kappa = dot_product_features_init(key_f, spec.nngp_dim, c, m_nngp, ctx.dtype)
        return ActivationSketchParams(kappa, None), kappa.head_out_dim(0), 0
    rest = np.asarray(d, np.float64).copy()
    constant = math.sqrt(rest[0])
    rest[0] = 0.0
    if np.any(rest > 0):
        # c and d of the same input share one set of sketches (two heads): its FFTs are paid once.
        kappa = dot_product_features_init(key_f, spec.nngp_dim, [c, rest], [m_nngp, m_t], ctx.dtype)
        t_dim = kappa.head_out_dim(1)
    else:
        kappa = dot_product_features_init(key_f, spec.nngp_dim, c, m_nngp, ctx.dtype)
        t_dim = 0
    product, ntk_width = _product_init(key_t, spec, kappa, constant, t_dim, m_ntk, ctx.dtype)
    return ActivationSketchParams(kappa, product), kappa.head_out_dim(0), ntk_width


def ntk_product(params: ActivationSketchParams, ntk, u, norm, t, constant=None) -> jax.Array:
    """Features of ntk (x) [c, t] (`sketches.product`). When ntk ends with the NNGP features
    norm * u, that block borrows the kappa transform of u."""
    product = params.product
    if product.signs[-1] is not None:
        return offset_product(product, ntk, t, constant=constant)
    own = product.widths[:-1]  # () or (width of the block before the NNGP features,)
    x = tuple(ntk[..., :w] for w in own) + (None,)
    borrowed = (None,) * len(own) + ((params.kappa.input_transform(), u, norm),)
    return offset_product(product, x, t, borrowed, constant=constant)


# ------------------------------------------------------------------------------- homogeneous


def homogeneous_init(layer: Activation, key, spec: Spec, ctx):
    spec = check_activation_input(spec, ctx, type(layer).__name__)
    dual: HomogeneousDual = layer.dual()
    method = ctx.method
    c, d = homogeneous_polynomials(layer, layer_degree(method), method.fit, round(spec.rho_min, 6))
    k, q = dual.degree, spec.nngp_scale
    nngp_scale = q**k * float(dual.f(1.0))
    ntk_scale = spec.ntk_scale * q ** (k - 1) * float(dual.f_prime(1.0)) if d is not None else 0.0
    params, nngp_dim, ntk_dim = _kappa_and_product(key, spec, ctx, c, d, nngp_scale, ntk_scale)
    out = spec._replace(
        nngp_dim=nngp_dim, ntk_dim=ntk_dim, rho_min=_next_rho_min(dual.f, spec.rho_min),
        nngp_scale=nngp_scale, ntk_scale=ntk_scale, ntk_ends_with_nngp=False, gaussian=False,
        power=None if spec.power is None else spec.power * k,
    )
    return params, out


def homogeneous_apply(layer: Activation, params: ActivationSketchParams, spec: Spec, f: Features, ctx) -> Features:
    dual: HomogeneousDual = layer.dual()
    k = dual.degree
    if REPORT in ctx.kwargs:
        ctx.kwargs[REPORT].append(homogeneous_report(layer, ctx.method, spec))
    u, scale, norm = normalize(f.nngp, f.diag)
    heads = kappa_features(params.kappa, u, spec.renormalize)
    nngp = (scale if k == 1 else scale**k)[..., None] * heads[0]
    diag = None if f.diag is None else float(dual.f(1.0)) * f.diag**k
    if f.ntk is None or params.product is None:
        return Features(nngp, None, diag)
    t = heads[1] if len(heads) > 1 else None
    ntk = ntk_product(params, f.ntk, u, norm, t)
    if spec.renormalize:  # |ntk (x) [c, t]| = |ntk| sqrt(c^2 + |t|^2), |t|^2 = d(1) - c^2 here
        c = params.product.constant
        t_sq = polynomials_at_one(params.kappa)[1] if t is not None else 0.0
        ntk = rescale(ntk, safe_norm(f.ntk) * jnp.sqrt(c * c + t_sq))
    if k != 1:
        ntk = ntk * (scale ** (k - 1))[..., None]
    return Features(nngp, ntk, diag)


# ---------------------------------------------------------------------------------- Mehler


def mehler_degree(layer: Activation, degree: int) -> int:
    series = layer.dual().series_degree
    return degree if series is None else min(degree, series)


def tail_degrees(degree: int) -> tuple[tuple[int, int], ...]:
    """Per parity (even, odd), the degrees that carry the series' tail beyond `degree`: the two
    just above it and, from degree 4 on, two more near 2 * degree."""
    near = tuple(sorted((degree + 1, degree + 2), key=lambda l: l % 2))
    if degree < 4:
        return (near[:1], near[1:])
    far = tuple(sorted((2 * degree - 1, 2 * degree), key=lambda l: l % 2))
    return ((near[0], far[0]), (near[1], far[1]))


def coefficients_with_tail(a, moments, degree: int, tail: bool, size: int):
    """(..., size) coefficients of a truncated Mehler series with its tail kept on the diagonal.

    a: (..., L + 1) Mehler coefficients, L >= degree (those above `degree` only locate the tail).
    moments: (second moment, even part, odd part) of the activation.
    The coefficients up to `degree` are kept. Per parity, the tail mass r (the parity's second
    moment minus what the kept degrees carry) is split between a near degree D1 and a far one D2
    so that the split keeps the tail's mean degree m (m r = sum_{l > degree} l a_l^2, the
    remainder beyond L counted at L): w2 = clip((m - D1) r / (D2 - D1), 0, r), w1 = r - w2, at
    coefficients sqrt(w1), sqrt(w2). A row whose variance spreads its kernel to high degrees
    (a large q for sin or exp) thus decorrelates fast, as it should; one lump at D1 keeps the
    diagonal but correlates such rows far too much (2-4x the error at depth 2, NOTES.md).
    """
    xp = jnp if isinstance(a, jax.Array) else np
    top = a.shape[-1] - 1
    l = np.arange(top + 1)
    out = {j: a[..., j] for j in range(degree + 1)}
    if tail:
        for parity, degrees in enumerate(tail_degrees(degree)):
            mask = l % 2 == parity
            kept = xp.sum(a[..., mask & (l <= degree)] ** 2, axis=-1)
            r = xp.maximum(moments[1 + parity] - kept, 0.0)
            if len(degrees) == 1:
                out[degrees[0]] = safe_sqrt(r)
                continue
            resolved = a[..., mask & (l > degree)] ** 2
            mean = xp.sum(resolved * l[mask & (l > degree)], axis=-1) + xp.maximum(r - xp.sum(resolved, axis=-1), 0) * top
            d1, d2 = degrees
            far = xp.clip((mean - d1 * r) / (d2 - d1), 0.0, r)
            # A parity with no tail (r = 0: Erf's even part) has a zero, not NaN, derivative.
            out[d1], out[d2] = safe_sqrt(r - far), safe_sqrt(far)
    zero = xp.zeros_like(a[..., 0])
    return xp.stack([out.get(j, zero) for j in range(size)], axis=-1)


def _resolved_degree(degree: int) -> int:
    """Mehler coefficients computed to locate the tail: up to 4 * degree (quadrature is cheap)."""
    return max(4 * degree, degree + 2)


def _series_weights(fn, q: float, degree: int, tail: bool) -> np.ndarray:
    """Per degree, its largest share of the second moment over variances around q (how the
    dimension is split; degrees that carry nothing at any of them get no features)."""
    qs = q * np.asarray(_TYPICAL_SPREAD)
    size = max(max(d) for d in tail_degrees(degree)) + 1 if tail else degree + 1
    a, moments = duals.host_mehler_coefficients(fn, qs, _resolved_degree(degree))
    coeffs = coefficients_with_tail(a, moments, degree, tail, size)
    # Shares of each variance's own second moment: every input matters relative to its scale.
    w = np.max(coeffs**2 / np.maximum(moments[0], 1e-300)[:, None], axis=0)
    w[w < _NEGLIGIBLE * max(w.max(), 1e-300)] = 0.0
    return w


def mehler_init(layer: Activation, key, spec: Spec, ctx):
    spec = check_activation_input(spec, ctx, type(layer).__name__)
    dual = layer.dual()
    degree = mehler_degree(layer, layer_degree(ctx.method))
    tail = dual.series_degree is None or dual.series_degree > degree
    q = spec.nngp_scale
    # Zero inputs (a W_std = 0 before the layer) have a zero variance: plan at the unit one.
    c = _series_weights(dual.fn, q if q > 0 else 1.0, degree, tail)
    if not np.any(c > 0):
        raise ValueError(f"{ctx.where}: {type(layer).__name__} is zero on Gaussian inputs")
    d = _series_weights(dual.fn_prime, q if q > 0 else 1.0, degree, tail)
    d = d if np.any(d > 0) else None
    _, (second, _, _) = duals.host_mehler_coefficients(dual.fn, [q], 0)
    _, (second_prime, _, _) = duals.host_mehler_coefficients(dual.fn_prime, [q], 0)
    nngp_scale = float(second[0])
    ntk_scale = spec.ntk_scale * float(second_prime[0]) if d is not None else 0.0
    params, nngp_dim, ntk_dim = _kappa_and_product(key, spec, ctx, c, d, nngp_scale, ntk_scale)
    out = spec._replace(nngp_dim=nngp_dim, ntk_dim=ntk_dim, rho_min=-1.0, nngp_scale=nngp_scale,
                        ntk_scale=ntk_scale, ntk_ends_with_nngp=False, gaussian=False, power=None)
    return params, out


def _block_factors(kappa: DotProductFeatureParams, head: int, coeffs):
    """Per output coordinate of a head: coefficient over the head's static sqrt(c_j)."""
    root = kappa.sqrt_coeffs[head]
    inverse = jnp.where(root > 0, 1.0 / jnp.where(root > 0, root, 1.0), 0.0).astype(coeffs.dtype)
    ratio = coeffs[..., : root.shape[0]] * inverse
    return ratio[..., kappa.head_degrees(head)]


def mehler_apply(layer: Activation, params: ActivationSketchParams, spec: Spec, f: Features, ctx) -> Features:
    dual = layer.dual()
    degree = mehler_degree(layer, layer_degree(ctx.method))
    tail = dual.series_degree is None or dual.series_degree > degree
    resolved = _resolved_degree(degree) if tail else degree
    size = params.kappa.sqrt_coeffs.shape[-1]
    u, scale, norm = normalize(f.nngp, f.diag)
    q = scale * scale
    a, moments = duals.mehler_coefficients(dual.fn, q, resolved)
    if REPORT in ctx.kwargs:
        ctx.kwargs[REPORT].append(mehler_report(layer, degree, q))
    heads = kappa_features(params.kappa, u, spec.renormalize)
    nngp = heads[0] * _block_factors(params.kappa, 0, coefficients_with_tail(a, moments, degree, tail, size))
    diag = None if f.diag is None else moments[0]
    if f.ntk is None or params.product is None:
        return Features(nngp, None, diag)
    b, moments_prime = duals.mehler_coefficients(dual.fn_prime, q, resolved)
    coeffs = coefficients_with_tail(b, moments_prime, degree, tail, size)
    t = heads[1] * _block_factors(params.kappa, 1, coeffs) if len(heads) > 1 else None
    constant = b[..., 0]
    ntk = ntk_product(params, f.ntk, u, norm, t, constant=constant)
    if spec.renormalize:
        mass = constant**2 + (jnp.sum(coeffs[..., 1:] ** 2, axis=-1) if t is not None else 0.0)
        ntk = rescale(ntk, safe_norm(f.ntk) * safe_sqrt(mass))
    return Features(nngp, ntk, diag)


# ----------------------------------------------------------------------------------- report

# The key under which `ntkfeat.network.describe` collects each activation's report at apply.
REPORT = "_report"


def homogeneous_report(layer: Activation, method, spec: Spec) -> dict:
    """How well the polynomials stand for the dual f and its derivative f' on [rho_min, 1]: the
    largest error relative to f(1) (f'(1)), and what each polynomial gives at 1."""
    dual = layer.dual()
    c, d = homogeneous_polynomials(layer, layer_degree(method), method.fit, round(spec.rho_min, 6))
    lo = max(-1.0, spec.rho_min)
    grid = np.linspace(lo, 1.0, 401)
    out = {"layer": type(layer).__name__, "kind": "polynomial fit of the dual", "degree": len(c) - 1,
           "interval": (lo, 1.0)}
    for name, fn, coeffs in (("nngp", dual.f, c), ("ntk", dual.f_prime, d)):
        if fn is None or coeffs is None:
            continue
        target, top = fn(grid), float(fn(1.0))
        out[f"{name}_max_error"] = float(np.max(np.abs(np.polyval(coeffs[::-1], grid) - target)) / top)
        out[f"{name}_kept_at_1"] = float(np.sum(coeffs) / top)
    return out


def mehler_report(layer: Activation, degree: int, q) -> dict:
    """The share of each input's second moment that the series up to `degree` carries (the rest
    is its tail, kept on the diagonal and approximated off it), for sigma and sigma', over the
    inputs (and positions) seen: min and mean."""
    dual = layer.dual()
    out = {"layer": type(layer).__name__, "kind": "Mehler series", "degree": degree}
    for name, fn in (("nngp", dual.fn), ("ntk", dual.fn_prime)):
        a, (second, _, _) = duals.mehler_coefficients(fn, q, degree)
        kept = np.asarray(jnp.sum(a**2, axis=-1) / jnp.where(second > 0, second, 1.0))
        kept = np.where(np.asarray(second) > 0, kept, 1.0)
        out[f"{name}_kept_min"], out[f"{name}_kept_mean"] = float(kept.min()), float(kept.mean())
    return out


# ------------------------------------------------------------------------------------- rule


def activation_init(layer: Activation, key, spec, ctx):
    if isinstance(layer.dual(), HomogeneousDual):
        return homogeneous_init(layer, key, spec, ctx)
    return mehler_init(layer, key, spec, ctx)


def activation_apply(layer: Activation, params, spec, f, ctx):
    if isinstance(layer.dual(), HomogeneousDual):
        return homogeneous_apply(layer, params, spec, f, ctx)
    return mehler_apply(layer, params, spec, f, ctx)


register(Activation, Sketch, activation_init, activation_apply)

__all__ = ["ActivationSketchParams", "homogeneous_polynomials", "kappa_features", "mehler_degree", "ntk_product",
           "polynomials_at_one"]

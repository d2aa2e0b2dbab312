"""NTK Sketch: features from sketched polynomial approximations of the arc-cosine kernels.

Layerwise (any stack). At a ReLU, with u = nngp / |nngp| the normalized feature at a position
and s its exact NNGP diagonal,

    nngp' = sqrt(s / 2) P1(u),   t = sqrt(1 / 2) P0(u),   ntk' = TensorSRHT(ntk, t)

where P1, P0 are features of polynomial fits of kappa1 and kappa0 on [rho_min, 1]
(`dot_product_features`). Then <nngp'(x), nngp'(y)> ~ (1/2) sqrt(s_x s_y) kappa1(rho) and
<ntk', ntk''> ~ ntk * kappa0(rho) / 2: neural-tangents' ReLU rules.

One-shot (fully-connected Dense/Relu stacks). Without inner biases the whole NTK is
|z_x| |z_y| T(rho) with z = [W_0 x / sqrt(C), b_0] and T an explicit function of rho (a scalar
run of the layer rules). One polynomial fit of T, one set of features of u = z / |z|, times |z|:
the sketch error no longer compounds through layers.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random
from ntkfeat._norms import rescale
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.exact.arccos import arccos_kernel0, arccos_kernel1
from ntkfeat.features.state import Features, Spec
from ntkfeat.layers.layers import Dense, Flatten, Relu
from ntkfeat.layers.methods import Sketch
from ntkfeat.polynomials.fit import fit_nonneg_polynomial, taylor_polynomial
from ntkfeat.sketches.dot_product import (
    DotProductFeatureParams,
    dot_product_features,
    dot_product_features_init,
)
from ntkfeat.sketches.product import offset_product, offset_product_init

# Sketched correlations scatter around the exact ones; fit a little below the exact bound.
_RHO_MARGIN = 0.05


@functools.lru_cache(maxsize=256)
def relu_polynomials(degree: int, fit: str, rho_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of the kappa1 and kappa0 approximations used at a ReLU."""
    if fit == "taylor":
        return taylor_polynomial("arccos1", degree), taylor_polynomial("arccos0", degree)
    interval = (max(-1.0, rho_min), 1.0)
    k1 = fit_nonneg_polynomial(arccos_kernel1, degree, interval)
    k0 = fit_nonneg_polynomial(arccos_kernel0, degree, interval)
    return k1, k0


def split_output(dim: int, spec_after: Spec, ntk_weight: float = 1.0) -> tuple[int, int]:
    """(nngp width, ntk width) of the last ReLU.

    `dim` is split in proportion to each kernel's diagonal mass times `ntk_weight` for the NTK
    part, the square root of how much noisier one NTK feature is than one NNGP feature (the
    NTK part goes through a TensorSRHT; the NNGP part does not): the split that minimizes the
    summed variance mass^2 v / m.
    """
    if spec_after.ntk_dim == 0 or spec_after.ntk_scale <= 0:
        return dim, 0
    ntk = ntk_weight * spec_after.ntk_scale
    share = ntk / (ntk + spec_after.nngp_scale)
    m_ntk = min(max(int(round(dim * share)), 1), dim - 1)
    return dim - m_ntk, m_ntk


# One NTK feature (through a TensorSRHT) is noisier than one NNGP feature; measured on UCI data
# (NOTES.md), giving the NTK part twice its mass share balanced the two errors best.
NTK_WEIGHT = 2.0


def relu_widths(method, spec: Spec, final: bool) -> tuple[int, int, int]:
    """(nngp width, ntk width, order-0 width) of a ReLU's outputs."""
    width = method.width or method.dim
    if not final:
        return width, (width if spec.ntk_dim else 0), width
    after = spec._replace(nngp_scale=spec.nngp_scale / 2, ntk_scale=spec.ntk_scale / 2)
    m_nngp, m_ntk = split_output(method.dim, after, NTK_WEIGHT)
    return m_nngp, m_ntk, width


def relu_spec(spec: Spec, m_nngp: int, m_ntk: int) -> Spec:
    return spec._replace(
        nngp_dim=m_nngp,
        ntk_dim=m_ntk,
        rho_min=max(-1.0, float(arccos_kernel1(spec.rho_min)) - _RHO_MARGIN),
        nngp_scale=spec.nngp_scale / 2,
        ntk_scale=spec.ntk_scale / 2,
        ntk_ends_with_nngp=False,
    )


def relu_init(layer: Relu, key, spec: Spec, method: Sketch, final: bool, dtype):
    m_nngp, m_ntk, m_t = relu_widths(method, spec, final)
    k1, k0 = relu_polynomials(method.degree, method.fit, round(spec.rho_min, 6))
    key_f, key_t = _random.split(key, 2)
    params = {"kappa": None, "product": None}
    ntk_width = 0
    if spec.ntk_dim:
        # kappa0's constant term (1/2) is its own coordinate: the NTK times it is kept apart
        # from the TensorSRHT (see `sketches.product`). kappa1 and kappa0 of the same input
        # share one set of sketches (two heads), so its FFTs are paid once.
        k0_rest = k0.copy()
        k0_rest[0] = 0.0
        params["kappa"] = dot_product_features_init(key_f, spec.nngp_dim, [k1, k0_rest], [m_nngp, m_t], dtype)
        # When the NTK features end with the NNGP ones, that block borrows the kappa features'
        # transform of the same vector (no FFT of its own; see `sketches.product`).
        blocks, weights, borrowed = spec.ntk_dim, None, None
        transform = params["kappa"].input_transform()
        if spec.ntk_ends_with_nngp and transform is not None:
            other = spec.ntk_dim - spec.nngp_dim
            blocks, weights, borrowed = (spec.nngp_dim,), None, (transform,)
            if other:
                blocks = (other, spec.nngp_dim)
                weights = (max(spec.ntk_scale - spec.nngp_scale, 0.0), spec.nngp_scale)
                borrowed = (None, transform)
        params["product"], ntk_width = offset_product_init(
            key_t, blocks, params["kappa"].head_out_dim(1), math.sqrt(k0[0] / 2), m_ntk, dtype,
            weights=weights, borrowed=borrowed,
        )
    else:
        params["kappa"] = dot_product_features_init(key_f, spec.nngp_dim, k1, m_nngp, dtype)
    return params, relu_spec(spec, params["kappa"].head_out_dim(0), ntk_width)


def normalize(nngp: jax.Array, diag: jax.Array | None, with_norm: bool = False):
    """(u, scale): the unit feature and the exact root-diagonal (or the feature norm); with
    `with_norm`, also the feature norm |nngp|."""
    norm = jnp.linalg.norm(nngp, axis=-1)
    safe = jnp.where(norm > 0, norm, 1.0)
    u = nngp / safe[..., None]
    scale = norm if diag is None else jnp.sqrt(jnp.maximum(diag, 0.0))
    return (u, scale, norm) if with_norm else (u, scale)


def kappa_features(params: DotProductFeatureParams, u: jax.Array, renormalize: bool) -> tuple[jax.Array, ...]:
    """Every head's features of the unit vectors u. Renormalized, each sketched degree block has
    the norm it estimates, sqrt(c_j), so each head has the norm of its polynomial at 1 (the kappa1
    and kappa0 sketches then err with the correlation they estimate, not on their own). u has
    norm 1 (or 0, and then zero features whatever the target)."""
    return dot_product_features(params, u, heads=True, renormalize=renormalize, x_norm=1.0)


def polynomials_at_one(params: DotProductFeatureParams) -> jax.Array:
    """(heads,) each head's polynomial at 1: sum_j c_j, the squared norm its features estimate."""
    return jnp.sum(params.sqrt_coeffs**2, axis=-1)


def relu_apply(layer: Relu, params, spec: Spec, f: Features) -> Features:
    u, scale, norm = normalize(f.nngp, f.diag, with_norm=True)
    half = 0.5**0.5
    diag = None if f.diag is None else f.diag / 2
    heads = kappa_features(params["kappa"], u, spec.renormalize)
    nngp = (half * scale)[..., None] * heads[0]
    if f.ntk is None:
        return Features(nngp, None, diag)
    t = half * heads[1]
    ntk = ntk_product(params, f.ntk, u, norm, t)
    if spec.renormalize:  # |ntk (x) [c, t]| = |ntk| sqrt(c^2 + |t|^2), |t|^2 = p0(1) / 2 here
        c = params["product"].constant
        t_sq = 0.5 * polynomials_at_one(params["kappa"])[1]
        ntk = rescale(ntk, jnp.linalg.norm(f.ntk, axis=-1) * jnp.sqrt(c * c + t_sq))
    return Features(nngp, ntk, diag)


def ntk_product(params, ntk: jax.Array, u: jax.Array, norm: jax.Array, t: jax.Array) -> jax.Array:
    """Features of ntk (x) t with the constant of kappa0 kept apart (`sketches.product`). When
    ntk ends with the NNGP features norm * u, that block borrows the kappa transform of u."""
    product = params["product"]
    if product.signs[-1] is not None:
        return offset_product(product, ntk, t)
    own = product.widths[:-1]  # () or (width of the block before the NNGP features,)
    x = tuple(ntk[..., : w] for w in own) + (None,)
    borrowed = (None,) * len(own) + ((params["kappa"].input_transform(), u, norm),)
    return offset_product(product, x, t, borrowed)


# -------------------------------------------------------------------------------------- one-shot


def oneshot_reason(layers, input_shape) -> str | None:
    """Why the one-shot NTK Sketch cannot represent this stack, or None if it can."""
    if len(input_shape) != 1:
        return "the input is not flat (one-shot needs (n, d) inputs; use mode='layerwise')"
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Dense, Relu, Flatten)):
            return f"layer {i} is {type(layer).__name__} (one-shot handles Dense, Relu and Flatten)"
    dense = [i for i, l in enumerate(layers) if isinstance(l, Dense)]
    for i in dense:
        if layers[i].bias > 0 and i != 0 and i != len(layers) - 1:
            return (f"layer {i} is a Dense with a bias between ReLUs, so the NTK is not a function of "
                    "the input correlation alone (one-shot allows biases only in the first and last layers)")
    return None


def oneshot_kernel_fn(layers):
    """T(rho) with NTK(x, y) = |z_x| |z_y| T(rho_z) + b_last^2 (see module docstring).

    Returns:
      (w0, b0, T, b_last): input scaling z = [w0 x / sqrt(C), b0]; T a vectorized NumPy function;
      b_last the readout bias handled as a constant feature.
    """
    layers = [l for l in layers if not isinstance(l, Flatten)]
    w0, b0, start, started = 1.0, 0.0, 0, False
    if isinstance(layers[0], Dense):
        w0, b0, start, started = layers[0].W_std, layers[0].bias, 1, True
    b_last = 0.0
    rest = list(layers[start:])
    if rest and isinstance(rest[-1], Dense) and rest[-1].bias > 0:
        b_last = rest[-1].bias

    def theta(rho):
        rho = np.clip(np.asarray(rho, dtype=np.float64), -1.0, 1.0)
        s, k = 1.0, rho  # NNGP = |z_x| |z_y| s k(rho)
        t = rho if started else np.zeros_like(rho)
        for layer in rest:
            if isinstance(layer, Relu):
                t = t * arccos_kernel0(k) / 2
                s, k = s / 2, arccos_kernel1(k)
            else:
                s = layer.W_std**2 * s
                t = layer.W_std**2 * t + s * k
        return t

    return w0, b0, theta, b_last


@pytree_dataclass(meta=("w0", "b0", "b_last", "in_dim", "renormalize"))
class OneShotParams:
    features: DotProductFeatureParams
    coeffs: jax.Array  # the fitted polynomial of T, for diagnostics
    w0: float
    b0: float
    b_last: float
    in_dim: int
    renormalize: bool = False

    @property
    def out_dim(self) -> int:
        return self.features.out_dim + (1 if self.b_last > 0 else 0)


def oneshot_init(layers, key, input_shape, method: Sketch, dtype) -> OneShotParams:
    reason = oneshot_reason(layers, input_shape)
    if reason is not None:
        raise ValueError(f"Sketch(mode='oneshot') does not apply: {reason}")
    if method.fit != "lstsq":
        raise ValueError("Sketch(mode='oneshot') fits the whole NTK and supports fit='lstsq' only")
    (d,) = input_shape
    w0, b0, theta, b_last = oneshot_kernel_fn(layers)
    coeffs = fit_nonneg_polynomial(theta, method.degree, (-1.0, 1.0))
    z_dim = d + (1 if b0 > 0 else 0)
    budget = method.dim - (1 if b_last > 0 else 0)
    feats = dot_product_features_init(key, z_dim, coeffs, budget, dtype)
    return OneShotParams(
        feats, jnp.asarray(coeffs, dtype), float(w0), float(b0), float(b_last), d, bool(method.renormalize)
    )


def oneshot_apply(params: OneShotParams, x: jax.Array) -> jax.Array:
    z = params.w0 * x / math.sqrt(params.in_dim)
    if params.b0 > 0:
        z = jnp.concatenate([z, jnp.full(z.shape[:-1] + (1,), params.b0, z.dtype)], axis=-1)
    u, norm = normalize(z, None)
    out = norm[..., None] * kappa_features(params.features, u, params.renormalize)[0]
    if params.b_last > 0:
        out = jnp.concatenate([out, jnp.full(out.shape[:-1] + (1,), params.b_last, out.dtype)], -1)
    return out

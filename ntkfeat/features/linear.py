"""Feature rules of the linear layers, shared by every method.

On features, a linear layer of the network is a linear map, exact where it is cheap and a
sketch of that map where it is not.

Convolution. The NNGP after a conv is W_std^2 / |filter| times the sum over filter offsets o of
the NNGP at shifted positions, i.e. the Gram of the q^2 shifted copies stacked side by side
(im2col). When that stack is narrow (the first layer: 4 x 4 x 3 = 48) it is used as is. When it
is wide, stacking it is never needed: with a shared random rotation R and independent sign
vectors D_o, v(p) = sum_o D_o * R f(p + o) satisfies E <v(p), v'(p')> = sum_o <f(p+o), f'(p'+o)>,
so one signed sum over offsets replaces the q^2-wide direct sum. R (sign flips and the
orthonormal real DFT, exact) spreads each feature vector so that the cross terms stay small.
Flatten uses the same trick over positions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ntkfeat import _random
from ntkfeat._norms import rescale, sqrt0
from ntkfeat.features.state import Branches, Features, Spec
from ntkfeat.features.table import register
from ntkfeat.layers.linear import (
    Aggregate, AvgPool, Conv, Dense, Dropout, Flatten, GlobalAvgPool, GlobalSumPool, Identity, LayerNorm, SumPool,
)
from ntkfeat.sketches.srht import fft_length, random_rotation

_DN = ("NHWC", "HWIO", "NHWC")


class WindowMix(NamedTuple):
    """A sketch of the direct sum of the shifted copies in a window (see module docstring)."""

    rotation: jax.Array  # (in_dim,) signs of the shared random rotation
    signs: jax.Array  # (*window, rotated width, copies) signs per offset and copy


class MixParams(NamedTuple):
    """Per kernel: None (exact stacking) or the WindowMix that sketches it."""

    nngp: WindowMix | None
    ntk: WindowMix | None


def conv_output_shape(spatial, window, strides, padding) -> tuple[int, int]:
    if padding in ("SAME", "CIRCULAR"):
        return tuple(-(-s // st) for s, st in zip(spatial, strides))
    return tuple((s - w) // st + 1 for s, w, st in zip(spatial, window, strides))


def _single_branch(spec: Spec, ctx, what: str) -> None:
    if isinstance(spec, Branches):
        raise ValueError(f"{ctx.where}: {what} gets {len(spec)} branches; merge them first "
                         "(FanInSum, FanInProd or FanInConcat)")


def _needs_images(spec: Spec, ctx, what: str) -> None:
    _single_branch(spec, ctx, what)
    if len(spec.spatial) != 2:
        raise ValueError(f"{ctx.where}: {what} needs NHWC inputs (2 spatial axes); it sees spatial shape {spec.spatial}")


def _wrap(x, window, strides, padding):
    """(x, padding) for a window op over axes 1, 2 of x: CIRCULAR becomes the image wrapped
    around by SAME's pad amounts (neural-tangents' periodic boundaries) and VALID; the other
    paddings pass through. Works for features (n, H, W, m) and diagonals (n, H, W)."""
    if padding != "CIRCULAR" or x is None:
        return x, padding
    pads = lax.padtype_to_pads(x.shape[1:3], window, strides, "SAME")
    widths = [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)] * (x.ndim - 3)
    return jnp.pad(x, widths, mode="wrap"), "VALID"


def _with_bias(nngp, b: float):
    if b > 0:
        return jnp.concatenate([nngp, jnp.full(nngp.shape[:-1] + (1,), b, nngp.dtype)], axis=-1)
    return nngp


def _weighted_spec(spec: Spec, layer, nngp_dim: int, ntk_dim: int, **changes) -> Spec:
    """The description after a Dense or Conv: NTK = W^2 NTK + NNGP', Gaussian values."""
    s = layer.W_std**2 * spec.nngp_scale + layer.bias**2
    return spec._replace(
        nngp_dim=nngp_dim + (1 if layer.bias > 0 else 0),
        ntk_dim=ntk_dim + nngp_dim + (1 if layer.bias > 0 else 0),
        nngp_scale=s, ntk_scale=layer.W_std**2 * spec.ntk_scale + s, ntk_ends_with_nngp=True,
        channels=layer.width(), gaussian=True, power=spec.power if layer.bias == 0 else None, **changes,
    )


# ---------------------------------------------------------------------------------------- Dense


def dense_init(layer: Dense, key, spec: Spec, ctx):
    _single_branch(spec, ctx, "Dense")
    return None, _weighted_spec(spec, layer, spec.nngp_dim, spec.ntk_dim)


def dense_apply(layer: Dense, params, spec: Spec, f: Features, ctx) -> Features:
    w, b = layer.W_std, layer.bias
    nngp = _with_bias(w * f.nngp, b)
    ntk = nngp if f.ntk is None else jnp.concatenate([w * f.ntk, nngp], axis=-1)
    diag = None if f.diag is None else w**2 * f.diag + b**2
    return Features(nngp, ntk, diag)


# ----------------------------------------------------------------------------------------- Conv


def _window_mix_init(key, in_dim: int, window: tuple[int, ...], width: int, dtype) -> WindowMix | None:
    """Either None (exact stacking is cheap) or the signed-sum sketch.

    One sign-sum compresses prod(window) * N inputs into N outputs, so when the budget allows
    it, r = width // N independent sign sets (one shared rotation) are concatenated and scaled by
    1/sqrt(r): their errors are uncorrelated, so the variance falls by r at r times the width.
    """
    if math.prod(window) * in_dim <= width:
        return None
    k_rot, k_sign = _random.split(key, 2)
    rotated = fft_length(in_dim)  # the rotation's output width
    copies = _copies(in_dim, window, width)
    signs = jnp.asarray(_random.rademacher(k_sign, tuple(window) + (rotated, copies)), dtype)
    return WindowMix(jnp.asarray(_random.rademacher(k_rot, (in_dim,)), dtype), signs)


def _copies(in_dim: int, window, width: int) -> int:
    return max(1, min(math.prod(window), width // fft_length(in_dim)))


def _window_mix_dim(in_dim: int, window, width: int) -> int:
    n = math.prod(window) * in_dim
    return n if n <= width else _copies(in_dim, window, width) * fft_length(in_dim)


def _signed_window_sum(y, signs, window, strides, padding):
    """sum over window offsets o of signs[o] * y[p * stride + o], for each of the sign copies:
    (n, H, W, N) -> (n, H', W', N * copies), channel-major (c, copy).

    Written as shifted slices, which XLA fuses into one pass. (The same sum as one grouped
    convolution, a depthwise convolution with `copies` outputs per channel, was 4x slower on an
    H200 and slower still on CPU; NOTES.md.)
    """
    copies = signs.shape[-1]
    spatial = y.shape[1:3]
    pads = lax.padtype_to_pads(spatial, window, strides, padding)
    y = jnp.pad(y, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    out_h, out_w = conv_output_shape(spatial, window, strides, padding)
    sh, sw = strides
    out = 0.0
    for i in range(window[0]):
        for j in range(window[1]):
            view = y[:, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw, :, None]
            out = out + view * signs[i, j].astype(y.dtype)
    return out.reshape(out.shape[:3] + (-1,)) * (1.0 / copies) ** 0.5


def _window_sum(x, window, strides, padding):
    """Sum of x (n, H, W) over each window (zero padding for SAME)."""
    return lax.reduce_window(x, 0.0, lax.add, (1,) + tuple(window), (1,) + tuple(strides), padding)


def _window_mix(mix: WindowMix | None, x, window, strides, padding, renormalize=False):
    """sum_o (per-offset linear map) x(p + o), exact (patches) or sketched (signed rotations).

    Renormalized, the sketch has the exact norm of the stacked patches at every position:
    sqrt(sum_o |x(p + o)|^2)."""
    if mix is None:
        return lax.conv_general_dilated_patches(x, window, strides, padding, dimension_numbers=_DN)
    y = random_rotation(mix.rotation, x)  # orthogonal: inner products kept exactly
    out = _signed_window_sum(y, mix.signs, window, strides, padding)
    if renormalize:
        out = rescale(out, sqrt0(_window_sum(jnp.sum(x * x, axis=-1), window, strides, padding)))
    return out


def conv_init(layer: Conv, key, spec: Spec, ctx):
    _needs_images(spec, ctx, "Conv")
    out_spatial = conv_output_shape(spec.spatial, layer.filter_shape, layer.strides, layer.padding)
    if min(out_spatial) < 1:
        raise ValueError(
            f"{ctx.where}: Conv{layer.filter_shape} with VALID padding needs inputs of at least {layer.filter_shape} "
            f"positions; it sees {spec.spatial} (the images are smaller than the network's receptive field)"
        )
    k1, k2 = _random.split(key, 2)
    window, width = layer.filter_shape, ctx.width
    params = MixParams(
        _window_mix_init(k1, spec.nngp_dim, window, width, ctx.dtype),
        _window_mix_init(k2, spec.ntk_dim, window, width, ctx.dtype) if spec.ntk_dim else None,
    )
    nngp_dim = _window_mix_dim(spec.nngp_dim, window, width)
    ntk_dim = _window_mix_dim(spec.ntk_dim, window, width) if spec.ntk_dim else 0
    return params, _weighted_spec(spec, layer, nngp_dim, ntk_dim, spatial=out_spatial)


def conv_apply(layer: Conv, params: MixParams, spec: Spec, f: Features, ctx) -> Features:
    window, strides = layer.filter_shape, layer.strides
    scale = layer.W_std / math.sqrt(math.prod(window))
    b = layer.bias
    x, padding = _wrap(f.nngp, window, strides, layer.padding)
    nngp = _with_bias(scale * _window_mix(params.nngp, x, window, strides, padding, spec.renormalize), b)
    if f.ntk is None:
        ntk = nngp
    else:
        x, padding = _wrap(f.ntk, window, strides, layer.padding)
        mixed = _window_mix(params.ntk, x, window, strides, padding, spec.renormalize)
        ntk = jnp.concatenate([scale * mixed, nngp], -1)
    d, padding = _wrap(f.diag, window, strides, layer.padding)
    diag = None if d is None else scale**2 * _window_sum(d, window, strides, padding) + b**2
    return Features(nngp, ntk, diag)


# -------------------------------------------------------------------------------------- Pooling


def _pool_init(layer, spec: Spec, ctx, scale: float):
    name = type(layer).__name__
    _needs_images(spec, ctx, name)
    out_spatial = conv_output_shape(spec.spatial, layer.window_shape, layer.strides, layer.padding)
    if min(out_spatial) < 1:
        raise ValueError(f"{ctx.where}: {name}{layer.window_shape} does not fit the spatial shape {spec.spatial}")
    return None, spec._replace(spatial=out_spatial, diag_known=False, nngp_scale=spec.nngp_scale * scale,
                               ntk_scale=spec.ntk_scale * scale)


def _pool(x, layer, divide: bool, spatial=None):
    window, strides = layer.window_shape, layer.strides
    x, padding = _wrap(x, window, strides, layer.padding)  # CIRCULAR: every window is full
    dims, steps = (1,) + window + (1,), (1,) + strides + (1,)
    out = lax.reduce_window(x, 0.0, lax.add, dims, steps, padding)
    if not divide:
        return out
    if getattr(layer, "normalize_edges", False) and padding == "SAME":
        # Divide by the number of window positions inside the image (a static count per position).
        count = lax.reduce_window(np.ones((1,) + tuple(spatial) + (1,), np.float32), 0.0, lax.add, dims, steps, padding)
        return out / jnp.asarray(count, x.dtype)
    return out / math.prod(window)


def avg_pool_init(layer: AvgPool, key, spec: Spec, ctx):
    return _pool_init(layer, spec, ctx, 1.0)


def avg_pool_apply(layer: AvgPool, params, spec: Spec, f: Features, ctx) -> Features:
    def pool(x):
        return None if x is None else _pool(x, layer, True, spec.spatial)

    return Features(pool(f.nngp), pool(f.ntk), None)


def sum_pool_init(layer: SumPool, key, spec: Spec, ctx):
    # Masses for splitting dimensions: correlated neighbours add their kernels, so about |window|.
    return _pool_init(layer, spec, ctx, float(math.prod(layer.window_shape)))


def sum_pool_apply(layer: SumPool, params, spec: Spec, f: Features, ctx) -> Features:
    return Features(_pool(f.nngp, layer, False), None if f.ntk is None else _pool(f.ntk, layer, False), None)


def _global_pool_init(layer, spec: Spec, ctx, scale: float):
    _single_branch(spec, ctx, type(layer).__name__)
    if not spec.spatial:
        raise ValueError(f"{ctx.where}: {type(layer).__name__} needs spatial inputs; it sees flat features")
    return None, spec._replace(spatial=(), diag_known=False, nngp_scale=spec.nngp_scale * scale,
                               ntk_scale=spec.ntk_scale * scale)


def _global_pool_apply(f: Features, spec: Spec, reduce) -> Features:
    axes = tuple(range(1, 1 + len(spec.spatial)))
    return Features(reduce(f.nngp, axis=axes), None if f.ntk is None else reduce(f.ntk, axis=axes), None)


def global_avg_pool_init(layer, key, spec: Spec, ctx):
    return _global_pool_init(layer, spec, ctx, 1.0)


def global_avg_pool_apply(layer, params, spec: Spec, f: Features, ctx) -> Features:
    return _global_pool_apply(f, spec, jnp.mean)


def global_sum_pool_init(layer, key, spec: Spec, ctx):
    _single_branch(spec, ctx, "GlobalSumPool")
    return _global_pool_init(layer, spec, ctx, float(spec.positions))


def global_sum_pool_apply(layer, params, spec: Spec, f: Features, ctx) -> Features:
    return _global_pool_apply(f, spec, jnp.sum)


# -------------------------------------------------------------------------------------- Flatten


def flatten_init(layer: Flatten, key, spec: Spec, ctx):
    _single_branch(spec, ctx, "Flatten")
    if not spec.spatial:
        return None, spec
    k1, k2 = _random.split(key, 2)
    p, width = spec.positions, ctx.width
    params = MixParams(
        _window_mix_init(k1, spec.nngp_dim, (p,), width, ctx.dtype),
        _window_mix_init(k2, spec.ntk_dim, (p,), width, ctx.dtype) if spec.ntk_dim else None,
    )
    out = spec._replace(
        spatial=(),
        nngp_dim=_window_mix_dim(spec.nngp_dim, (p,), width),
        ntk_dim=_window_mix_dim(spec.ntk_dim, (p,), width) if spec.ntk_dim else 0,
        ntk_ends_with_nngp=False,
        channels=spec.channels * p,
    )
    return params, out


def _flatten_features(mix: WindowMix | None, x, positions: int, renormalize=False):
    n = x.shape[0]
    x = x.reshape(n, positions, x.shape[-1])
    if mix is None:
        return x.reshape(n, -1) / math.sqrt(positions)
    y = random_rotation(mix.rotation, x)  # signs: (positions, N, copies)
    out = jnp.einsum("npm,pmc->nmc", y, mix.signs.astype(y.dtype)) / math.sqrt(positions * mix.signs.shape[-1])
    out = out.reshape(n, -1)
    return rescale(out, sqrt0(jnp.sum(x * x, axis=(1, 2)) / positions)) if renormalize else out


def flatten_apply(layer, params: MixParams, spec: Spec, f: Features, ctx) -> Features:
    if not spec.spatial:
        return f
    p = spec.positions
    nngp = _flatten_features(params.nngp, f.nngp, p, spec.renormalize)
    ntk = None if f.ntk is None else _flatten_features(params.ntk, f.ntk, p, spec.renormalize)
    diag = None if f.diag is None else jnp.mean(f.diag.reshape(f.diag.shape[0], -1), axis=1)
    return Features(nngp, ntk, diag)


# -------------------------------------------------------------- Identity, Dropout, LayerNorm


def identity_init(layer, key, spec, ctx):
    return None, spec


def identity_apply(layer, params, spec, f, ctx):
    return f


def dropout_init(layer: Dropout, key, spec, ctx):
    if layer.mode == "train":
        raise ValueError(
            f"{ctx.where}: Dropout(rate={layer.rate}, mode='train') has no feature map: neural-tangents' train-mode "
            "kernel multiplies the kernels of an input with itself by 1 / rate and no others, a jump on the diagonal "
            "that features of one input at a time cannot reproduce; use Dropout(rate, mode='test') for features (the "
            "identity, the kernel at inference), or kernel_fn for the train-mode kernel")
    return None, spec


def layer_norm_init(layer: LayerNorm, key, spec: Spec, ctx):
    _single_branch(spec, ctx, "LayerNorm")
    if not spec.gaussian:
        raise ValueError(f"{ctx.where}: LayerNorm needs Gaussian inputs (put a Dense or Conv before it; "
                         "neural-tangents' rule)")
    q = spec.nngp_scale
    return None, spec._replace(nngp_scale=q / (layer.eps + q), ntk_scale=spec.ntk_scale / (layer.eps + q),
                               diag_known=True, power=0.0 if layer.eps == 0 else None)


def layer_norm_apply(layer: LayerNorm, params, spec: Spec, f: Features, ctx) -> Features:
    q = f.diag if f.diag is not None else jnp.sum(f.nngp * f.nngp, axis=-1)
    shifted = layer.eps + q
    inv = jnp.where(shifted > 0, lax.rsqrt(jnp.where(shifted > 0, shifted, 1.0)), 0.0)  # zero rows stay zero
    return Features(f.nngp * inv[..., None], None if f.ntk is None else f.ntk * inv[..., None], q * inv * inv)


# ------------------------------------------------------------------------------------ Aggregate


def aggregate_init(layer: Aggregate, key, spec: Spec, ctx):
    _single_branch(spec, ctx, "Aggregate")
    if not spec.spatial:
        raise ValueError(f"{ctx.where}: Aggregate needs inputs with node axes (batch, nodes, channels); "
                         "it sees flat features")
    # Any weighted sum of positions: correlations are no longer bounded below by the inputs'.
    return None, spec._replace(diag_known=False, rho_min=-1.0)


def aggregate_apply(layer: Aggregate, params, spec: Spec, f: Features, ctx) -> Features:
    if ctx.kwargs.get("pattern") is None:
        raise ValueError("Aggregate needs the graph: call feature_fn(params, x, pattern=A) with A of shape "
                         f"(n, {', '.join(map(str, spec.spatial * 2))})")
    pattern = layer.dense(ctx.kwargs["pattern"])
    n, p = f.nngp.shape[0], spec.positions
    expected = (n,) + spec.spatial * 2
    if tuple(pattern.shape) != expected:
        raise ValueError(f"pattern has shape {tuple(pattern.shape)}; for inputs with {n} rows and node axes "
                         f"{spec.spatial} it must be {expected}")
    a = jnp.reshape(pattern, (n, p, p)).astype(f.nngp.dtype)

    def aggregate(x):
        if x is None:
            return None
        out = jnp.einsum("bim,bij->bjm", x.reshape(n, p, x.shape[-1]), a, precision=lax.Precision.HIGHEST)
        return out.reshape(x.shape)

    return Features(aggregate(f.nngp), aggregate(f.ntk), None)


register(Dense, None, dense_init, dense_apply)
register(Conv, None, conv_init, conv_apply)
register(AvgPool, None, avg_pool_init, avg_pool_apply)
register(SumPool, None, sum_pool_init, sum_pool_apply)
register(GlobalAvgPool, None, global_avg_pool_init, global_avg_pool_apply)
register(GlobalSumPool, None, global_sum_pool_init, global_sum_pool_apply)
register(Flatten, None, flatten_init, flatten_apply)
register(Identity, None, identity_init, identity_apply)
register(Dropout, None, dropout_init, identity_apply)
register(LayerNorm, None, layer_norm_init, layer_norm_apply)
register(Aggregate, None, aggregate_init, aggregate_apply)

__all__ = ["MixParams", "WindowMix", "conv_output_shape"]

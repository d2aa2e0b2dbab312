"""Feature maps of the linear layers (Dense, Conv, AvgPool, GlobalAvgPool, Flatten).

Every method (Sketch, RandomFeatures) shares them: on features, a linear layer of the network is
a linear map, exact where it is cheap and a sketch of that map where it is not.

Convolution. The NNGP after a conv is W_std^2 / |filter| times the sum over filter offsets o of
the NNGP at shifted positions, i.e. the Gram of the q^2 shifted copies stacked side by side
(im2col). When that stack is narrow (the first layer: 4 x 4 x 3 = 48) it is used as is. When it
is wide, stacking it is never needed: with a shared random rotation R and independent sign
vectors D_o, v(p) = sum_o D_o * R f(p + o) satisfies E <v(p), v'(p')> = sum_o <f(p+o), f'(p'+o)>,
so one depthwise convolution with random +-1 filters replaces the q^2-wide direct sum. R (a full
random rotation: sign flips and the orthonormal real DFT, exact) spreads each feature vector so that the cross terms stay
small. Flatten uses the same trick over positions.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from ntkfeat import _random
from ntkfeat._norms import rescale
from ntkfeat.features.state import Features, Spec
from ntkfeat.layers.layers import AvgPool, Conv, Dense, Flatten, GlobalAvgPool
from ntkfeat.sketches.srht import fft_length, random_rotation

_DN = ("NHWC", "HWIO", "NHWC")


def conv_output_shape(spatial, window, strides, padding) -> tuple[int, int]:
    if padding == "SAME":
        return tuple(-(-s // st) for s, st in zip(spatial, strides))
    return tuple((s - w) // st + 1 for s, w, st in zip(spatial, window, strides))


# ---------------------------------------------------------------------------------------- Dense


def dense_init(layer: Dense, key, spec: Spec, width: int, dtype):
    if spec.spatial:
        pass  # Dense acts on the channel axis at every position, as in neural-tangents.
    b = layer.bias
    nngp_dim = spec.nngp_dim + (1 if b > 0 else 0)
    ntk_dim = (spec.ntk_dim if spec.ntk_dim else 0) + nngp_dim
    s = layer.W_std**2 * spec.nngp_scale + b**2
    out = spec._replace(
        nngp_dim=nngp_dim, ntk_dim=ntk_dim, nngp_scale=s, ntk_scale=layer.W_std**2 * spec.ntk_scale + s,
        ntk_ends_with_nngp=True,
    )
    return None, out


def dense_apply(layer: Dense, params, spec: Spec, f: Features) -> Features:
    w, b = layer.W_std, layer.bias
    nngp = w * f.nngp
    if b > 0:
        nngp = jnp.concatenate([nngp, jnp.full(nngp.shape[:-1] + (1,), b, nngp.dtype)], axis=-1)
    ntk = nngp if f.ntk is None else jnp.concatenate([w * f.ntk, nngp], axis=-1)
    diag = None if f.diag is None else w**2 * f.diag + b**2
    return Features(nngp, ntk, diag)


# ----------------------------------------------------------------------------------------- Conv


def _window_mix_init(key, in_dim: int, window: tuple[int, ...], width: int, dtype):
    """Either None (exact stacking is cheap) or (rotation, signs) for the sign-sum sketch.

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
    return jnp.asarray(_random.rademacher(k_rot, (in_dim,)), dtype), signs


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


def _window_mix(mix, x, window, strides, padding, renormalize=False):
    """sum_o (per-offset linear map) x(p + o), exact (patches) or sketched (signed rotations).

    Renormalized, the sketch has the exact norm of the stacked patches at every position:
    sqrt(sum_o |x(p + o)|^2)."""
    if mix is None:
        return lax.conv_general_dilated_patches(
            x, window, strides, padding, dimension_numbers=_DN
        )
    rotation, signs = mix
    y = random_rotation(rotation, x)  # orthogonal: inner products kept exactly
    out = _signed_window_sum(y, signs, window, strides, padding)
    if renormalize:
        squares = lax.reduce_window(jnp.sum(x * x, axis=-1), 0.0, lax.add, (1,) + window, (1,) + strides, padding)
        out = rescale(out, jnp.sqrt(squares))
    return out


def conv_init(layer: Conv, key, spec: Spec, width: int, dtype):
    if len(spec.spatial) != 2:
        raise ValueError(f"Conv needs NHWC inputs (2 spatial axes); this layer sees spatial shape {spec.spatial}")
    out_spatial = conv_output_shape(spec.spatial, layer.filter_shape, layer.strides, layer.padding)
    if min(out_spatial) < 1:
        raise ValueError(
            f"Conv{layer.filter_shape} with VALID padding needs inputs of at least {layer.filter_shape} "
            f"positions; this layer sees {spec.spatial} (the images are smaller than the network's receptive field)"
        )
    k1, k2 = _random.split(key, 2)
    nngp_mix = _window_mix_init(k1, spec.nngp_dim, layer.filter_shape, width, dtype)
    ntk_mix = _window_mix_init(k2, spec.ntk_dim, layer.filter_shape, width, dtype) if spec.ntk_dim else None
    b = layer.bias
    nngp_dim = _window_mix_dim(spec.nngp_dim, layer.filter_shape, width) + (1 if b > 0 else 0)
    ntk_dim = (_window_mix_dim(spec.ntk_dim, layer.filter_shape, width) if spec.ntk_dim else 0) + nngp_dim
    s = layer.W_std**2 * spec.nngp_scale + b**2
    out = spec._replace(
        spatial=out_spatial, nngp_dim=nngp_dim, ntk_dim=ntk_dim, nngp_scale=s,
        ntk_scale=layer.W_std**2 * spec.ntk_scale + s, ntk_ends_with_nngp=True,
    )
    return {"nngp": nngp_mix, "ntk": ntk_mix}, out


def conv_apply(layer: Conv, params, spec: Spec, f: Features) -> Features:
    window, strides, padding = layer.filter_shape, layer.strides, layer.padding
    scale = layer.W_std / math.sqrt(math.prod(window))
    b = layer.bias
    nngp = scale * _window_mix(params["nngp"], f.nngp, window, strides, padding, spec.renormalize)
    if b > 0:
        nngp = jnp.concatenate([nngp, jnp.full(nngp.shape[:-1] + (1,), b, nngp.dtype)], axis=-1)
    if f.ntk is None:
        ntk = nngp
    else:
        mixed = _window_mix(params["ntk"], f.ntk, window, strides, padding, spec.renormalize)
        ntk = jnp.concatenate([scale * mixed, nngp], -1)
    diag = None
    if f.diag is not None:
        summed = lax.reduce_window(
            f.diag, 0.0, lax.add, (1,) + window, (1,) + strides, padding
        )
        diag = scale**2 * summed + b**2
    return Features(nngp, ntk, diag)


# -------------------------------------------------------------------------------------- Pooling


def avg_pool_init(layer: AvgPool, key, spec: Spec, width: int, dtype):
    if len(spec.spatial) != 2:
        raise ValueError(f"AvgPool needs NHWC inputs; this layer sees spatial shape {spec.spatial}")
    out_spatial = conv_output_shape(spec.spatial, layer.window, layer.strides, layer.padding)
    if min(out_spatial) < 1:
        raise ValueError(f"AvgPool{layer.window} does not fit the spatial shape {spec.spatial}")
    return None, spec._replace(spatial=out_spatial, diag_known=False)


def avg_pool_apply(layer: AvgPool, params, spec: Spec, f: Features) -> Features:
    def pool(x):
        dims = (1,) + layer.window + (1,)
        strides = (1,) + layer.strides + (1,)
        return lax.reduce_window(x, 0.0, lax.add, dims, strides, layer.padding) / math.prod(layer.window)

    return Features(pool(f.nngp), None if f.ntk is None else pool(f.ntk), None)


def global_avg_pool_init(layer: GlobalAvgPool, key, spec: Spec, width: int, dtype):
    if not spec.spatial:
        raise ValueError("GlobalAvgPool needs spatial inputs (NHWC); this layer sees flat features")
    return None, spec._replace(spatial=(), diag_known=False)


def global_avg_pool_apply(layer, params, spec: Spec, f: Features) -> Features:
    axes = tuple(range(1, 1 + len(spec.spatial)))
    return Features(
        jnp.mean(f.nngp, axis=axes), None if f.ntk is None else jnp.mean(f.ntk, axis=axes), None
    )


def flatten_init(layer: Flatten, key, spec: Spec, width: int, dtype):
    if not spec.spatial:
        return None, spec
    k1, k2 = _random.split(key, 2)
    p = spec.positions
    params = {
        "nngp": _window_mix_init(k1, spec.nngp_dim, (p,), width, dtype),
        "ntk": _window_mix_init(k2, spec.ntk_dim, (p,), width, dtype) if spec.ntk_dim else None,
    }
    out = spec._replace(
        spatial=(),
        nngp_dim=_window_mix_dim(spec.nngp_dim, (p,), width),
        ntk_dim=_window_mix_dim(spec.ntk_dim, (p,), width) if spec.ntk_dim else 0,
        ntk_ends_with_nngp=False,
    )
    return params, out


def _flatten_features(mix, x, positions: int, renormalize=False):
    n = x.shape[0]
    x = x.reshape(n, positions, x.shape[-1])
    if mix is None:
        return x.reshape(n, -1) / math.sqrt(positions)
    rotation, signs = mix  # signs: (positions, N, copies)
    y = random_rotation(rotation, x)
    out = jnp.einsum("npm,pmc->nmc", y, signs.astype(y.dtype)) / math.sqrt(positions * signs.shape[-1])
    out = out.reshape(n, -1)
    return rescale(out, jnp.sqrt(jnp.sum(x * x, axis=(1, 2)) / positions)) if renormalize else out


def flatten_apply(layer, params, spec: Spec, f: Features) -> Features:
    if not spec.spatial:
        return f
    p = spec.positions
    nngp = _flatten_features(params["nngp"], f.nngp, p, spec.renormalize)
    ntk = None if f.ntk is None else _flatten_features(params["ntk"], f.ntk, p, spec.renormalize)
    diag = None if f.diag is None else jnp.mean(f.diag.reshape(f.diag.shape[0], -1), axis=1)
    return Features(nngp, ntk, diag)


RULES = {
    Dense: (dense_init, dense_apply),
    Conv: (conv_init, conv_apply),
    AvgPool: (avg_pool_init, avg_pool_apply),
    GlobalAvgPool: (global_avg_pool_init, global_avg_pool_apply),
    Flatten: (flatten_init, flatten_apply),
}

__all__ = ["RULES", "conv_output_shape"]

"""Sketch of x (x) [c, y]: a tensor product whose right factor has a constant coordinate.

x (x) [c, y] = [c x, x (x) y] up to a permutation of coordinates, so its Gram is
c^2 <x, x'> + <x, x'> <y, y'>. Both arc-cosine factors used at a ReLU have such a constant
(kappa0 = 1/2 + odd terms), and it often carries half of the mass. Sketching the two blocks
separately keeps that half exact (or a plain SRHT of x, far less noisy than a TensorSRHT) and
leaves the TensorSRHT only the rest. When x is narrow, the TensorSRHT block is exact too once its
width reaches dim(x) * dim(y) (stratified rows; see `srht`). Both blocks take their rows from
one Hartley transform of x, so x costs one FFT.

Blocks. x may come as a direct sum [x_1, ..., x_B]; then so does the product, and each block is
sketched on its own, with rows in proportion to its mass |x_b|^2 (for SRHTs this split has the
variance of one sketch of the whole x). A block whose transform H(D x_b) the same computation
takes anyway can borrow it: at a ReLU the NTK features end with the NNGP features, whose
transform the kappa features take, so that block costs row gathers and no FFT. A borrowed
transform's rows are drawn independently of everything else, which keeps each block unbiased:
averaged over a uniform row p, H(D x)_p H(D x')_p / N = <x, x'> whatever D and y are.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ntkfeat import _random
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.sketches.srht import (
    HartleyRows, fft_length, hartley_gather, hartley_rows, split_proportional, stratified_indices, stratified_pairs,
)


class Spectrum(NamedTuple):
    """A borrowed block given with its spectrum: x (..., width) and values (..., N // 2 + 1) =
    rfft(D x) zero-padded to N for some signs D, which the caller computes anyway (random
    features' first rotation). Its Hartley rows sketch x as an SRHT's do."""

    values: jax.Array
    x: jax.Array


@pytree_dataclass(meta=("constant", "exact_linear", "widths", "fft_lens", "y_fft_len"))
class OffsetProductParams:
    # Per block of x: signs of its own transform, or None when the transform is borrowed.
    signs: tuple
    linear: tuple  # per block: HartleyRows for the c x_b block, None when exact or empty
    left: tuple  # per block: HartleyRows of the left factor of x_b (x) y, None without y
    right: tuple  # per block: HartleyRows of the right factor
    y_signs: jax.Array | None  # signs of y's transform (shared by the blocks); None: y is empty
    constant: float
    exact_linear: bool  # c x written as it is
    widths: tuple[int, ...]  # block widths of x
    fft_lens: tuple[int, ...]  # per block transform length
    y_fft_len: int

    @property
    def out_dim(self) -> int:
        lin = sum(self.widths) if self.exact_linear else sum(0 if r is None else r.index.shape[0] for r in self.linear)
        return lin + sum(0 if r is None else r.index.shape[0] for r in self.left)


def offset_product_init(
    key, x_dim, y_dim: int, constant: float, out_dim: int, dtype=jnp.float32, *, weights=None, borrowed=None
) -> tuple[OffsetProductParams, int]:
    """Parameters for features of x (x) [constant, y] with about out_dim outputs.

    The two blocks get equal shares (their variances are balanced when constant^2 ~ E|y|^2, as
    for both ReLU factors); the c x block is exact when x fits its share.

    Args:
      x_dim: the width of x, or a tuple of block widths.
      weights: per block, its expected squared norm (sets the split of rows between blocks).
      borrowed: per block, None or the `SRHTParams` whose transform (signs and length) the block
        reuses; the same transform must be passed to `offset_product`. Or an int N: the caller
        passes the block's spectrum at length N (a `Spectrum`).

    Returns:
      (params, actual output width).
    """
    widths = (x_dim,) if isinstance(x_dim, int) else tuple(int(d) for d in x_dim)
    if not widths or min(widths) < 1:
        raise ValueError(f"x blocks must have positive widths, got {x_dim!r}")
    borrowed = (None,) * len(widths) if borrowed is None else tuple(borrowed)
    weights = widths if weights is None else tuple(weights)
    if len(borrowed) != len(widths) or len(weights) != len(widths):
        raise ValueError("borrowed and weights need one entry per block")
    for b, (w, src) in enumerate(zip(widths, borrowed)):
        if isinstance(src, int):
            if src < w:
                raise ValueError(f"block {b} has width {w} but borrows a transform of length {src}")
        elif src is not None and src.in_dim != w:
            raise ValueError(f"block {b} has width {w} but borrows a transform of width {src.in_dim}")
    keys = _random.split(key, 3 * len(widths) + 1)
    lens = tuple(
        fft_length(w) if src is None else src if isinstance(src, int) else src.fft_len
        for w, src in zip(widths, borrowed)
    )
    signs = tuple(
        None if src is not None else jnp.asarray(_random.rademacher(keys[3 * b], (w,)), dtype)
        for b, (w, src) in enumerate(zip(widths, borrowed))
    )
    # A zero constant (an odd derivative kernel, e.g. of Abs) needs no linear block at all.
    lin_dim = 0 if constant == 0 else (out_dim if y_dim == 0 else out_dim // 2)
    if lin_dim == 0 and y_dim == 0:
        raise ValueError("offset_product_init: with constant 0 and no y the product is zero")
    x_total = sum(widths)
    exact = 0 < x_total <= lin_dim
    lin_width = x_total if exact else lin_dim
    linear = (None,) * len(widths)
    if not exact and lin_dim > 0:
        ks = split_proportional(lin_dim, weights)
        linear = tuple(
            _sorted(hartley_rows(stratified_indices(keys[3 * b + 1], n, k), n, dtype))
            for b, (n, k) in enumerate(zip(lens, ks))
        )
    left = right = (None,) * len(widths)
    y_signs, y_len, ten_width = None, 0, 0
    if y_dim:
        y_len = fft_length(y_dim)
        caps = [n * y_len for n in lens]
        ten_width = min(out_dim - lin_width, sum(caps))
        if ten_width < len(widths):
            raise ValueError(f"out_dim={out_dim} leaves no room for the product block")
        ms = split_proportional(ten_width, weights, caps=caps)
        pairs = [stratified_pairs(keys[3 * b + 2], n, y_len, m) for b, (n, m) in enumerate(zip(lens, ms))]
        left = tuple(hartley_rows(i, n, dtype) for (i, _), n in zip(pairs, lens))
        right = tuple(hartley_rows(j, y_len, dtype) for _, j in pairs)
        orders = [jnp.argsort(rows.index, stable=True) for rows in left]
        left = tuple(_sorted(rows, o) for rows, o in zip(left, orders))
        right = tuple(_sorted(rows, o) for rows, o in zip(right, orders))
        y_signs = jnp.asarray(_random.rademacher(keys[-1], (y_dim,)), dtype)
    params = OffsetProductParams(signs, linear, left, right, y_signs, float(constant), exact, widths, lens, y_len)
    return params, lin_width + ten_width


def _sorted(rows: HartleyRows, order=None) -> HartleyRows:
    """Rows in increasing order of the transform position they read (or in `order`). The
    product's features are used whole, so their order is free; gathers in memory order ran 2-3x
    faster on a CPU than in random order."""
    order = jnp.argsort(rows.index, stable=True) if order is None else order
    return HartleyRows(rows.index[order], rows.imag_sign[order])


def offset_product(params: OffsetProductParams, x, y: jax.Array | None, borrowed=None, constant=None) -> jax.Array:
    """Features of x (x) [c, y] along the last axis.

    Args:
      x: an array, or a tuple with one array per block (None for a borrowed block).
      y: the right factor (None when the params have no y).
      borrowed: per block, None or (transform, u, scale): the block is scale[..., None] * u and
        its transform is `transform` (SRHTParams) applied to u, computed once with the other
        user of that transform when both see the same u; or a `Spectrum` (the block and its
        spectrum, which the caller has computed anyway).
      constant: c per row (an array of x's leading shape), replacing the params' constant
        (which then only says whether there is a c block: it must be nonzero).
    """
    blocks = (x,) if not isinstance(x, (tuple, list)) else tuple(x)
    borrowed = (None,) * len(blocks) if borrowed is None else tuple(borrowed)
    if len(blocks) != len(params.widths):
        raise ValueError(f"offset_product: {len(blocks)} blocks given, params have {len(params.widths)}")
    values, sources, spectra = [], [], {}
    for b, (xb, src) in enumerate(zip(blocks, borrowed)):
        if isinstance(src, Spectrum):
            xb = src.x
            spectra[b] = src.values
            sources.append((xb, None, params.fft_lens[b], None))
        elif src is None:
            if xb is None or xb.shape[-1] != params.widths[b]:
                raise ValueError(f"offset_product: block {b} must have width {params.widths[b]}")
            sources.append((xb, params.signs[b], params.fft_lens[b], None))
        else:
            transform, u, scale = src
            xb = u * scale[..., None]
            sources.append((u, transform.signs, transform.fft_len, scale))
        values.append(xb)

    def gathered(b, rows):
        if b not in spectra:  # one FFT per block, shared by its linear and product rows
            arg, signs, n, _ = sources[b]
            spectra[b] = jnp.fft.rfft(arg * signs.astype(arg.dtype), n=n, axis=-1)
        spectrum = spectra[b]
        out = hartley_gather(spectrum, rows) * (1.0 / rows.index.shape[0]) ** 0.5
        scale = sources[b][3]
        return out if scale is None else out * scale[..., None]

    c = params.constant if constant is None else jnp.asarray(constant)[..., None]
    if params.exact_linear:
        parts = [c * (jnp.concatenate(values, axis=-1) if len(values) > 1 else values[0])]
    else:
        parts = [c * gathered(b, rows) for b, rows in enumerate(params.linear) if rows is not None]
    if params.y_signs is not None:
        ry = jnp.fft.rfft(y * params.y_signs.astype(y.dtype), n=params.y_fft_len, axis=-1)
        for b, (lrows, rrows) in enumerate(zip(params.left, params.right)):
            # TensorSRHT: sqrt(1/m) H(D x_b)[P] * H(D' y)[Q]
            parts.append(gathered(b, lrows) * hartley_gather(ry, rrows))
    return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


__all__ = ["OffsetProductParams", "Spectrum", "offset_product", "offset_product_init"]

"""Subsampled randomized Hartley transforms: SRHT and TensorSRHT, real in and real out.

SRHT_k(x) = sqrt(1/k) H(D x)[P], with D i.i.d. Rademacher signs, H the discrete Hartley transform
H[p] = sum_a x_a cas(2 pi a p / d), cas = cos + sin, and P k rows of H. H is real and
H^T H = d I, so E <SRHT(x), SRHT(y)> = <x, y> for any length d (no power-of-two padding). It is
the real counterpart of the complex subsampled FFT; computing it through `rfft` costs one real
FFT.

TensorSRHT_k(x, y) = sqrt(1/k) H(D1 x)[P1] * H(D2 y)[P2] sketches x (x) y:
E <TensorSRHT(x, y), TensorSRHT(x', y')> = <x, x'> <y, y'>, in O(d log d + k).

Rows are drawn stratified: a random permutation of all N rows (or row pairs), tiled if k exceeds
them. Every row keeps expected multiplicity k/N, so the estimate stays unbiased, and when k is a
multiple of N the sketch is exact (the full transform, by Parseval), so small inputs cost no
variance. When N > 16 k, draws are with replacement: the finite-population correction 1 - k/N
is then above 0.94, and a permutation of N would cost O(N) for nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random

_PERMUTE_BELOW = 16  # permute when population <= this many times k


class HartleyRows(NamedTuple):
    """Rows p of the Hartley transform, stored as H[p] = Re r[index] + imag_sign * Im r[index]
    where r = rfft(x)."""

    index: jax.Array  # (k,) int32 in [0, d // 2]
    imag_sign: jax.Array  # (k,) float, -1 for p <= d // 2 else +1


class SRHTParams(NamedTuple):
    signs: jax.Array  # (d,) +-1
    rows: HartleyRows  # k rows


class TensorSRHTParams(NamedTuple):
    left: SRHTParams  # signs (d1,), rows (k,)
    right: SRHTParams  # signs (d2,), rows (k,)


def stratified_indices(key: jax.Array, population: int, k: int) -> np.ndarray:
    """k indices into range(population): a tiled random permutation (with replacement if huge)."""
    if population < 1 or k < 1:
        raise ValueError(f"need population >= 1 and k >= 1, got {population}, {k}")
    if population > _PERMUTE_BELOW * k:
        return _random.randint(key, (k,), population)
    return _random.permutation(key, population)[np.arange(k) % population]


def hartley_rows(rows, d: int, dtype=jnp.float32) -> HartleyRows:
    """Maps Hartley rows p in [0, d) to positions in rfft's output (see HartleyRows)."""
    rows = np.asarray(rows)
    upper = rows > d // 2
    index = np.where(upper, d - rows, rows)
    imag_sign = np.where(upper, 1.0, -1.0)
    return HartleyRows(jnp.asarray(index, jnp.int32), jnp.asarray(imag_sign, dtype))


def hartley_at(x: jax.Array, rows: HartleyRows) -> jax.Array:
    """H(x)[rows] along the last axis: the unnormalized discrete Hartley transform, sampled."""
    r = jnp.fft.rfft(x, axis=-1)
    return r.real[..., rows.index] + rows.imag_sign * r.imag[..., rows.index]


def rademacher(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return jnp.asarray(_random.rademacher(key, shape), dtype)


def srht_init(key: jax.Array, in_dim: int, out_dim: int, dtype=jnp.float32) -> SRHTParams:
    """Signs and stratified rows for an SRHT from in_dim to out_dim."""
    _check_dims(in_dim=in_dim, out_dim=out_dim)
    k_signs, k_rows = _random.split(key, 2)
    rows = stratified_indices(k_rows, in_dim, out_dim)
    return SRHTParams(rademacher(k_signs, (in_dim,), dtype), hartley_rows(rows, in_dim, dtype))


def srht(params: SRHTParams, x: jax.Array) -> jax.Array:
    """SRHT along the last axis: (..., d) -> (..., k), with E <S x, S y> = <x, y>."""
    _check_last_dim(x, params.signs.shape[0], "srht")
    k = params.rows.index.shape[0]
    return hartley_at(x * params.signs, params.rows) * (1.0 / k) ** 0.5


def tensor_srht_init(
    key: jax.Array, left_dim: int, right_dim: int, out_dim: int, dtype=jnp.float32
) -> TensorSRHTParams:
    """Signs and stratified row pairs for a TensorSRHT of (left_dim) x (right_dim) -> out_dim."""
    _check_dims(left_dim=left_dim, right_dim=right_dim, out_dim=out_dim)
    k1, k2, k3 = _random.split(key, 3)
    flat = stratified_indices(k3, left_dim * right_dim, out_dim)
    rows1, rows2 = flat // right_dim, flat % right_dim
    return TensorSRHTParams(
        SRHTParams(rademacher(k1, (left_dim,), dtype), hartley_rows(rows1, left_dim, dtype)),
        SRHTParams(rademacher(k2, (right_dim,), dtype), hartley_rows(rows2, right_dim, dtype)),
    )


def tensor_srht(params: TensorSRHTParams, x: jax.Array, y: jax.Array | None = None) -> jax.Array:
    """TensorSRHT of x (..., d1) and y (..., d2) -> (..., k), sketching x (x) y.

    y=None stands for the unit vector e1 (so x (x) e1 has the Gram of x): the result is then a
    plain SRHT of x with this node's left rows, up to a global sign that cancels in every inner
    product.
    """
    _check_last_dim(x, params.left.signs.shape[0], "tensor_srht (left)")
    k = params.left.rows.index.shape[0]
    out = hartley_at(x * params.left.signs, params.left.rows)
    if y is not None:
        _check_last_dim(y, params.right.signs.shape[0], "tensor_srht (right)")
        out = out * hartley_at(y * params.right.signs, params.right.rows)
    return out * (1.0 / k) ** 0.5


def _check_dims(**dims: int) -> None:
    for name, value in dims.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_last_dim(x, expected: int, where: str) -> None:
    if x.shape[-1] != expected:
        raise ValueError(f"{where}: input's last axis has size {x.shape[-1]}, expected {expected}")

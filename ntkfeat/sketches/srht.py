"""Subsampled randomized Hartley transforms: SRHT and TensorSRHT, real in and real out.

SRHT_k(x) = sqrt(1/k) H(D x)[P], with D i.i.d. Rademacher signs, H the discrete Hartley transform
H[p] = sum_a x_a cas(2 pi a p / N), cas = cos + sin, and P k rows of H. H is real and
H^T H = N I, so E <SRHT(x), SRHT(y)> = <x, y>. It is the real counterpart of the complex
subsampled FFT (no Re/Im bookkeeping); computing it through `rfft` costs one real FFT.
The input is zero-padded to the next 7-smooth length N >= d: padding keeps every inner product
and avoids the slow FFT paths of lengths with large prime factors.

TensorSRHT_k(x, y) = sqrt(1/k) H(D1 x)[P1] * H(D2 y)[P2] sketches x (x) y:
E <TensorSRHT(x, y), TensorSRHT(x', y')> = <x, x'> <y, y'>, in O(d log d + k).

Rows are drawn stratified: a random permutation of all N rows (or row pairs), tiled if k exceeds
them. Every row keeps expected multiplicity k/N, so the estimate stays unbiased, and when k is a
multiple of N the sketch is exact (the full transform, by Parseval), so small inputs cost no
variance. When N > 16 k, draws are with replacement: the finite-population correction 1 - k/N
is then above 0.94, and a permutation of N would cost O(N) for nothing.

(Contiguous blocks of rows at a random offset avoid the gather and are unbiased too, but they
only decorrelate input coordinates that are far apart: on inputs with adjacent large coordinates,
such as exact monomial features, their error did not fall with k. NOTES.md.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random
from ntkfeat._pytree import pytree_dataclass

_PERMUTE_BELOW = 16  # permute when population <= this many times k


def fft_length(d: int) -> int:
    """The smallest 7-smooth integer (2^a 3^b 5^c 7^e) >= d."""
    if d < 1:
        raise ValueError(f"length must be >= 1, got {d}")
    n = d
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


class HartleyRows(NamedTuple):
    """Gathered rows p of the Hartley transform, stored as H[p] = Re r[index] + imag_sign * Im r[index]
    where r = rfft(x)."""

    index: jax.Array  # (k,) int32 in [0, N // 2]
    imag_sign: jax.Array  # (k,) float, -1 for p <= N // 2 else +1


@pytree_dataclass(meta=("fft_len",))
class SRHTParams:
    signs: jax.Array  # (d,) +-1
    rows: HartleyRows  # k rows of the length-fft_len transform
    fft_len: int

    @property
    def in_dim(self) -> int:
        return self.signs.shape[0]

    @property
    def out_dim(self) -> int:
        return self.rows.index.shape[0]


class TensorSRHTParams(NamedTuple):
    left: SRHTParams  # signs (d1,), rows (k,)
    right: SRHTParams  # signs (d2,), rows (k,)


def stratified_indices(key: jax.Array, population: int, k: int) -> jax.Array:
    """k indices into range(population): a tiled random permutation (with replacement if huge)."""
    if population < 1 or k < 1:
        raise ValueError(f"need population >= 1 and k >= 1, got {population}, {k}")
    if population > _PERMUTE_BELOW * k:
        return _random.randint(key, (k,), population)
    return _random.permutation(key, population)[np.arange(k) % population]


def stratified_pairs(key: jax.Array, n1: int, n2: int, k: int) -> tuple:
    """k index pairs (i, j) into range(n1) x range(n2), drawn as `stratified_indices` of the flat
    index i n2 + j. Where n1 n2 does not fit an int32 (inputs wider than about 46,000 make a
    TensorSRHT of two such transforms reach 2^31 pairs) the pairs are drawn with replacement, i
    and j independently: the same uniform law on the product, and no permutation of it is due
    (n1 n2 > 16 k)."""
    if n1 * n2 < 2**31:
        flat = stratified_indices(key, n1 * n2, k)
        return flat // n2, flat % n2
    k1, k2 = _random.split(key, 2)
    return _random.randint(k1, (k,), n1), _random.randint(k2, (k,), n2)


def hartley_rows(rows, n: int, dtype=jnp.float32) -> HartleyRows:
    """Maps Hartley rows p in [0, n) to positions in rfft's output (see HartleyRows).

    Concrete rows (an eager `init_fn`) are mapped with NumPy: the same integers and signs, without
    compiling a handful of small XLA programs for every distinct number of rows of a sketch tree."""
    if not isinstance(rows, jax.core.Tracer):
        rows = np.asarray(rows, np.int64)
        upper = rows > n // 2
        index = np.where(upper, n - rows, rows).astype(np.int32)
        return HartleyRows(jnp.asarray(index), jnp.asarray(np.where(upper, 1.0, -1.0), dtype))
    rows = jnp.asarray(rows, jnp.int32)
    upper = rows > n // 2
    index = jnp.where(upper, n - rows, rows)
    imag_sign = jnp.where(upper, 1.0, -1.0)
    return HartleyRows(index.astype(jnp.int32), imag_sign.astype(dtype))


def hartley(x: jax.Array, n: int) -> jax.Array:
    """The unnormalized discrete Hartley transform of x zero-padded to n, along the last axis:
    H[p] = Re r[p] - Im r[p] for p <= n // 2 and Re r[n - p] + Im r[n - p] above, r = rfft(x)."""
    r = jnp.fft.rfft(x, n=n, axis=-1)
    low = r.real - r.imag
    high = (r.real + r.imag)[..., 1 : (n + 1) // 2][..., ::-1]
    return jnp.concatenate([low, high], axis=-1)


def real_dft_weights(n: int) -> np.ndarray:
    """(n,) the scale of each output of `real_dft` that makes it orthonormal: 1 / sqrt(n) for the
    real parts at frequency 0 (and n / 2 when n is even), sqrt(2 / n) elsewhere."""
    w = np.full(n, np.sqrt(2.0 / n))
    w[0] = np.sqrt(1.0 / n)
    if n % 2 == 0:
        w[n // 2] = np.sqrt(1.0 / n)
    return w


def real_dft(x: jax.Array, n: int, weights=None) -> jax.Array:
    """An orthogonal map of x zero-padded to n, along the last axis: the real DFT basis
    [Re r_0 .. Re r_(n/2), Im r_1 .. Im r_((n-1)/2)] of r = rfft(x), each output times `weights`
    (default `real_dft_weights(n)`, which makes the map orthonormal; callers fold other
    per-coordinate factors into them). Like the Hartley transform, but without its reversal and
    sums: 1.4-2x one rfft on a CPU instead of 2.4x."""
    r = jnp.fft.rfft(x, n=n, axis=-1)
    w = real_dft_weights(n) if weights is None else weights
    return jnp.concatenate([r.real, r.imag[..., 1 : (n + 1) // 2]], axis=-1) * jnp.asarray(w, x.dtype)


def hartley_gather(r: jax.Array, rows: HartleyRows) -> jax.Array:
    """Hartley coefficients at `rows` from r = rfft(x) (see `HartleyRows`). One complex gather:
    on a CPU it costs about half of gathering the real and imaginary parts apart."""
    g = r.at[..., rows.index].get(mode="promise_in_bounds")  # rows are in range by construction
    return g.real + rows.imag_sign.astype(g.real.dtype) * g.imag


def hartley_at(x: jax.Array, rows: HartleyRows, fft_len: int) -> jax.Array:
    """H(x)[rows] along the last axis, x zero-padded to fft_len (unnormalized Hartley transform)."""
    return hartley_gather(jnp.fft.rfft(x, n=fft_len, axis=-1), rows)


def split_proportional(total: int, weights, minimum: int = 1, caps=None) -> list[int]:
    """Integer parts of `total` in proportion to `weights`, each in [minimum, cap]; the remainder
    is handed out (or the excess taken back) one unit at a time from the largest weights. The
    parts sum to `total`, or to sum(caps) when that is less."""
    w = np.maximum(np.asarray(weights, np.float64), 0.0)
    w = np.ones_like(w) if w.sum() <= 0 else w
    target = total if caps is None else int(min(total, sum(int(c) for c in caps)))
    caps = np.full(len(w), target) if caps is None else np.asarray(caps, np.int64)
    if minimum * len(w) > target:
        raise ValueError(f"cannot split {target} into {len(w)} parts of at least {minimum}")
    parts = np.minimum(np.maximum(np.floor(total * w / w.sum()).astype(np.int64), minimum), caps)
    order = np.argsort(-w)
    i = 0
    while parts.sum() != target:
        k = order[i % len(order)]
        if parts.sum() < target and parts[k] < caps[k]:
            parts[k] += 1
        elif parts.sum() > target and parts[k] > minimum:
            parts[k] -= 1
        i += 1
    return [int(p) for p in parts]


def _signed_rows(key, in_dim: int, rows, dtype) -> SRHTParams:
    n = fft_length(in_dim)
    signs = jnp.asarray(_random.rademacher(key, (in_dim,)), dtype)
    return SRHTParams(signs, hartley_rows(rows, n, dtype), n)


def srht_init(key: jax.Array, in_dim: int, out_dim: int, dtype=jnp.float32) -> SRHTParams:
    """Signs and stratified rows for an SRHT from in_dim to out_dim."""
    _check_dims(in_dim=in_dim, out_dim=out_dim)
    k_signs, k_rows = _random.split(key, 2)
    rows = stratified_indices(k_rows, fft_length(in_dim), out_dim)
    return _signed_rows(k_signs, in_dim, rows, dtype)


def srht(params: SRHTParams, x: jax.Array) -> jax.Array:
    """SRHT along the last axis: (..., d) -> (..., k), with E <S x, S y> = <x, y>."""
    _check_last_dim(x, params.in_dim, "srht")
    k = params.out_dim
    return hartley_at(x * params.signs.astype(x.dtype), params.rows, params.fft_len) * (1.0 / k) ** 0.5


def shared_rows_init(key: jax.Array, source: SRHTParams, out_dim: int, dtype=jnp.float32) -> HartleyRows:
    """Rows for another SRHT of the same signed transform as `source` (see `shared_srht`)."""
    _check_dims(out_dim=out_dim)
    return hartley_rows(stratified_indices(key, source.fft_len, out_dim), source.fft_len, dtype)


def shared_srht(rows: HartleyRows, source: SRHTParams, x: jax.Array) -> jax.Array:
    """An SRHT of x that reuses `source`'s signs and FFT length with its own rows.

    When `source` is applied to the same x in the same computation, XLA computes the FFT once
    (common-subexpression elimination), so a second sketch of x costs only its row gather.
    The two sketches are correlated, and each is unbiased.
    """
    _check_last_dim(x, source.in_dim, "shared_srht")
    k = rows.index.shape[0]
    return hartley_at(x * source.signs.astype(x.dtype), rows, source.fft_len) * (1.0 / k) ** 0.5


def random_rotation(signs: jax.Array, x: jax.Array) -> jax.Array:
    """An orthogonal map of x (..., d) -> (..., N), N = fft_length(d): the orthonormal Hartley
    transform H(D x) / sqrt(N) of the sign-flipped, zero-padded x.

    Inner products are kept exactly; with random signs every output coordinate carries about
    |x|^2 / N (the vector is spread).
    """
    n = fft_length(x.shape[-1])
    return hartley(x * signs.astype(x.dtype), n) * (1.0 / n) ** 0.5


def tensor_srht_init(
    key: jax.Array, left_dim: int, right_dim: int, out_dim: int, dtype=jnp.float32
) -> TensorSRHTParams:
    """Signs and stratified row pairs for a TensorSRHT of (left_dim) x (right_dim) -> out_dim."""
    _check_dims(left_dim=left_dim, right_dim=right_dim, out_dim=out_dim)
    k1, k2, k3 = _random.split(key, 3)
    n1, n2 = fft_length(left_dim), fft_length(right_dim)
    rows1, rows2 = stratified_pairs(k3, n1, n2, out_dim)
    return TensorSRHTParams(_signed_rows(k1, left_dim, rows1, dtype), _signed_rows(k2, right_dim, rows2, dtype))


def tensor_srht(params: TensorSRHTParams, x: jax.Array, y: jax.Array) -> jax.Array:
    """TensorSRHT of x (..., d1) and y (..., d2) -> (..., k), sketching x (x) y."""
    left, right = params.left, params.right
    _check_last_dim(x, left.in_dim, "tensor_srht (left)")
    _check_last_dim(y, right.in_dim, "tensor_srht (right)")
    out = hartley_at(x * left.signs.astype(x.dtype), left.rows, left.fft_len)
    out = out * hartley_at(y * right.signs.astype(y.dtype), right.rows, right.fft_len)
    return out * (1.0 / left.out_dim) ** 0.5


def _check_dims(**dims: int) -> None:
    for name, value in dims.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_last_dim(x, expected: int, where: str) -> None:
    if x.shape[-1] != expected:
        raise ValueError(f"{where}: input's last axis has size {x.shape[-1]}, expected {expected}")

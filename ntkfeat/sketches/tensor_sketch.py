"""TensorSketch (Pham and Pagh, 2013): CountSketches multiplied in the Fourier domain.

CountSketch C(x)[b] = sum_{a: h(a) = b} s(a) x_a with a random bucket h and sign s is unbiased
for <x, y>. The circular convolution of q independent CountSketches, computed as
irfft(prod_j rfft(C_j x)), is a CountSketch of x^(tensor q): E <TS(x), TS(y)> = <x, y>^q.
The older alternative to TensorSRHT; kept as a baseline.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ntkfeat import _random
from ntkfeat._pytree import pytree_dataclass


class CountSketchParams(NamedTuple):
    buckets: jax.Array  # (d,) int32 in [0, m)
    signs: jax.Array  # (d,) +-1


@pytree_dataclass(meta=("out_dim",))
class TensorSketchParams:
    count_sketches: tuple[CountSketchParams, ...]  # one per factor of the tensor power
    out_dim: int


def count_sketch_init(key: jax.Array, in_dim: int, out_dim: int, dtype=jnp.float32) -> CountSketchParams:
    kb, ks = _random.split(key, 2)
    buckets = jnp.asarray(_random.randint(kb, (in_dim,), out_dim), jnp.int32)
    return CountSketchParams(buckets, jnp.asarray(_random.rademacher(ks, (in_dim,)), dtype))


def count_sketch(params: CountSketchParams, x: jax.Array, out_dim: int) -> jax.Array:
    """CountSketch along the last axis: (..., d) -> (..., out_dim)."""
    if x.shape[-1] != params.buckets.shape[0]:
        raise ValueError(f"count_sketch: last axis {x.shape[-1]} != {params.buckets.shape[0]}")
    out = jnp.zeros(x.shape[:-1] + (out_dim,), x.dtype)
    return out.at[..., params.buckets].add(x * params.signs)


def tensor_sketch_init(
    key: jax.Array, in_dim: int, degree: int, out_dim: int, dtype=jnp.float32
) -> TensorSketchParams:
    if degree < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    keys = _random.split(key, degree)
    return TensorSketchParams(tuple(count_sketch_init(k, in_dim, out_dim, dtype) for k in keys), out_dim)


def tensor_sketch(params: TensorSketchParams, x: jax.Array) -> jax.Array:
    """TensorSketch of x^(tensor q) along the last axis: (..., d) -> (..., out_dim)."""
    m = params.out_dim
    prod = None
    for cs in params.count_sketches:
        f = jnp.fft.rfft(count_sketch(cs, x, m), axis=-1)
        prod = f if prod is None else prod * f
    return jnp.fft.irfft(prod, n=m, axis=-1)

"""Random draws for parameter creation, from explicit JAX keys: fast eagerly, traceable too.

Every draw is a function of blocks of `jax.random.bits(fold_in(key, i))` of one fixed size:

- with a concrete key (the usual `init_fn` call) the blocks come from one compiled function and
  are shaped on the host with NumPy. Eager `jax.random` calls would compile once per output shape
  (0.2-0.4 s each on CPU) and a sketch needs dozens of differently shaped draws;
- with a traced key (`init_fn` under `jax.jit` or `jax.vmap`, e.g. an ensemble of feature maps
  from a batch of keys) the same blocks are traced and shaped with jax.numpy by the same
  formulas (integers exactly, floats to the last bit or two).

So the same key gives the same parameters on every call, device and process, traced or not.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_BLOCK = 1 << 16


def _traced(key) -> bool:
    return isinstance(key, jax.core.Tracer)


@jax.jit
def _block_bits(key, index):
    return jax.random.bits(jax.random.fold_in(key, index), (_BLOCK,), jnp.uint32)


@jax.jit
def _fold_in(key, index):
    return jax.random.fold_in(key, index)


def split(key, num: int) -> list:
    """`num` independent keys derived from `key` (fold_in of 0..num-1)."""
    if _traced(key):
        return [jax.random.fold_in(key, i) for i in range(num)]
    return [_fold_in(key, i) for i in range(num)]


def bits(key, n: int):
    """n uniformly random uint32 words."""
    blocks = max(-(-n // _BLOCK), 1)
    if _traced(key):
        return jnp.concatenate([jax.random.bits(jax.random.fold_in(key, i), (_BLOCK,), jnp.uint32)
                                for i in range(blocks)])[:n]
    return np.concatenate([np.asarray(_block_bits(key, i)) for i in range(blocks)])[:n]


def _xp(key):
    return jnp if _traced(key) else np


def uniform(key, shape):
    """Uniform on [0, 1) with 24 random bits (exact in float32 on every backend)."""
    xp, n = _xp(key), int(np.prod(shape))
    return ((bits(key, n) >> 8).astype(xp.float32) * xp.float32(2.0**-24)).reshape(shape)


def rademacher(key, shape):
    """+-1 with equal probability."""
    xp, n = _xp(key), int(np.prod(shape))
    return (1.0 - 2.0 * (bits(key, n) & 1).astype(xp.float32)).reshape(shape)


def normal(key, shape):
    """Standard normal by Box-Muller from 24-bit uniforms."""
    xp, shape = _xp(key), tuple(int(s) for s in shape)
    n = int(np.prod(shape))
    u = uniform(key, (2, (n + 1) // 2))
    r = xp.sqrt(-2.0 * xp.log1p(-u[0]))
    z = xp.concatenate([r * xp.cos(2 * np.pi * u[1]), r * xp.sin(2 * np.pi * u[1])])
    return z[:n].reshape(shape)


def randint(key, shape, high: int):
    """Integers uniform on [0, high): (the top 32 random bits times high) >> 32, by 16-bit limbs
    (bias below high / 2^32), exact in 32-bit integer arithmetic on every backend."""
    xp, n = _xp(key), int(np.prod(shape))
    if not 1 <= high < 2**31:
        raise ValueError(f"randint: high={high} must be in [1, 2^31)")
    b = bits(key, n)
    lo, hi = b & 0xFFFF, b >> 16  # b = hi 2^16 + lo
    h_lo, h_hi = high & 0xFFFF, high >> 16
    u32 = xp.uint32
    # floor(b * high / 2^32) from the 16-bit pieces, without overflow.
    mid = (lo * u32(h_lo) >> 16) + (lo * u32(h_hi) & 0xFFFF) + (hi * u32(h_lo) & 0xFFFF)
    out = hi * u32(h_hi) + (lo * u32(h_hi) >> 16) + (hi * u32(h_lo) >> 16) + (mid >> 16)
    return out.astype(xp.int32).reshape(shape)


def permutation(key, n: int):
    """A uniformly random permutation of range(n): a stable argsort of random 32-bit words."""
    words = bits(key, n)
    if _traced(key):
        return jnp.argsort(words, stable=True).astype(jnp.int32)
    return np.argsort(words, kind="stable").astype(np.int32)


@functools.partial(jax.jit, static_argnames="n")
def _gamma(key, alpha, n):
    return jax.random.gamma(key, alpha, (n,), jnp.float32)


def chi(key, dof: float, n: int):
    """n draws of a chi distribution with `dof` degrees of freedom: sqrt(2 Gamma(dof / 2))."""
    blocks = -(-n // _BLOCK)
    if _traced(key):
        g = jnp.concatenate([jax.random.gamma(jax.random.fold_in(key, i), dof / 2.0, (_BLOCK,), jnp.float32)
                             for i in range(blocks)])
        return jnp.sqrt(2.0 * g[:n])
    g = np.concatenate([np.asarray(_gamma(_fold_in(key, i), jnp.float32(dof / 2.0), _BLOCK)) for i in range(blocks)])
    return np.sqrt(2.0 * g[:n])


def haar_orthogonal(key, dim: int):
    """A Haar-distributed random orthogonal (dim, dim) matrix (QR of a Gaussian, signs fixed)."""
    xp = _xp(key)
    q, r = xp.linalg.qr(normal(key, (dim, dim)))
    return q * xp.sign(xp.diagonal(r))

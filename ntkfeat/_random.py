"""Random draws for parameter creation, from explicit JAX keys, without per-shape compilation.

Eager `jax.random` calls compile once per output shape (0.2-0.4 s each on CPU), and a sketch
needs dozens of differently shaped draws. Here every draw is made of fixed-size blocks of
`jax.random.bits(fold_in(key, i))`, one compiled function for all shapes, and shaped on the host
with NumPy. The same key gives the same parameters on every call, device and process.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_BLOCK = 1 << 16


@jax.jit
def _block_bits(key, index):
    return jax.random.bits(jax.random.fold_in(key, index), (_BLOCK,), jnp.uint32)


@jax.jit
def _fold_in(key, index):
    return jax.random.fold_in(key, index)


def split(key, num: int) -> list:
    """`num` independent keys derived from `key` (like jax.random.split, one compilation)."""
    return [_fold_in(key, i) for i in range(num)]


def bits(key, n: int) -> np.ndarray:
    """n uniformly random uint32 words."""
    blocks = -(-n // _BLOCK)
    out = np.concatenate([np.asarray(_block_bits(key, i)) for i in range(max(blocks, 1))])
    return out[:n]


def uniform(key, shape) -> np.ndarray:
    """float64 uniform on [0, 1) with 53 random bits."""
    n = int(np.prod(shape))
    b = bits(key, 2 * n).astype(np.uint64)
    words = (b[:n] << np.uint64(21)) ^ (b[n:] >> np.uint64(11))
    return ((words & np.uint64((1 << 53) - 1)).astype(np.float64) * 2.0**-53).reshape(shape)


def rademacher(key, shape) -> np.ndarray:
    n = int(np.prod(shape))
    return (1.0 - 2.0 * (bits(key, n) & 1)).astype(np.float64).reshape(shape)


_DEVICE_NORMAL_ABOVE = 1 << 20


@functools.partial(jax.jit, static_argnames="shape")
def _device_normal(key, shape):
    return jax.random.normal(key, shape, jnp.float32)


def normal(key, shape) -> np.ndarray:
    """Standard normal: float64 Box-Muller on the host for small draws; float32 from
    `jax.random.normal` above 2^20 values, where generation outweighs one compilation."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape))
    if n > _DEVICE_NORMAL_ABOVE:
        return np.asarray(_device_normal(key, shape))
    u = uniform(key, (2, (n + 1) // 2))
    r = np.sqrt(-2.0 * np.log1p(-u[0]))
    z = np.concatenate([r * np.cos(2 * np.pi * u[1]), r * np.sin(2 * np.pi * u[1])])
    return z[:n].reshape(shape)


def randint(key, shape, high: int) -> np.ndarray:
    """Integers uniform on [0, high) (64-bit multiply-shift, bias below 2^-32)."""
    n = int(np.prod(shape))
    b = bits(key, 2 * n).astype(np.uint64)
    words = (b[:n] << np.uint64(32)) | b[n:]
    return (words % np.uint64(high)).astype(np.int64).reshape(shape)


def permutation(key, n: int) -> np.ndarray:
    """A uniformly random permutation of range(n)."""
    return np.argsort(uniform(key, (n,)), kind="stable")


@functools.partial(jax.jit, static_argnames="n")
def _gamma(key, alpha, n):
    return jax.random.gamma(key, alpha, (n,), jnp.float32)


def chi(key, dof: float, n: int) -> np.ndarray:
    """n draws of a chi distribution with `dof` degrees of freedom: sqrt(2 Gamma(dof / 2))."""
    blocks = -(-n // _BLOCK)
    g = np.concatenate(
        [np.asarray(_gamma(_fold_in(key, i), jnp.float32(dof / 2.0), _BLOCK)) for i in range(blocks)]
    )
    return np.sqrt(2.0 * g[:n].astype(np.float64))


def haar_orthogonal(key, dim: int) -> np.ndarray:
    """A Haar-distributed random orthogonal (dim, dim) matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(normal(key, (dim, dim)))
    return q * np.sign(np.diagonal(r))

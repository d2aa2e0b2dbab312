"""Norms, square roots and rescaling of feature vectors, safe for gradients and extreme scales.

Feature maps factor every input's norm out (homogeneity, ALGORITHMS.md section 3), so norms and
square roots sit on every path from x to the features. Two things go wrong with the plain ones:

- Gradients. d|v| = <v, dv> / |v| and d sqrt(q) = dq / (2 sqrt q) are 0 / 0 at a zero vector
  (a zero row of a bias-free stack), and JAX's where-guards do not stop the NaN (the unused
  branch's gradient is still inf times 0). `norm` has a custom JVP that is 0 there and
  `safe_sqrt` takes the root of a guarded argument: the features of a zero row are zero in a
  neighbourhood of directions and homogeneous maps are flat to second order there, so 0 is the
  gradient of the limit of what the map computes.
- Range. sum(v^2) leaves float32 for entries below ~1e-19 or above ~1e19. `norm` scales by the
  largest entry first, so it is exact wherever |v| itself is representable.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def safe_sqrt(q):
    """sqrt(max(q, 0)) whose derivative is 0 where q <= 0 (not NaN), for NumPy or JAX arrays."""
    xp = np if isinstance(q, (np.ndarray, np.generic, float, int)) else jnp
    positive = q > 0
    return xp.where(positive, xp.sqrt(xp.where(positive, q, 1.0)), 0.0)


def power_of_two_scale(m: jax.Array) -> jax.Array:
    """A power of two s within a factor 2 of m > 0 (1 where m = 0) whose reciprocal is a normal
    number: v / s is then exact, and never flushed to zero as 1 / m is for m near the dtype's
    largest value (XLA flushes subnormals on CPU; rows at 2e38 lost every feature)."""
    info = jnp.finfo(m.dtype)
    _, e = jnp.frexp(jnp.where(m > 0, m, 1.0))
    e = jnp.clip(e, int(info.minexp) + 2, int(info.maxexp) - 2)
    return jax.lax.stop_gradient(jnp.ldexp(jnp.ones_like(m), e))


def _scaled(v: jax.Array, axis: int):
    s = power_of_two_scale(jnp.max(jnp.abs(v), axis=axis, keepdims=True))
    return v / s, s


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def norm(v: jax.Array, axis: int = -1) -> jax.Array:
    """The Euclidean norm along `axis`, computed as s |v / s| with s a power of two near
    max |v| (no under- or overflow of the squares), with derivative <v, dv> / |v| (0 at v = 0)."""
    w, s = _scaled(v, axis)
    return jnp.squeeze(s, axis) * jnp.sqrt(jnp.sum(w * w, axis=axis))


@norm.defjvp
def _norm_jvp(axis, primals, tangents):
    (v,), (dv,) = primals, tangents
    w, s = _scaled(v, axis)
    wn = jnp.sqrt(jnp.sum(w * w, axis=axis))
    # <w, dv> / |w|: the unit direction's component of dv, without overflow.
    dn = jnp.sum(w * dv, axis=axis) / jnp.where(wn > 0, wn, 1.0)
    return jnp.squeeze(s, axis) * wn, jnp.where(wn > 0, dn, 0.0)


def unit(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(v / |v|, |v|) along the last axis, at any scale (zero rows: zero direction, norm 0)."""
    w, s = _scaled(v, -1)
    wn = norm(w)
    u = w / jnp.where(wn > 0, wn, 1.0)[..., None]
    return u, jnp.squeeze(s, -1) * wn


def sqrt0(s: jax.Array) -> jax.Array:
    """sqrt(s) for s >= 0 with derivative 0 at s = 0 (not inf): a norm computed from its square
    then has a finite gradient at a zero input, where the square's own derivative is 0."""
    positive = s > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, s, 1.0)), 0.0)


def rescale(v: jax.Array, target: jax.Array) -> jax.Array:
    """v scaled along its last axis to norm `target` (zero vectors stay zero)."""
    n = norm(v)
    return v * (jnp.asarray(target, v.dtype) / jnp.where(n > 0, n, 1.0))[..., None]


def rescale_blocks(v: jax.Array, widths, targets: jax.Array) -> jax.Array:
    """v (..., sum(widths)) with its consecutive blocks of `widths` scaled to the norms `targets`
    (..., len(widths)). The blocks' squared norms come from one matmul with a 0/1 indicator: a
    norm per slice fused poorly with the gathers producing the slices and made the whole
    `dot_product_features` call 1.5x slower on CPU; this costs ~3%."""
    widths = [int(w) for w in widths]
    indicator = np.zeros((sum(widths), len(widths)), np.float32)
    edges = np.cumsum([0] + widths)
    for i in range(len(widths)):
        indicator[edges[i] : edges[i + 1], i] = 1.0
    squares = jnp.dot(v * v, jnp.asarray(indicator, v.dtype), precision=jax.lax.Precision.HIGHEST)
    factors = jnp.asarray(targets, v.dtype) / jnp.sqrt(jnp.where(squares > 0, squares, 1.0))
    expanded = [jnp.broadcast_to(factors[..., i : i + 1], v.shape[:-1] + (w,)) for i, w in enumerate(widths)]
    return v * jnp.concatenate(expanded, axis=-1)

"""Random Fourier features of the Gaussian kernel (Rahimi & Recht, NIPS 2007).

    k(x, y) = exp(-|x - y|^2 / (2 sigma^2)) = E_w cos(w.(x - y)),   w ~ N(0, I / sigma^2)

With m = dim // 2 frequencies w_1..w_m, the cos/sin pair form

    phi(x) = sqrt(2 / dim) [cos(W^T x), sin(W^T x)]

gives phi(x).phi(y) = (1 / m) sum_j cos(w_j.(x - y)) for even dim: unbiased, with phi(x).phi(x) = 1
exactly, and lower variance than the random-phase form sqrt(2 / dim) cos(W^T x + b) (Sutherland &
Schneider, UAI 2015). An odd dim adds one random-phase feature sqrt(2 / dim) cos(w_0.x + b),
b ~ U[0, 2 pi), whose expected product is k / dim; the pairs contribute 2 m / dim of k, so the
sum stays unbiased.

Images (n, H, W, C) are flattened: the kernel is the Gaussian kernel of the flattened vectors.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random, _trig
from ntkfeat._norms import power_of_two_scale
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.baselines._common import check_batch, check_dim, check_params, check_positive, check_train, default_dtype, map_rows
from ntkfeat.network import check_inputs

MEDIAN_ROWS = 1000  # rows of the median-heuristic subsample: ~5e5 pairs, a stable median
_KERNELS = ("gaussian",)


@pytree_dataclass(meta=("input_shape",))
class RandomFourierParams:
    """Frequencies (already divided by the bandwidth) and the phase of the odd feature."""

    frequencies: jax.Array  # (d, dim // 2 + dim % 2), d = prod(input_shape)
    phase: jax.Array  # (dim % 2,) in [0, 2 pi)
    bandwidth: jax.Array  # () sigma
    input_shape: tuple[int, ...]

    @property
    def out_dim(self) -> int:
        pairs = self.frequencies.shape[1] - self.phase.shape[0]
        return 2 * pairs + self.phase.shape[0]


def median_bandwidth(x, key=None, max_rows: int = MEDIAN_ROWS) -> float:
    """The median heuristic: the median Euclidean distance over distinct pairs of rows.

    Computed in float64 on at most `max_rows` rows: all of them when there are that few, else the
    first `max_rows` of the random permutation `_random.permutation(key, n)` (key required).
    Duplicate rows give zero distances; if they make the median zero, the median of the nonzero
    distances is used instead.

    Args:
      x: (n, d) or (n, H, W, C) inputs (flattened per row), n >= 2.
      key: JAX key for the subsample, needed only when n > max_rows.
      max_rows: subsample size.

    Returns:
      sigma > 0 (float).
    """
    x = check_train(x, "x")
    max_rows = check_dim("max_rows", max_rows)
    n = x.shape[0]
    if n < 2:
        raise ValueError("the median heuristic needs at least 2 rows")
    if n > max_rows:
        if key is None:
            raise ValueError(f"x has {n} > max_rows = {max_rows} rows; pass a key for the subsample")
        x = np.asarray(x)[np.sort(np.asarray(_random.permutation(key, n))[:max_rows])]
    z = np.asarray(x, np.float64).reshape(len(x), -1)
    sq = np.sum(z * z, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * z @ z.T
    dist = np.sqrt(np.maximum(d2[np.triu_indices(len(z), k=1)], 0.0))
    median = float(np.median(dist))
    if median == 0.0:
        nonzero = dist[dist > 0]
        if nonzero.size == 0:
            raise ValueError("all rows are identical: the median heuristic has no scale to pick")
        median = float(np.median(nonzero))
    return median


def gaussian_kernel(x1, x2=None, bandwidth: float = 1.0) -> jax.Array:
    """The exact Gaussian kernel exp(-|x1_i - x2_j|^2 / (2 bandwidth^2)), (n1, n2).

    Args:
      x1: (n1, d) or (n1, H, W, C) (flattened per row).
      x2: (n2, ...) with the same row shape, default x1.
      bandwidth: sigma > 0.
    """
    bandwidth = check_positive("bandwidth", bandwidth)
    x1 = check_inputs(x1, None, "x1")
    x2 = x1 if x2 is None else check_inputs(x2, None, "x2")
    if tuple(x1.shape[1:]) != tuple(x2.shape[1:]):
        raise ValueError(f"x1 and x2 must have the same shape per row, got {x1.shape} and {x2.shape}")
    return _gaussian(jnp.asarray(x1).reshape(x1.shape[0], -1), jnp.asarray(x2).reshape(x2.shape[0], -1), bandwidth)


@jax.jit
def _gaussian(x1, x2, bandwidth):
    # Both sets divided by one power of two near their largest entry: the squares below neither
    # under- nor overflow (inputs at 1e19 or 1e-20 with a matching bandwidth gave NaN), and
    # the scale comes back in the exponent, as (|a - b| c / bandwidth)^2.
    c = power_of_two_scale(jnp.maximum(jnp.max(jnp.abs(x1)), jnp.max(jnp.abs(x2))))
    x1, x2 = x1 / c, x2 / c
    # |a - b|^2 by expansion: one matmul; clipped because cancellation can make it slightly < 0.
    # Full float32 matmul: TF32 (a GPU's default) loses ~5e-4 of the kernel to cancellation.
    cross = jnp.dot(x1, x2.T, precision=jax.lax.Precision.HIGHEST)
    d2 = jnp.maximum(jnp.sum(x1 * x1, 1)[:, None] + jnp.sum(x2 * x2, 1)[None, :] - 2.0 * cross, 0.0)
    # A zero distance stays 0 whatever the ratio; an overflowing one gives exp(-inf) = 0.
    r = jnp.where(d2 > 0, jnp.sqrt(jnp.where(d2 > 0, d2, 1.0)) * (c / bandwidth), 0.0)
    return jnp.exp(-0.5 * r * r)


def fourier_features(params: RandomFourierParams, x: jax.Array) -> jax.Array:
    """Features of one batch (n, *input_shape) -> (n, dim); no checks, no batching."""
    pairs = params.frequencies.shape[1] - params.phase.shape[0]
    z = x.reshape(x.shape[0], -1).astype(params.frequencies.dtype) @ params.frequencies
    sin, cos = _trig.sincos(z[:, :pairs])
    parts = [cos, sin, _trig.cos(z[:, pairs:] + params.phase)]
    return jnp.concatenate(parts, axis=1) * np.sqrt(2.0 / params.out_dim)


_fourier_jit = jax.jit(fourier_features)


def random_fourier(dim: int, bandwidth: float | None = None, kernel: str = "gaussian"):
    """Random Fourier features of the Gaussian kernel exp(-|x - y|^2 / (2 sigma^2)).

    phi(x) = sqrt(2 / dim) [cos(W^T x), sin(W^T x)] with dim // 2 columns w ~ N(0, I / sigma^2)
    (plus one random-phase feature when dim is odd; see the module docstring), so that
    E phi(x).phi(y) = k(x, y) and phi(x).phi(x) = 1 for even dim.

    Args:
      dim: number of features, >= 1.
      bandwidth: sigma; None: the median heuristic on x_train (`median_bandwidth`, on a subsample of
        at most 1000 rows drawn from init_fn's key).
      kernel: 'gaussian' (the only one).

    Returns:
      (init_fn, feature_fn):
        init_fn(key, x_train) -> RandomFourierParams (x_train sets the input shape and, if
          bandwidth is None, the bandwidth).
        feature_fn(params, x, *, batch_size=None) -> (n, dim) features, streamed in batches of
          batch_size rows (default 4096).
    """
    dim = check_dim("dim", dim)
    if bandwidth is not None:
        bandwidth = check_positive("bandwidth", bandwidth)
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {_KERNELS}, got {kernel!r}")

    def init_fn(key, x_train) -> RandomFourierParams:
        x = check_train(x_train)
        k_sub, k_freq, k_phase = _random.split(key, 3)
        sigma = median_bandwidth(x, k_sub) if bandwidth is None else bandwidth
        d = int(np.prod(x.shape[1:]))
        odd = dim % 2
        w = np.asarray(_random.normal(k_freq, (d, dim // 2 + odd)), np.float64) / sigma
        phase = 2.0 * np.pi * np.asarray(_random.uniform(k_phase, (odd,)), np.float64)
        dtype = default_dtype()
        return RandomFourierParams(
            jnp.asarray(w, dtype), jnp.asarray(phase, dtype), jnp.asarray(sigma, dtype), tuple(x.shape[1:])
        )

    def feature_fn(params: RandomFourierParams, x, *, batch_size: int | None = None) -> jax.Array:
        check_params(params, RandomFourierParams, "random_fourier", dim, "features")
        x = check_batch(x, params.input_shape)
        return map_rows(functools.partial(_fourier_jit, params), x, batch_size or 4096)

    return init_fn, feature_fn

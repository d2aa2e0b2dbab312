"""One architecture description, three views: parameters, features, exact kernel.

    init_fn, feature_fn, kernel_fn = nf.serial(nf.Dense(512, W_std=2**0.5), nf.Relu(), nf.Dense(1))
    params = init_fn(key, (-1, d), nf.Sketch(dim=8192, degree=8))
    phi = feature_fn(params, x)          # (n, ~dim), phi @ phi.T ~ kernel_fn(x, x, 'ntk')
    K = kernel_fn(x, x, 'ntk')           # neural-tangents' exact kernel of the same layers

Parameters are a `FeatureMap` pytree: arrays are leaves, the architecture, the method and the
shapes are static, so `jax.jit(feature_fn)` compiles once per input shape and `feature_fn`
itself streams rows in fixed-size batches (one compilation for every batch). Every layer's
feature rule comes from the table in `ntkfeat.features.table`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _checks, _norms, _random, batching, compat
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.features import branching, linear, random_features, rows, sketch  # noqa: F401 (they register rules)
from ntkfeat.features.branching import ChildrenParams, CompressParams
from ntkfeat.features.oneshot_general import OneShotUnavailable
from ntkfeat.features.oneshot import (
    GeneralOneShotParams, OneShotParams, flat_layers, oneshot_apply, oneshot_init, oneshot_kernel_fn, oneshot_reason,
)
from ntkfeat.features.state import Branches, Features, Spec, input_features, input_spec
from ntkfeat.features.table import ApplyContext, InitContext, apply_layer, init_layer
from ntkfeat.layers.base import Layer
from ntkfeat.layers.activations import Activation, HomogeneousDual
from ntkfeat.layers.combinators import FanInConcat, FanInSum, FanOut, Parallel, Serial, check_layers
from ntkfeat.layers.linear import (
    Aggregate, AvgPool, Conv, Dense, Dropout, Flatten, GlobalAvgPool, GlobalSumPool, Identity, LayerNorm, SumPool,
)
from ntkfeat.layers.methods import RandomFeatures, Sketch

_GETS = ("ntk", "nngp")
# Memory for one batch's intermediates (bytes) where the device does not report its memory
# (CPU); on accelerators, an eighth of the device memory. The batch size follows. On a CPU the
# maps are bound by memory traffic, and batches whose intermediates stay near the last-level
# cache run faster (NOTES.md, batch budget): None takes the cache size (`cpu_cache_bytes`),
# clamped to [16, 64] MB, shared by the batches computed at once (`batching.CPU_WORKERS`: half
# each by default). An int here, or the environment variable NTKFEAT_BATCH_BYTES, sets it per batch.
DEFAULT_BATCH_BYTES = None
ENV_BATCH_BYTES = "NTKFEAT_BATCH_BYTES"
_CPU_BUDGET_RANGE = (16 << 20, 64 << 20)


@pytree_dataclass(meta=("layer", "method", "input_shape", "mode", "spec", "out_spec"))
class FeatureMap:
    """Parameters of a feature map: the root layer's parameters plus the static description."""

    params: ChildrenParams | OneShotParams | GeneralOneShotParams
    output_sketch: CompressParams | None  # final compression to `dim`
    layer: Serial  # the architecture
    method: Sketch | RandomFeatures
    input_shape: tuple[int, ...]  # one input, without the batch axis
    mode: str  # 'oneshot' or 'layerwise'
    spec: Spec  # the description of the inputs
    out_spec: Spec | None  # and of the outputs

    @property
    def out_dim(self) -> int:
        """Width of the NTK features."""
        if self.mode == "oneshot":
            return self.params.out_dim
        if self.output_sketch is not None and self.output_sketch.ntk is not None:
            return self.output_sketch.ntk.out_dim
        return max(self.out_spec.ntk_dim, 1)

    @property
    def layers(self) -> tuple:
        return self.layer.layers

    @property
    def power(self) -> float | None:
        """phi(c x) = c^power phi(x) for c > 0, or None when the map is not homogeneous."""
        if self.mode == "oneshot":
            return self.params.homogeneous_power
        return self.out_spec.power


def _default_dtype():
    return jnp.zeros((), dtype=float).dtype  # float64 under jax_enable_x64, else float32


def _check_input_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(_checks.integer("input_shape entry", s) for s in input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a tuple like (-1, d), (-1, nodes, C) or (-1, H, W, C), "
                         f"got {input_shape!r}") from None
    if len(shape) < 2:
        raise ValueError(f"input_shape {input_shape!r} must be (batch, features), (batch, nodes, channels) or "
                         "(batch, height, width, channels), with batch = -1 or any count")
    if any(s < 1 for s in shape[1:]):
        raise ValueError(f"input_shape {input_shape!r} has a non-positive non-batch dimension")
    return shape[1:]


def _check_method(method):
    if not isinstance(method, (Sketch, RandomFeatures)):
        raise TypeError(f"method must be nf.Sketch(...) or nf.RandomFeatures(...), got {method!r}")


def _all_layers(layer) -> list:
    if isinstance(layer, (Serial, Parallel)):
        return [inner for child in layer.layers for inner in _all_layers(child)]
    return [layer]


def root(layer) -> Serial:
    """The architecture as a top-level serial block."""
    if not isinstance(layer, Layer):
        check_layers([layer])
    return layer if isinstance(layer, Serial) else Serial((layer,))


def init_feature_map(layer, key, input_shape, method, dtype=None, x=None) -> FeatureMap:
    top = root(layer)
    _check_method(method)
    shape = _check_input_shape(input_shape)
    dtype = dtype or _default_dtype()
    layers = flat_layers(top)
    if isinstance(method, Sketch) and method.mode != "layerwise":
        reason = oneshot_reason(layers, shape)
        if reason is None and any(isinstance(l, Dense) and l.W_std == 0 for l in layers[1:]):
            # Its NTK is zero up to that layer's successors: no polynomial to fit (the layerwise
            # map gives the zero kernel exactly).
            reason = "a Dense after the first has W_std=0"
            if method.mode == "oneshot":
                raise ValueError(f"Sketch(mode='oneshot') does not apply: {reason}; use mode='layerwise'")
        if reason is None or method.mode == "oneshot":
            try:
                params = oneshot_init(layers, key, shape, method, dtype, x=x)
                return FeatureMap(params, None, top, method, shape, "oneshot", input_spec(shape, False), None)
            except OneShotUnavailable:
                if method.mode == "oneshot":
                    raise
    if isinstance(method, Sketch) and method.width is None and any(isinstance(l, Conv) for l in _all_layers(top)):
        # Convolutional stacks: the inner width defaults to dim / 2. With renormalized sketches
        # the CNTK error is the same as at width dim (NOTES.md) at 2.4x the speed.
        method = dataclasses.replace(method, width=max(2, method.dim // 2))
    spec = input_spec(shape, isinstance(method, Sketch) and method.renormalize)
    width = method.width or method.dim
    n = len(top.layers)
    # The layers use keys 0..n-1 of the root's split, the output sketch the next one.
    ctx = InitContext(method, width, dtype, where="network", top=True)
    params, out_spec = init_layer(top, key, spec, ctx)
    if isinstance(out_spec, Branches):
        raise ValueError(f"the network ends with {len(out_spec)} branches; merge them (FanInSum, FanInProd or "
                         "FanInConcat)")
    k_ntk, k_nngp = _random.split(_random.split(key, n + 1)[-1], 2)
    output_sketch = branching.CompressParams(
        _output_sketch(k_nngp, out_spec.nngp_dim, method.dim, dtype),
        _output_sketch(k_ntk, out_spec.ntk_dim, method.dim, dtype),
    )
    return FeatureMap(params, output_sketch, top, method, shape, "layerwise", spec, out_spec)


def _output_sketch(key, width: int, dim: int, dtype):
    # Any width beyond `dim` (a readout bias adds a coordinate) is brought to `dim` by one SRHT:
    # users size arrays by dim. Just above dim the SRHT keeps nearly all of its N rows, so it
    # adds little variance.
    from ntkfeat.sketches.srht import srht_init

    return srht_init(key, width, dim, dtype) if width > dim else None


def apply_feature_map(params: FeatureMap, x: jax.Array, get: str = "ntk", **kwargs) -> jax.Array:
    """Features of a batch x (n, *input_shape); no checks, no batching (see `compute_features`).

    A homogeneous map (phi(c x) = c^p phi(x): no biases, homogeneous activations) works on
    x / s, s each input's largest absolute entry, and multiplies the features by s^p: exact
    for any scale of the inputs, where squared norms of 1e-20 or 1e20 would leave float32."""
    power = params.power
    if power is None:
        return _apply(params, x, get, kwargs)
    pattern_power = _pattern_power(params.layer) if kwargs.get("pattern") is not None else None
    t = None
    if pattern_power:
        # phi(x, t A) = t^r phi(x, A) too (Aggregate is linear in the pattern): each graph's
        # pattern is brought near 1 and its scale put back, as the inputs' below.
        pattern = jnp.asarray(kwargs["pattern"])
        p_axes = tuple(range(1, pattern.ndim))
        t = _norms.power_of_two_scale(jnp.max(jnp.abs(pattern), axis=p_axes))
        kwargs = {**kwargs, "pattern": pattern / t.reshape((-1,) + (1,) * len(p_axes))}
    axes = tuple(range(1, x.ndim))
    # A constant to differentiation: phi(x) = s^p phi(x / s) for every s > 0, so the gradient
    # s^(p-1) phi'(x / s) is exact, and computed where x / s is well scaled. Through s it would
    # be a sum of two terms that cancel only approximately (off by up to 127% at 1e20).
    # A power of two: x / s is exact and its reciprocal is never flushed to zero.
    s = _norms.power_of_two_scale(jnp.max(jnp.abs(x), axis=axes))
    out = _apply(params, x / s.reshape((-1,) + (1,) * len(axes)), get, kwargs)
    factor = s if power == 1 else s**power
    if t is not None:  # both powers of two: their exponents add without over- or underflow between
        factor = jnp.exp2(power * jnp.log2(s) + pattern_power * jnp.log2(t))
    return out * factor.reshape((-1,) + (1,) * (out.ndim - 1)).astype(out.dtype)


def _pattern_power(layer):
    """r with phi(x, t A) = t^r phi(x, A) for t > 0 (A: the graph pattern), or None where the
    layers are not all positively homogeneous (in x and A). Per layer, (k, r): the output scales
    as c^k t^r when x scales by c and A by t; serial layers compose as (k1 k2, r1 k2 + r2)."""

    def degrees(l):
        if isinstance(l, (Serial, Parallel)):
            parts = [degrees(c) for c in l.layers]
            if any(p is None for p in parts):
                return None
            if isinstance(l, Parallel):  # each branch scales alike, or the sum is not homogeneous
                return parts[0] if all(p == parts[0] for p in parts) else None
            k, r = 1.0, 0.0
            for kc, rc in parts:
                k, r = k * kc, r * kc + rc
            return k, r
        if isinstance(l, Aggregate):
            return 1.0, 1.0
        if isinstance(l, (Dense, Conv)):
            return (1.0, 0.0) if l.bias == 0 else None
        if isinstance(l, (AvgPool, SumPool, GlobalAvgPool, GlobalSumPool, Flatten, Identity, Dropout, FanOut,
                          FanInSum, FanInConcat)):
            return 1.0, 0.0
        if isinstance(l, LayerNorm):
            return (0.0, 0.0) if l.eps == 0 else None
        if isinstance(l, Activation) and isinstance(l.dual(), HomogeneousDual):
            return float(l.dual().degree), 0.0
        return None

    out = degrees(layer)
    return None if out is None else out[1]


def _apply(params: FeatureMap, x, get: str, kwargs: dict):
    if params.mode == "oneshot":
        if get != "ntk":
            raise ValueError("one-shot NTK Sketch features approximate the NTK only; use Sketch(mode='layerwise') for "
                             "'nngp'")
        return oneshot_apply(params.params, x)
    f = _streamed(params, x, kwargs)
    if f is None:
        f = apply_layer(params.layer, params.params, params.spec, input_features(x), ApplyContext(params.method, kwargs))
    out = f.nngp if get == "nngp" else f.ntk
    if out is None:  # no Dense or Conv: the NTK is identically zero
        return jnp.zeros(x.shape[:-1] + (1,), x.dtype)
    sketch_ = getattr(params.output_sketch, get) if params.output_sketch is not None else None
    return branching.compress(sketch_, out, params.out_spec.renormalize)


def _streamed(params: FeatureMap, x, kwargs: dict) -> Features | None:
    """The output Features of a convolutional stack whose whole-image intermediates exceed a
    step's budget, streamed over bands of rows up to its global pool (`features.rows`); None
    where it does not apply (then whole images go through each layer)."""
    layers = params.layer.layers
    k = rows.streamable_prefix(layers) if not kwargs and x.ndim == 4 else None
    if k is None:
        return None
    children, specs = params.params.children, params.params.specs
    chunk = rows.chunk_rows(specs[: k + 1], x.shape[0], _batch_budget() // rows.STEP_FRACTION,
                            jnp.dtype(x.dtype).itemsize)
    if chunk is None:
        return None
    ctx = ApplyContext(params.method, kwargs)
    f = rows.stream_pooled(layers[:k], children[:k], specs[:k], x, chunk, ctx,
                           average=isinstance(layers[k], GlobalAvgPool))
    for layer, p, s in zip(layers[k + 1 :], children[k + 1 :], specs[k + 1 :]):
        f = apply_layer(layer, p, s, f, ctx)
    return f


_apply_jit = jax.jit(apply_feature_map, static_argnames="get")


def _nonfinite_rows(bad, name: str):
    if np.any(bad):
        rows = np.flatnonzero(bad)
        raise ValueError(f"{name} has NaN or inf values in {len(rows)} row(s) (first: {rows[:5].tolist()}); "
                         "clean or drop them before computing features or kernels")


def check_inputs(x, input_shape: tuple[int, ...] | None, name: str = "x"):
    """Validates a batch of inputs; returns it as a floating array (NumPy stays NumPy).

    Checked: a real dtype, the shape (n, *input_shape), finite values. Integers and half
    precision (float16, bfloat16) are computed in the default float dtype (float32, or float64
    under jax_enable_x64): sketches of half-precision inputs would lose most of their digits.
    Under a JAX transformation (x traced) the shape and dtype are checked at trace time and the
    values at run time, by a host callback that raises the same error (inside jit it arrives
    wrapped in JAX's runtime error).
    """
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"{name} must be a real array, got dtype {x.dtype}")
    if jnp.issubdtype(x.dtype, jnp.integer) or jnp.dtype(x.dtype).itemsize < 4:
        x = x.astype(_default_dtype())
    if batching.is_traced(x):
        if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
            raise ValueError(f"{name} has shape {tuple(x.shape)}, but the feature map was built for inputs of shape "
                             f"(n, {', '.join(map(str, input_shape))})")
        jax.debug.callback(_nonfinite_rows, ~jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1), name)
        return x
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, but the feature map was built for inputs of shape "
            f"(n, {', '.join(map(str, input_shape))})"
        )
    if x.ndim < 2:
        raise ValueError(f"{name} must be (n, d), (n, nodes, C) or (n, H, W, C); got shape {tuple(x.shape)}")
    finite = np.isfinite(x) if isinstance(x, np.ndarray) else jnp.isfinite(x)
    if not bool(finite.all()):
        _nonfinite_rows(~np.asarray(finite).reshape(len(x), -1).all(axis=1), name)
    return x


def _batch_budget() -> int:
    env = os.environ.get(ENV_BATCH_BYTES, "").strip()
    if env:
        try:
            value = int(float(env))
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"{ENV_BATCH_BYTES}={env!r}: expected a positive number of bytes")
        return value
    stats = jax.local_devices()[0].memory_stats() or {}  # another process's devices have no stats here
    limit = stats.get("bytes_limit")
    if limit:
        return int(limit // 8)
    if DEFAULT_BATCH_BYTES is not None:
        return DEFAULT_BATCH_BYTES
    cache = cpu_cache_bytes()
    low, high = _CPU_BUDGET_RANGE
    # The batches computed at once (`batching.CPU_WORKERS`) share the cache.
    return (min(max(cache, low), high) if cache else 32 << 20) // batching.concurrent_batches()


@functools.cache
def cpu_cache_bytes() -> int | None:
    """The size of this CPU's largest cache (Linux sysfs), or None where it cannot be read."""
    sizes = []
    for entry in pathlib.Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (entry / "size").read_text().strip().upper()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in "KMG" else text
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return max(sizes) if sizes else None


def _specs(tree) -> list[Spec]:
    """Every Spec held in a parameter tree's static descriptions."""
    out = []
    if isinstance(tree, Spec):
        return [tree]
    if isinstance(tree, tuple):
        for item in tree:
            out += _specs(item)
    elif isinstance(tree, ChildrenParams):
        out += _specs(tree.specs)
        for child in tree.children:
            out += _specs(child)
    return out


def default_batch_size(params: FeatureMap, budget_bytes: int | None = None) -> int:
    """Rows per batch such that one batch's intermediates stay within about `budget_bytes`."""
    budget_bytes = budget_bytes or _batch_budget()
    width = params.method.width or params.method.dim
    if params.mode == "oneshot":
        per_row = 6 * width + params.out_dim
    else:
        per_row = max(s.positions * (s.nngp_dim + s.ntk_dim + 6 * width)
                      for s in _specs(params.params) + [params.out_spec])
    itemsize = jnp.dtype(_default_dtype()).itemsize
    return batching.round_batch_size(int(max(1, min(8192, budget_bytes // (per_row * itemsize)))))


def _check_get(get):
    if get not in _GETS:
        raise ValueError(f"get must be one of {_GETS}, got {get!r}")


def _check_kwargs(params: FeatureMap, kwargs: dict) -> dict:
    unknown = set(kwargs) - {"pattern"}
    if unknown:
        raise TypeError(f"feature_fn got unexpected keyword arguments {sorted(unknown)} (only pattern= for "
                        "Aggregate layers)")
    pattern = kwargs.get("pattern")
    if pattern is not None:
        if not any(isinstance(l, Aggregate) for l in _all_layers(params.layer)):
            raise ValueError("pattern= is given but the network has no Aggregate layer, which is the only layer "
                             "that reads it: add nf.Aggregate() where the graph is used, or drop pattern=")
        if not batching.is_traced(pattern):  # checked like x: finite values only
            finite = np.isfinite(np.asarray(pattern))
            if not finite.all():
                rows = np.flatnonzero(~finite.reshape(len(finite), -1).all(axis=1))
                raise ValueError(f"pattern has NaN or inf entries in {len(rows)} rows (first: {rows[:5].tolist()}); "
                                 "the adjacency of every graph must be finite")
    return kwargs


def compute_features(params: FeatureMap, x, get: str = "ntk", *, batch_size: int | None = None,
                     progress: bool | None = None, **kwargs) -> jax.Array:
    """Features of x (n, *input_shape), computed in batches of `batch_size` rows.

    Every batch has the same shape (the last one is padded), so the map compiles once.
    Inside a jax transformation (x traced) the whole input is processed at once.

    Args:
      params: from `init_fn`.
      x: inputs; NaN or inf raise an error, all-zero rows give zero features (without biases).
      get: 'ntk' (default) or 'nngp'.
      batch_size: rows per batch (default: intermediates about the CPU's cache size, an eighth of
        the device memory on accelerators).
      progress: show a progress bar (default: with 8 or more batches, on a terminal or in Jupyter).
      **kwargs: pattern= (n, nodes, nodes) for Aggregate layers.

    Returns:
      (n, out_dim) array, or (n, *spatial, out_dim) when the network keeps spatial axes.
    """
    if not isinstance(params, FeatureMap):
        raise TypeError("params must come from init_fn (a FeatureMap)")
    _check_get(get)
    kwargs = _check_kwargs(params, kwargs)
    x = check_inputs(x, params.input_shape)
    if batching.is_traced(x):
        return apply_feature_map(params, x, get, **kwargs)
    bs = default_batch_size(params) if batch_size is None else batching.check_batch_size(batch_size)

    def apply(xb, **kw):
        return _apply_jit(params, xb, get, **kw)

    out = batching.map_rows(apply, x, bs, kwargs, progress=progress, desc="features")
    _check_finite_features(out)
    return out


def _check_finite_features(out) -> None:
    """Finite inputs whose features are not finite: the kernel itself leaves the dtype's range
    there (Exp's grows like exp(2 q): at q = 100 it is 1e86, beyond float32), never a silent NaN."""
    if batching.is_traced(out):  # parameters under vmap or jit: no values to check
        return
    bad = ~np.asarray(jnp.all(jnp.isfinite(out.reshape(out.shape[0], -1)), axis=1))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise FloatingPointError(
            f"the features of {len(rows)} finite input rows (first: {rows[:5].tolist()}) overflow "
            f"{jnp.dtype(out.dtype).name}: the kernel at those inputs is beyond its range (e.g. Exp or a "
            "general activation at large pre-activation variances); scale the inputs or weights down, or "
            "compute in float64 (jax.config.update('jax_enable_x64', True))")


def iterate_features(params: FeatureMap, x, get: str = "ntk", *, batch_size: int | None = None, **kwargs):
    """Yields (start, features) for consecutive row batches of x, without keeping them all."""
    _check_get(get)
    kwargs = _check_kwargs(params, kwargs)
    x = check_inputs(x, params.input_shape)
    bs = default_batch_size(params) if batch_size is None else batching.check_batch_size(batch_size)
    yield from batching.iterate(lambda xb, **kw: _apply_jit(params, xb, get, **kw), x, bs, kwargs, progress=False)


def exact_kernel_fn(layer):
    """neural-tangents' analytic kernel of `layer`, with input checks and row batching."""
    top = root(layer)
    cache = {}  # neural-tangents is imported on first use: features alone never need it

    def nt_kernel():
        if "kernel" not in cache:
            cache["nt"] = compat.neural_tangents()
            cache["kernel"] = top.stax(readout=True)[2]
            cache["jitted"] = jax.jit(cache["kernel"], static_argnames="get")
        return cache["kernel"]

    def kernel_fn(x1, x2=None, get="ntk", *, batch_size: int | None = None, precision: str | None = "highest",
                  **kwargs):
        """The exact kernel (n1, n2) between x1 and x2 (default x1).

        Args:
          get: 'ntk', 'nngp', or a tuple of them (then a namedtuple of both, as neural-tangents).
          batch_size: compute in blocks of this many rows of each input (neural-tangents'
            `nt.batch`; inputs are padded to a multiple). Default: one block up to 256 rows for
            images and 4096 for vectors.
          precision: matmul precision (`jax.default_matmul_precision`). The default 'highest'
            is full float32 everywhere; None keeps JAX's default, TF32 on recent NVIDIA GPUs,
            which is faster but off by ~5e-4 relative: too coarse for an oracle.
          **kwargs: pattern=(pattern1, pattern2) for Aggregate layers.
        """
        with jax.default_matmul_precision(precision):
            out = _kernel(x1, x2, get, batch_size, kwargs)
        _warn_nan(out)
        return out

    def _kernel(x1, x2, get, batch_size, kwargs):
        gets = (get,) if isinstance(get, str) else tuple(get)
        if not gets or any(g not in _GETS for g in gets):
            raise ValueError(f"get must be 'ntk', 'nngp' or a tuple of them, got {get!r}")
        x1 = check_inputs(x1, None, "x1")
        x2 = x1 if x2 is None else check_inputs(x2, None, "x2")
        if tuple(x1.shape[1:]) != tuple(x2.shape[1:]):
            raise ValueError(f"x1 and x2 must have the same shape per row, got {x1.shape} and {x2.shape}")
        x1, x2 = jnp.asarray(x1), jnp.asarray(x2)
        n1, n2 = x1.shape[0], x2.shape[0]
        if "pattern" in kwargs:
            kwargs = {**kwargs, "pattern": _check_pattern_pair(kwargs["pattern"], x1, x2)}
        default = 4096 if x1.ndim == 2 else 256
        bs = default if batch_size is None else batching.check_batch_size(batch_size)
        kernel = nt_kernel()
        devices = batching.device_count()
        if max(n1, n2) <= bs and devices == 1:
            return cache["jitted"](x1, x2, get=get, **kwargs)
        bs = min(bs, -(-n1 // devices), max(n2, 1))
        if ("batched", bs) not in cache:
            # Rows of x1 in blocks over every local device (neural-tangents' pmap); one device: serial blocks.
            cache[("batched", bs)] = cache["nt"].batch(kernel, batch_size=bs, device_count=-1 if devices > 1 else 0,
                                                       store_on_device=False)

        def pad(x):
            # nt.batch takes blocks of bs rows of x2 and bs * devices rows of x1, and needs
            # gcd(n1, n2) / devices >= bs: both padded to a multiple of bs * devices.
            if devices > 1 and not batching.is_traced(x):
                x = np.asarray(x)  # its pmap places the blocks itself and refuses arrays sharded over a mesh
            return batching.pad_rows(x, -(-x.shape[0] // (bs * devices)) * bs * devices)

        if "pattern" in kwargs:
            kwargs = {**kwargs, "pattern": tuple(pad(p) for p in kwargs["pattern"])}
        out = cache[("batched", bs)](pad(x1), pad(x2), get, **kwargs)
        if isinstance(get, str):
            return jnp.asarray(out)[:n1, :n2]
        return type(out)(*(jnp.asarray(o)[:n1, :n2] for o in out))

    return kernel_fn


def _check_pattern_pair(pattern, x1, x2):
    if not (isinstance(pattern, tuple) and len(pattern) == 2):
        raise ValueError("kernel_fn takes pattern=(pattern1, pattern2), one adjacency per input set")
    out = []
    for p, x, name in zip(pattern, (x1, x2), ("pattern1", "pattern2")):
        p = jnp.asarray(p)
        expected = (x.shape[0],) + tuple(x.shape[1:-1]) * 2
        if tuple(p.shape) != expected:
            raise ValueError(f"{name} has shape {tuple(p.shape)}; for inputs of shape {tuple(x.shape)} it must be "
                             f"{expected}")
        out.append(p)
    return tuple(out)


def _warn_nan(out) -> None:
    values = [out] if not isinstance(out, tuple) else list(out)
    if any(bool(jnp.isnan(v).any()) for v in values if not batching.is_traced(v)):
        warnings.warn("neural-tangents returned NaN kernel entries (its RectifiedMonomial closed form is NaN where "
                      "two inputs are perfectly correlated, e.g. on the diagonal)", RuntimeWarning, stacklevel=3)


def describe(params: FeatureMap, x=None, **kwargs) -> list[dict]:
    """What each activation's approximation keeps, in layer order (see `Sketch.degree`).

    For a homogeneous activation (ReLU, ...): the polynomial degree, the fit interval and the fit's
    largest error relative to the dual at 1, for the NNGP (f) and the NTK's derivative kernel (f').
    For a general activation: the series degree and the share of each input's second moment that
    the degrees up to it carry, min and mean over the rows of `x` (and positions), for sigma and
    sigma' (what the truncated tail, kept on the diagonal only, leaves approximate). Without x the
    homogeneous entries alone are reported. One-shot maps report their single fit; the one-shot
    series of general activations its degree, ranks, the share of the diagonal its degrees keep
    over the rows of x, and how many rows lie beyond its grid of variances.
    """
    from ntkfeat.features import sketch as sketch_rules

    if params.mode == "oneshot" and isinstance(params.params, GeneralOneShotParams):
        from ntkfeat.features.oneshot_general import general_report

        return [general_report(params.params, flat_layers(params.layer),
                               None if x is None else check_inputs(x, params.input_shape))]
    if params.mode == "oneshot":
        p = params.params
        grid = np.linspace(-1.0, 1.0, 801)
        target = oneshot_kernel_fn(flat_layers(params.layer))[2](grid)
        coeffs = np.asarray(p.coeffs, np.float64)
        return [{"layer": "network", "kind": "one-shot polynomial fit of the NTK", "degree": len(coeffs) - 1,
                 "interval": (-1.0, 1.0),
                 "ntk_max_error": float(np.max(np.abs(np.polyval(coeffs[::-1], grid) - target)) / float(target[-1])),
                 "ntk_kept_at_1": float(np.sum(coeffs) / target[-1])}]
    if not isinstance(params.method, Sketch):
        return []
    if x is None:
        x = np.zeros((1,) + params.input_shape, np.float32)  # any input: the homogeneous fits are static
        report_mehler = False
    else:
        x = check_inputs(x, params.input_shape)
        report_mehler = True
    report = []
    apply_feature_map(params, jnp.asarray(x), **{**kwargs, sketch_rules.REPORT: report})
    return [r for r in report if report_mehler or r["kind"] != "Mehler series"]


def finite_network(*layers):
    """neural-tangents' (init_fn, apply_fn) of the finite network with these layers.

    Widths come from each layer's `out_dim` / `out_chan` (defaults 512 / 128, and 1 for the
    readout). Used by gradient features (the empirical NTK).
    """
    init_fn, apply_fn, _ = Serial(check_layers(layers)).stax(readout=True)
    return init_fn, apply_fn


def views(layer):
    """(init_fn, feature_fn, kernel_fn) of a layer description (see `ntkfeat.layers.serial`).

    init_fn(key, input_shape, method=Sketch(), *, x=None) -> FeatureMap
      input_shape: (-1, d), (-1, nodes, C) or (-1, H, W, C) (NHWC); the batch entry is ignored.
      method: Sketch(...) or RandomFeatures(...).
      x: optional rows like those the map will see: the one-shot series of general activations
        plans its grid of variances for them and warns (SketchAccuracyWarning) where it cannot
        reach its usual accuracy on them.
    feature_fn(params, x, get='ntk', *, batch_size=None, progress=None, **kwargs) -> (n, ~dim)
    kernel_fn(x1, x2=None, get='ntk', *, batch_size=None, precision='highest', **kwargs) -> (n1, n2)
    """
    top = root(layer)

    def init_fn(key, input_shape, method=None, *, x=None):
        method = Sketch() if method is None else method
        _check_method(method)
        if x is not None:
            x = check_inputs(x, _check_input_shape(input_shape))
        return init_feature_map(top, key, input_shape, method, x=x)

    def feature_fn(params, x, get: str = "ntk", *, batch_size: int | None = None, progress=None, **kwargs):
        if isinstance(params, FeatureMap) and params.layer != top:
            raise ValueError("these parameters were made by the init_fn of a different architecture")
        return compute_features(params, x, get, batch_size=batch_size, progress=progress, **kwargs)

    kernel_fn = exact_kernel_fn(top)
    for fn in (init_fn, feature_fn, kernel_fn):
        fn.layer = top
        fn.layers = top.layers
    return init_fn, feature_fn, kernel_fn


__all__ = ["FeatureMap", "check_inputs", "compute_features", "default_batch_size", "describe", "exact_kernel_fn",
           "finite_network", "iterate_features", "views"]

"""`serial`: one architecture description, three views (parameters, features, exact kernel).

    init_fn, feature_fn, kernel_fn = serial(Dense(W_std=2**0.5), Relu(), Dense(W_std=1.0))
    params = init_fn(key, (-1, d), Sketch(dim=8192, degree=8))
    phi = feature_fn(params, x)          # (n, ~dim), phi @ phi.T ~ kernel_fn(x, x, 'ntk')
    K = kernel_fn(x, x, 'ntk')           # neural-tangents' exact kernel of the same layers

Parameters are a `FeatureMap` pytree: arrays are leaves, the architecture, the method and the
shapes are static, so `jax.jit(feature_fn)` compiles once per input shape and `feature_fn`
itself streams rows in fixed-size batches (one compilation for every batch).
"""

from __future__ import annotations

import dataclasses
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random, compat
from ntkfeat._norms import rescale
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.features import linear, ntk_random_features, ntk_sketch
from ntkfeat.features.state import Features, Spec
from ntkfeat.layers.layers import Conv, Dense, Relu, check_layers
from ntkfeat.layers.methods import RandomFeatures, Sketch
from ntkfeat.sketches.srht import srht, srht_init

_GETS = ("ntk", "nngp")
_OUTPUT_SLACK = 4  # bias coordinates may take the output a little over `dim`
# Default memory for one batch's intermediates (bytes) where the device does not report its
# memory (CPU); on accelerators, an eighth of the device memory. The batch size follows.
DEFAULT_BATCH_BYTES = 1 << 28


@pytree_dataclass(meta=("layers", "method", "input_shape", "mode", "specs", "out_spec"))
class FeatureMap:
    """Parameters of a feature map: per-layer arrays plus the static description."""

    layer_params: tuple
    oneshot: ntk_sketch.OneShotParams | None
    output_sketch: dict  # {'ntk' | 'nngp': SRHTParams or None}: final compression to `dim`
    layers: tuple
    method: Sketch | RandomFeatures
    input_shape: tuple[int, ...]  # one input, without the batch axis
    mode: str  # 'oneshot' or 'layerwise'
    specs: tuple  # the Spec entering each layer
    out_spec: Spec | None

    @property
    def out_dim(self) -> int:
        """Width of the NTK features."""
        if self.mode == "oneshot":
            return self.oneshot.out_dim
        if self.output_sketch.get("ntk") is not None:
            return self.output_sketch["ntk"].out_dim
        return max(self.out_spec.ntk_dim, 1)


def _default_dtype():
    return jnp.zeros((), dtype=float).dtype  # float64 under jax_enable_x64, else float32


def _check_input_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a tuple like (-1, d) or (-1, H, W, C), got {input_shape!r}") from None
    if len(shape) not in (2, 4):
        raise ValueError(
            f"input_shape {input_shape!r} must be (batch, features) or (batch, height, width, channels) "
            "with batch = -1 or any count"
        )
    if any(s < 1 for s in shape[1:]):
        raise ValueError(f"input_shape {input_shape!r} has a non-positive non-batch dimension")
    return shape[1:]


def _check_method(method):
    if not isinstance(method, (Sketch, RandomFeatures)):
        raise TypeError(f"method must be nf.Sketch(...) or nf.RandomFeatures(...), got {method!r}")


def init_feature_map(layers, key, input_shape, method, dtype=None) -> FeatureMap:
    layers = check_layers(layers)
    _check_method(method)
    shape = _check_input_shape(input_shape)
    dtype = dtype or _default_dtype()
    if isinstance(method, Sketch) and method.mode != "layerwise":
        reason = ntk_sketch.oneshot_reason(layers, shape)
        if reason is None or method.mode == "oneshot":
            oneshot = ntk_sketch.oneshot_init(layers, key, shape, method, dtype)
            return FeatureMap((), oneshot, {}, layers, method, shape, "oneshot", (), None)

    if isinstance(method, Sketch) and method.width is None and any(isinstance(l, Conv) for l in layers):
        # Convolutional stacks: the inner width defaults to dim / 2. With renormalized sketches
        # the CNTK error is the same as at width dim (NOTES.md) at 2.4x the speed.
        method = dataclasses.replace(method, width=max(2, method.dim // 2))
    relus = [i for i, l in enumerate(layers) if isinstance(l, Relu)]
    # The last ReLU splits the output dimension between the NNGP and NTK parts when only
    # width-preserving layers follow it; a Conv after it widens the NTK again, so then every
    # ReLU keeps the full width and the output is compressed at the end.
    last_relu = relus[-1] if relus and not any(isinstance(l, Conv) for l in layers[relus[-1]:]) else -1
    relu_init = ntk_sketch.relu_init if isinstance(method, Sketch) else ntk_random_features.relu_init
    width = method.width or method.dim
    renormalize = isinstance(method, Sketch) and method.renormalize
    spec = Spec(shape[:-1], shape[-1], 0, True, -1.0, 1.0, 0.0, renormalize=renormalize)
    specs, params = [], []
    for i, (layer, k) in enumerate(zip(layers, _random.split(key, len(layers)))):
        specs.append(spec)
        if isinstance(layer, Relu):
            p, spec = relu_init(layer, k, spec, method, i == last_relu, dtype)
        else:
            p, spec = linear.RULES[type(layer)][0](layer, k, spec, width, dtype)
        params.append(p)
    if spec.spatial:
        raise ValueError(
            f"the stack ends with spatial shape {spec.spatial}; end it with GlobalAvgPool() or Flatten() "
            "(optionally followed by Dense) so that the kernel is one number per pair of inputs"
        )
    # Inputs and biases add a few coordinates; beyond that, one SRHT brings the output to `dim`.
    k_ntk, k_nngp = _random.split(_random.split(key, len(layers) + 1)[-1], 2)
    output_sketch = {"ntk": None, "nngp": None}
    if spec.ntk_dim > method.dim + _OUTPUT_SLACK:
        output_sketch["ntk"] = srht_init(k_ntk, spec.ntk_dim, method.dim, dtype)
    if spec.nngp_dim > method.dim + _OUTPUT_SLACK:
        output_sketch["nngp"] = srht_init(k_nngp, spec.nngp_dim, method.dim, dtype)
    return FeatureMap(tuple(params), None, output_sketch, layers, method, shape, "layerwise", tuple(specs), spec)


def apply_feature_map(params: FeatureMap, x: jax.Array, get: str = "ntk") -> jax.Array:
    """Features of a batch x (n, *input_shape); no checks, no batching (see `compute_features`)."""
    if params.mode == "oneshot":
        if get != "ntk":
            raise ValueError("one-shot NTK Sketch features approximate the NTK only; use Sketch(mode='layerwise') for 'nngp'")
        return ntk_sketch.oneshot_apply(params.oneshot, x)
    channels = x.shape[-1]
    f = Features(x / math.sqrt(channels), None, jnp.sum(x * x, axis=-1) / channels)
    relu_apply = (
        ntk_sketch.relu_apply if isinstance(params.method, Sketch) else ntk_random_features.relu_apply
    )
    for layer, p, spec in zip(params.layers, params.layer_params, params.specs):
        if isinstance(layer, Relu):
            f = relu_apply(layer, p, spec, f)
        else:
            f = linear.RULES[type(layer)][1](layer, p, spec, f)
    out = f.nngp if get == "nngp" else f.ntk
    if out is None:  # no Dense or Conv: the NTK is identically zero
        return jnp.zeros((x.shape[0], 1), x.dtype)
    sketch = params.output_sketch.get(get)
    if sketch is None:
        return out
    sketched = srht(sketch, out)
    return rescale(sketched, jnp.linalg.norm(out, axis=-1)) if params.out_spec.renormalize else sketched


_apply_jit = jax.jit(apply_feature_map, static_argnames="get")


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_inputs(x, input_shape: tuple[int, ...] | None, name: str = "x"):
    """Validates a batch of inputs; returns it as a floating array (NumPy stays NumPy)."""
    if _is_tracer(x):
        return x
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"{name} must be a real array, got dtype {x.dtype}")
    if jnp.issubdtype(x.dtype, jnp.integer):
        x = x.astype(_default_dtype())
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}, but the feature map was built for inputs of shape "
            f"(n, {', '.join(map(str, input_shape))})"
        )
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must be (n, d) or (n, H, W, C); got shape {tuple(x.shape)}")
    finite = np.isfinite(x) if isinstance(x, np.ndarray) else jnp.isfinite(x)
    if not bool(finite.all()):
        bad = np.flatnonzero(~np.asarray(finite).reshape(len(x), -1).all(axis=1))
        raise ValueError(
            f"{name} has NaN or inf values in {len(bad)} row(s) (first: {bad[:5].tolist()}); "
            "clean or drop them before computing features or kernels"
        )
    return x


def _batch_budget() -> int:
    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    return int(limit // 8) if limit else DEFAULT_BATCH_BYTES


def default_batch_size(params: FeatureMap, budget_bytes: int | None = None) -> int:
    """Rows per batch such that one batch's intermediates stay within about `budget_bytes`."""
    budget_bytes = budget_bytes or _batch_budget()
    width = params.method.width or params.method.dim
    if params.mode == "oneshot":
        per_row = 6 * width + params.out_dim
    else:
        per_row = max(
            s.positions * (s.nngp_dim + s.ntk_dim + 6 * width) for s in params.specs + (params.out_spec,)
        )
    itemsize = jnp.dtype(_default_dtype()).itemsize
    return int(max(1, min(8192, budget_bytes // (per_row * itemsize))))


def compute_features(params: FeatureMap, x, get: str = "ntk", *, batch_size: int | None = None,
                     progress: bool | None = None) -> jax.Array:
    """Features of x (n, *input_shape), computed in batches of `batch_size` rows.

    Every batch has the same shape (the last one is padded), so the map compiles once.
    Inside a jax transformation (x traced) the whole input is processed at once.

    Args:
      params: from `init_fn`.
      x: inputs; NaN or inf raise an error, all-zero rows give zero features (without biases).
      get: 'ntk' (default) or 'nngp'.
      batch_size: rows per batch (default: from a ~256 MB budget for intermediates).
      progress: show a progress bar (default: when there are 8 or more batches and stderr is a
        terminal).

    Returns:
      (n, out_dim) array.
    """
    if not isinstance(params, FeatureMap):
        raise TypeError("params must come from init_fn (a FeatureMap)")
    if get not in _GETS:
        raise ValueError(f"get must be one of {_GETS}, got {get!r}")
    x = check_inputs(x, params.input_shape)
    if _is_tracer(x):
        return apply_feature_map(params, x, get)
    n = x.shape[0]
    bs = batch_size or default_batch_size(params)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n <= bs:
        return _apply_jit(params, jnp.asarray(x), get)
    batches = _batches(params, x, get, bs)
    count = -(-n // bs)
    if progress is None:
        progress = count >= 8 and sys.stderr.isatty()
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=count, desc="features", unit="batch")
    return jnp.concatenate([phi for _, phi in batches])


def _batches(params: FeatureMap, x, get: str, bs: int):
    """(start, features) of consecutive batches of bs rows; the last one is padded with zero rows
    (cut from its output) so that every batch has the same shape and one compilation serves all."""
    n = x.shape[0]
    for start in range(0, n, bs):
        xb = jnp.asarray(x[start : start + bs])
        rows = xb.shape[0]
        if rows < bs and n > bs:
            xb = jnp.concatenate([xb, jnp.zeros((bs - rows,) + xb.shape[1:], xb.dtype)])
        yield start, _apply_jit(params, xb, get)[:rows]


def iterate_features(params: FeatureMap, x, get: str = "ntk", *, batch_size: int | None = None):
    """Yields (start, features) for consecutive row batches of x, without keeping them all."""
    if get not in _GETS:
        raise ValueError(f"get must be one of {_GETS}, got {get!r}")
    x = check_inputs(x, params.input_shape)
    yield from _batches(params, x, get, batch_size or default_batch_size(params))


def _stax_layers(layers):
    dense = [i for i, l in enumerate(layers) if isinstance(l, (Dense, Conv))]
    last = dense[-1] if dense else -1
    return [l.stax(readout=(i == last)) for i, l in enumerate(layers)]


def exact_kernel_fn(layers):
    """neural-tangents' analytic kernel of `layers`, with input checks and row batching."""
    nt = compat.neural_tangents()
    _, _, nt_kernel = nt.stax.serial(*_stax_layers(layers))
    jitted = jax.jit(nt_kernel, static_argnames="get")
    batched = {}

    def kernel_fn(x1, x2=None, get: str = "ntk", *, batch_size: int | None = None,
                  precision: str | None = "highest"):
        """The exact kernel (n1, n2) between x1 and x2 (default x1).

        Args:
          get: 'ntk' or 'nngp'.
          batch_size: compute in blocks of this many rows of each input (neural-tangents'
            `nt.batch`; inputs are zero-padded to a multiple). Default: one block up to 256
            rows for images and 4096 for vectors.
          precision: matmul precision (`jax.default_matmul_precision`). The default 'highest'
            is full float32 everywhere; None keeps JAX's default, TF32 on recent NVIDIA GPUs,
            which is faster but off by ~5e-4 relative: too coarse for an oracle.
        """
        with jax.default_matmul_precision(precision):
            return _kernel(x1, x2, get, batch_size)

    def _kernel(x1, x2, get, batch_size):
        if get not in _GETS:
            raise ValueError(f"get must be one of {_GETS}, got {get!r}")
        x1 = check_inputs(x1, None, "x1")
        x2 = x1 if x2 is None else check_inputs(x2, None, "x2")
        if tuple(x1.shape[1:]) != tuple(x2.shape[1:]):
            raise ValueError(f"x1 and x2 must have the same shape per row, got {x1.shape} and {x2.shape}")
        x1, x2 = jnp.asarray(x1), jnp.asarray(x2)
        default = 4096 if x1.ndim == 2 else 256
        bs = batch_size or default
        n1, n2 = x1.shape[0], x2.shape[0]
        if max(n1, n2) <= bs:
            return jitted(x1, x2, get=get)
        if bs not in batched:
            batched[bs] = nt.batch(nt_kernel, batch_size=bs, device_count=0, store_on_device=False)

        def pad(x):
            extra = -x.shape[0] % bs
            return jnp.concatenate([x, jnp.zeros((extra,) + x.shape[1:], x.dtype)]) if extra else x

        return jnp.asarray(batched[bs](pad(x1), pad(x2), get))[:n1, :n2]

    return kernel_fn


def finite_network(*layers):
    """neural-tangents' (init_fn, apply_fn) of the finite network with these layers.

    Widths come from each layer's `out_dim` / `out_chan` (defaults 512 / 128, and 1 for the
    readout). Used by gradient features (the empirical NTK).
    """
    layers = check_layers(layers)
    nt = compat.neural_tangents()
    init_fn, apply_fn, _ = nt.stax.serial(*_stax_layers(layers))
    return init_fn, apply_fn


def serial(*layers):
    """Composes layers into (init_fn, feature_fn, kernel_fn).

    init_fn(key, input_shape, method=Sketch()) -> FeatureMap
      input_shape: (-1, d) or (-1, H, W, C) (NHWC), the batch entry is ignored.
      method: Sketch(...) or RandomFeatures(...).
    feature_fn(params, x, get='ntk', *, batch_size=None, progress=None) -> (n, ~dim) features
    kernel_fn(x1, x2=None, get='ntk', *, batch_size=None, precision='highest') -> (n1, n2) exact
      kernel, with full float32 matmuls unless precision says otherwise
    """
    layers = check_layers(layers)

    def init_fn(key, input_shape, method=None):
        return init_feature_map(layers, key, input_shape, Sketch() if method is None else method)

    def feature_fn(params, x, get: str = "ntk", *, batch_size: int | None = None, progress=None):
        if isinstance(params, FeatureMap) and params.layers != layers:
            raise ValueError("these parameters were made by the init_fn of a different architecture")
        return compute_features(params, x, get, batch_size=batch_size, progress=progress)

    kernel_fn = exact_kernel_fn(layers)
    for fn in (init_fn, feature_fn, kernel_fn):
        fn.layers = layers
    return init_fn, feature_fn, kernel_fn

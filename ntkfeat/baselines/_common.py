"""What every baseline feature map shares: input checks and row streaming in fixed-size batches."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import batching
from ntkfeat.network import check_inputs


def default_dtype():
    return jnp.zeros((), dtype=float).dtype  # float64 under jax_enable_x64, else float32


def check_dim(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_train(x_train, name: str = "x_train"):
    """x_train checked like any input (real, (n, d) or (n, H, W, C), finite), plus n >= 1."""
    if isinstance(x_train, jax.core.Tracer):
        raise TypeError(f"{name} must be a concrete array: init_fn makes data-dependent choices on the host")
    x = check_inputs(x_train, None, name)
    if x.shape[0] < 1:
        raise ValueError(f"{name} has no rows")
    return x


def check_params(params, cls, owner: str, dim: int, unit: str) -> None:
    """params must be a `cls` made by `owner`'s init_fn for this feature_fn's dim."""
    if not isinstance(params, cls):
        raise TypeError(f"params must come from {owner}'s init_fn ({cls.__name__})")
    if params.out_dim != dim:
        raise ValueError(f"params have {params.out_dim} {unit}, but this feature_fn was made for dim={dim}")


def check_batch(x, input_shape: tuple[int, ...]):
    """Validates x against the input shape the parameters were built for (tracers included:
    `check_inputs` skips them, but their shapes are static and still checked here)."""
    if hasattr(x, "shape") and tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"x has shape {tuple(x.shape)}, but the feature map was built for inputs of shape "
            f"(n, {', '.join(map(str, input_shape))})"
        )
    return check_inputs(x, input_shape)


def map_rows(apply: Callable, x, batch_size: int) -> jax.Array:
    """apply(xb) -> (rows, k) over consecutive padded batches of x, concatenated (one compilation;
    see `ntkfeat.batching`). A traced x is processed in one call."""
    return batching.map_rows(apply, x, batch_size)


def row_blocks(fn: Callable, x, block: int) -> np.ndarray:
    """Host-side (float64) concatenation of fn(xb) over padded row blocks of x."""
    return batching.map_rows_host(fn, x, block)

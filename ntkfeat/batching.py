"""Rows in fixed-size batches: the one place where inputs are cut, padded and put back together.

Every batch has the same number of rows, so a jitted function compiles once for all of them:
the last batch is padded by repeating its last row (not zeros, which some kernels map to 0/0,
e.g. angles at x = 0) and the padding is cut from the output. Per-row keyword arrays (a
graph's `pattern`) are cut and padded with the rows. Feature maps, baselines, Gram
accumulation and the experiment runner all stream rows through here.
"""

from __future__ import annotations

from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _checks
from ntkfeat import _progress

progress = _progress.progress  # progress bars (tqdm.auto): terminals and Jupyter, not logs


def is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_batch_size(batch_size, name: str = "batch_size") -> int:
    return _checks.integer(name, batch_size, 1)


def pad_rows(xb, rows: int, zeros: bool = False):
    """xb with its last row repeated (or zero rows, which add nothing to sums of products) up to
    `rows` rows (NumPy stays NumPy)."""
    extra = rows - xb.shape[0]
    if extra <= 0:
        return xb
    xp = np if isinstance(xb, np.ndarray) else jnp
    fill = xp.zeros((extra,) + xb.shape[1:], xb.dtype) if zeros else xp.repeat(xb[-1:], extra, axis=0)
    return xp.concatenate([xb, fill])


def _cut(value, start: int, stop: int, rows: int | None):
    """Rows start:stop of an array (padded to `rows`), or of each array in a tuple; others as is."""
    if isinstance(value, tuple):
        return tuple(_cut(v, start, stop, rows) for v in value)
    if hasattr(value, "shape") and getattr(value, "ndim", 0) >= 1:
        out = value[start:stop]
        return out if rows is None else pad_rows(out, rows)
    return value


def row_batches(x, batch_size: int, kwargs: dict | None = None, *, pad: bool = True) -> Iterator[tuple]:
    """Yields (start, rows, xb, kwargs_b) for consecutive batches of x; with `pad`, every xb has
    batch_size rows (when x has more than that) and per-row arrays in kwargs are cut alike."""
    n = x.shape[0]
    kwargs = kwargs or {}
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = batch_size if (pad and n > batch_size) else None
        xb = _cut(x, start, stop, rows)
        yield start, stop - start, xb, {k: _cut(v, start, stop, rows) for k, v in kwargs.items()}


def iterate(fn: Callable, x, batch_size: int, kwargs: dict | None = None, *, progress: bool | None = None,
            desc: str | None = None, to_device: bool = True) -> Iterator[tuple[int, jax.Array]]:
    """Yields (start, fn(xb, **kwargs_b)[:rows]) over padded batches of x."""
    batch_size = check_batch_size(batch_size)
    count = -(-x.shape[0] // batch_size)
    batches = row_batches(x, batch_size, kwargs)
    if count > 1:
        batches = _progress.progress(batches, total=count, desc=desc,
                                     enabled=progress if count >= 8 or progress else False)
    for start, rows, xb, kw in batches:
        yield start, fn(jnp.asarray(xb) if to_device else xb, **kw)[:rows]


def map_rows(fn: Callable, x, batch_size: int, kwargs: dict | None = None, *, progress: bool | None = None,
             desc: str | None = None) -> jax.Array:
    """fn over consecutive padded batches of x, concatenated; a traced x is processed at once."""
    kwargs = kwargs or {}
    if is_traced(x) or x.shape[0] <= check_batch_size(batch_size):
        return fn(jnp.asarray(x), **kwargs)
    return jnp.concatenate([out for _, out in iterate(fn, x, batch_size, kwargs, progress=progress, desc=desc)])


def map_rows_host(fn: Callable, x, batch_size: int) -> np.ndarray:
    """Host-side float64 concatenation of fn(xb) over padded batches (inputs stay NumPy)."""
    batch_size = check_batch_size(batch_size)
    return np.concatenate([np.asarray(fn(xb), np.float64)[:rows]
                           for _, rows, xb, _ in row_batches(np.asarray(x), batch_size)])


__all__ = ["check_batch_size", "is_traced", "iterate", "map_rows", "map_rows_host", "pad_rows", "progress",
           "row_batches"]

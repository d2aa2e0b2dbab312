"""Rows in fixed-size batches over every local device: the one place where inputs are cut,
padded, sharded and put back together.

Every batch has the same number of rows, so a jitted function compiles once for all of them:
the last batch is padded by repeating its last row (not zeros, which some kernels map to 0/0,
e.g. angles at x = 0) and the padding is cut from the output. Per-row keyword arrays (a
graph's `pattern`) are cut and padded with the rows. Feature maps, baselines, Gram
accumulation and the experiment runner all stream rows through here.

Devices. With several local devices, each batch is split over a one-axis `jax.sharding.Mesh`
of all of them (`row_sharding`; batch sizes are rounded up to a multiple of the device count)
and the parameters stay replicated: every row-wise map then runs on all devices at once, and
reductions over rows (Gram statistics) are all-reduced by the collectives XLA inserts. One code
path for 1 and N devices; the results agree to float tolerance (sums in a different order).

CPU. On one CPU device in one process, `iterate` computes `CPU_WORKERS` batches at once, each by
its own thread, and yields them in order (the same values as one at a time).
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _checks
from ntkfeat import _progress

progress = _progress.progress  # progress bars (tqdm.auto): terminals and Jupyter, not logs

ENV_CPU_WORKERS = "NTKFEAT_CPU_WORKERS"


def _env_workers(default: int = 2) -> int:
    text = os.environ.get(ENV_CPU_WORKERS, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{ENV_CPU_WORKERS}={text!r}: expected a positive whole number of batches "
                         "(1 turns threads off)")
    return int(text)


# Batches computed at once on a CPU (one process, one device), each by its own thread. XLA runs
# a CPU program's FFTs on one thread and its other operations on all cores, so one program
# leaves cores idle; two batches at once kept both of 2 cores busy (random features 1.1-1.6x
# the rows/s, NOTES.md). 1 turns it off; the environment variable NTKFEAT_CPU_WORKERS sets it at
# import. GPUs and TPUs queue batches asynchronously already; several devices or processes keep
# one batch at a time (their programs may hold collectives, which every device must launch in
# the same order).
CPU_WORKERS = _env_workers()


def is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def device_count() -> int:
    """The number of local devices rows are sharded over."""
    return jax.local_device_count()


def row_mesh() -> jax.sharding.Mesh:
    """A one-axis mesh ('rows',) of every local device."""
    return jax.sharding.Mesh(np.array(jax.local_devices()), ("rows",))


def row_sharding(ndim: int = 1) -> jax.sharding.NamedSharding:
    """Sharding of an array along its first axis (rows) over every local device."""
    spec = jax.sharding.PartitionSpec("rows", *([None] * (ndim - 1)))
    return jax.sharding.NamedSharding(row_mesh(), spec)


def round_batch_size(batch_size: int) -> int:
    """batch_size rounded up to a multiple of the device count (each device gets equal rows)."""
    n = device_count()
    return -(-batch_size // n) * n


def shard_rows(value):
    """A batch (or a tuple of them) split by rows over the local devices; with one device, or
    rows not divisible by the device count, the batch as a device array."""
    if isinstance(value, tuple):
        return tuple(shard_rows(v) for v in value)
    if not hasattr(value, "shape") or getattr(value, "ndim", 0) < 1 or is_traced(value):
        return value
    n = device_count()
    if n == 1 or value.shape[0] % n:
        return jnp.asarray(value)
    return jax.device_put(value, row_sharding(value.ndim))


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
            desc: str | None = None) -> Iterator[tuple[int, jax.Array]]:
    """Yields (start, fn(xb, **kwargs_b)[:rows]) over padded batches of x, each batch (and its
    per-row keyword arrays) sharded over the local devices."""
    batch_size = round_batch_size(check_batch_size(batch_size))
    count = -(-x.shape[0] // batch_size)
    batches = row_batches(x, batch_size, kwargs)
    if count > 1:
        batches = _progress.progress(batches, total=count, desc=desc,
                                     enabled=progress if count >= 8 or progress else False)

    def call(rows, xb, kw):
        if rows < batch_size and x.shape[0] <= batch_size:  # a single short batch: pad it to the devices
            xb, kw = pad_rows(xb, round_batch_size(rows)), {k: _cut(v, 0, rows, round_batch_size(rows))
                                                            for k, v in kw.items()}
        out = fn(shard_rows(xb), **{k: shard_rows(v) for k, v in kw.items()})
        return out if out.shape[0] == rows else out[:rows]  # a full batch: no slicing op

    workers = concurrent_batches()
    if count <= 1 or workers <= 1 or not _threads_see_this_context():
        for start, rows, xb, kw in batches:
            yield start, call(rows, xb, kw)
        return
    yield from _in_threads(call, batches, workers)


def concurrent_batches() -> int:
    """How many batches `iterate` computes at once: `CPU_WORKERS` on a one-device CPU process, else 1."""
    if jax.process_count() > 1 or jax.local_device_count() > 1 or jax.local_devices()[0].platform != "cpu":
        return 1
    return max(int(CPU_WORKERS), 1)


def _trace_context():
    """JAX's settings that tracing reads, as this thread sees them (None if this JAX hides them).
    Scopes such as `with jax.enable_x64(True)` or `jax.default_matmul_precision` hold for the
    thread that entered them only: a new thread starts from the global settings."""
    try:
        from jax._src.config import trace_context
    except ImportError:  # pragma: no cover - other JAX versions
        return None
    return trace_context()


def _threads_see_this_context() -> bool:
    """Whether a new thread traces as this one does: not inside a scope such as 64-bit mode or a
    matmul precision, where batches must run in the caller's thread (or drop to float32)."""
    context = _trace_context()
    if context is None:
        return False
    with ThreadPoolExecutor(1) as probe:
        return probe.submit(_trace_context).result() == context


def _in_threads(call: Callable, batches, workers: int):
    """(start, call(rows, xb, kw)) in order, up to `workers` batches computed at once by a pool of
    threads while the caller uses the last one. The first batch runs in the caller's thread (it
    compiles, once). Leaving early (break, an error, Ctrl-C) cancels the batches not started and
    waits for the running ones."""
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return
    start0, rows, xb, kw = first
    out0 = jax.block_until_ready(call(rows, xb, kw))
    pending = collections.deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="ntkfeat-batch") as pool:
        try:

            def submit(item):
                start, rows, xb, kw = item
                pending.append((start, pool.submit(lambda: jax.block_until_ready(call(rows, xb, kw)))))

            for item in batches:  # fill the pool before handing out the first batch
                submit(item)
                if len(pending) == workers:
                    break
            yield start0, out0
            del out0
            while pending:
                start, future = pending.popleft()
                out = future.result()
                item = next(batches, None)
                if item is not None:
                    submit(item)
                yield start, out
        finally:
            for _, future in pending:
                future.cancel()


def map_rows(fn: Callable, x, batch_size: int, kwargs: dict | None = None, *, progress: bool | None = None,
             desc: str | None = None) -> jax.Array:
    """fn over consecutive padded batches of x, concatenated; a traced x is processed at once."""
    kwargs = kwargs or {}
    check_batch_size(batch_size)
    if is_traced(x):
        return fn(x, **kwargs)
    if x.shape[0] <= batch_size and device_count() == 1:
        return fn(jnp.asarray(x), **kwargs)
    return jnp.concatenate([out for _, out in iterate(fn, x, batch_size, kwargs, progress=progress, desc=desc)])


def map_rows_host(fn: Callable, x, batch_size: int) -> np.ndarray:
    """Host-side float64 concatenation of fn(xb) over padded batches (inputs stay NumPy)."""
    batch_size = check_batch_size(batch_size)
    return np.concatenate([np.asarray(fn(xb), np.float64)[:rows]
                           for _, rows, xb, _ in row_batches(np.asarray(x), batch_size)])


__all__ = ["CPU_WORKERS", "check_batch_size", "concurrent_batches", "device_count", "is_traced", "iterate", "map_rows",
           "map_rows_host", "pad_rows", "progress", "round_batch_size", "row_batches", "row_mesh", "row_sharding",
           "shard_rows"]

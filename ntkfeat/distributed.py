"""Several processes (hosts) in one run: rows split between processes, results shared by collectives.

JAX's multi-controller model: every process runs the same program on its own local devices
(over which `ntkfeat.batching` shards each batch) and the processes meet in collectives. Here
the work is split by rows, the one axis that every step of a kernel or feature computation is
parallel over:

    distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=0)  # before any JAX work
    mine = distributed.split_rows(n)                 # this process's contiguous share of n rows
    phi = distributed.allgather_rows(f(x[mine]))     # on every process: all n rows, in order
    phi = distributed.map_split(f, x)                # the same two steps, one call
    totals = distributed.allreduce_sum(partial)      # on every process: the sums over processes

With one process (the default: nothing initialized) every helper returns its input unchanged,
so callers keep one code path. Collectives go through
`jax.experimental.multihost_utils.process_allgather` (NCCL between GPUs, gloo between CPUs) with
64-bit types on, so float64 statistics cross exactly; sums are taken in NumPy in process order,
hence bitwise equal on every process, and code that branches on them stays in step.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from ntkfeat.batching import pad_rows

# JAX's own environment variables for a multi-process run (jax.distributed reads the first too).
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Joins a run of `num_processes` processes through `jax.distributed.initialize`.

    Call it before any JAX computation. Arguments left None come from JAX's environment
    variables JAX_COORDINATOR_ADDRESS (HOST:PORT of process 0, which serves it),
    JAX_NUM_PROCESSES and JAX_PROCESS_ID. With one process (or none given) nothing is
    initialized and False is returned; otherwise True. CPU collectives use gloo unless another
    implementation was configured (GPUs use NCCL either way).
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
    num_processes = _env_int(ENV_NUM_PROCESSES) if num_processes is None else num_processes
    process_id = _env_int(ENV_PROCESS_ID) if process_id is None else process_id
    if num_processes is None or num_processes == 1:
        if process_id not in (None, 0):
            raise ValueError(f"process id {process_id} given for a single process; set the number of processes "
                             f"(--num-processes or {ENV_NUM_PROCESSES})")
        return False
    if num_processes < 1:
        raise ValueError(f"the number of processes must be at least 1, got {num_processes}")
    missing = [name for name, value in (("the coordinator address HOST:PORT (--coordinator or "
                                         f"{ENV_COORDINATOR})", coordinator),
                                        (f"the process id (--process-id or {ENV_PROCESS_ID})", process_id))
               if value is None]
    if missing:
        raise ValueError(f"{num_processes} processes need {' and '.join(missing)}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id} is not in 0..{num_processes - 1}")
    if jax.config.jax_cpu_collectives_implementation in (None, "gloo"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True


def process_index() -> int:
    """This process's index, 0 to process_count() - 1 (0 for a single process)."""
    return jax.process_index()


def process_count() -> int:
    """The number of processes in the run (1 unless `initialize` joined several)."""
    return jax.process_count()


def is_initialized() -> bool:
    """Whether this process is part of a multi-process run (checked without starting any backend)."""
    return jax.distributed.is_initialized()


def _counts(n: int) -> list[int]:
    """Rows of each process when n rows are split (`split_rows`)."""
    count = process_count()
    return [(i + 1) * n // count - i * n // count for i in range(count)]


def split_rows(n: int) -> slice:
    """This process's contiguous share of n rows, in process order; shares differ by at most one row
    (and are empty for some processes when n is smaller than their number)."""
    count, index = process_count(), process_index()
    return slice(index * n // count, (index + 1) * n // count)


def _gather(tree):
    """Every process's pytree of host arrays (same shapes everywhere), stacked on a new first axis,
    with 64-bit types kept (float64 crosses exactly)."""
    with jax.enable_x64(True):
        return multihost_utils.process_allgather(tree)


def allgather_rows(array, counts: list[int] | None = None):
    """The rows of every process's `array`, concatenated in process order (a NumPy array).

    Row counts may differ between processes (each is padded to the largest for the collective and
    cut after); `counts`, every process's row count when known (e.g. from a split), saves the
    collective that otherwise gathers them. One process: `array` itself.
    """
    if process_count() == 1:
        return array
    local = np.asarray(array)
    if counts is None:
        counts = [int(c) for c in _gather(np.asarray(len(local), np.int64))]
    elif len(counts) != process_count() or counts[process_index()] != len(local):
        raise ValueError(f"counts {counts} do not match {process_count()} processes with {len(local)} rows on "
                         f"process {process_index()}")
    width = max(counts)
    if width == 0:
        return local
    stacked = _gather(pad_rows(local, width, zeros=True))
    return np.concatenate([rows[:c] for rows, c in zip(stacked, counts)])


def allreduce_sum(tree):
    """The sum over processes of a pytree of arrays or numbers (e.g. a `solvers.GramState`), the
    same bits on every process: NumPy arrays keep their dtype (float64 is summed in float64),
    Python numbers come back as Python numbers. One process: `tree` itself."""
    if process_count() == 1:
        return tree
    leaves, treedef = jax.tree.flatten(tree)
    gathered = _gather([np.asarray(leaf) for leaf in leaves])
    sums = []
    for leaf, stacked in zip(leaves, gathered):
        total = np.sum(stacked, axis=0, dtype=np.asarray(leaf).dtype)
        sums.append(type(leaf)(total) if isinstance(leaf, (int, float)) else total)
    return jax.tree.unflatten(treedef, sums)


def broadcast(tree):
    """Process 0's pytree of arrays (same shapes everywhere) on every process, as NumPy arrays
    (e.g. whether process 0 could create the output folder). One process: `tree` itself."""
    if process_count() == 1:
        return tree
    with jax.enable_x64(True):
        return multihost_utils.broadcast_one_to_all(tree)


def map_split(fn: Callable, x):
    """fn(x) for a row-wise fn (row i of the output depends on row i of x only), computed across
    processes: each applies fn to its share of the rows (`split_rows`), padded by repeating a row
    to the largest share so that fn sees one shape on every process, and the outputs are
    all-gathered (NumPy). Every process gets all rows. One process: fn(x)."""
    n = len(x)
    if process_count() == 1 or n == 0:
        return fn(x)
    share = split_rows(n)
    rows = x[share] if share.stop > share.start else x[n - 1:]  # an empty share computes one row, kept 0
    out = fn(pad_rows(rows, -(-n // process_count())))
    return allgather_rows(np.asarray(out)[: share.stop - share.start], counts=_counts(n))


__all__ = ["allgather_rows", "allreduce_sum", "broadcast", "initialize", "is_initialized", "map_split",
           "process_count", "process_index", "split_rows"]

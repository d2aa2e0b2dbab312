"""Feature shards on disk: blocks of rows of a feature matrix, written atomically, named by what
determines them, verified when read.

A long run keeps its expensive intermediates so that an interruption (Ctrl-C, SIGTERM, SIGKILL, a
preempted machine) costs at most the shard being written:

    store = ShardStore(root, rows=4096)
    key = fingerprint("ntk_sketch", 4096, params)               # what determines the features
    shards = store.matrix(key, x, compute, role="train")         # compute(x_block) -> (b, m) float32
    shards.ensure(n)                                             # every block of rows [0, n) on disk
    for start, phi in shards.stream(rows, batch_size):           # rows sorted (or any order)
        ...

Blocks tile the whole array x from row 0 (`rows` per block), whatever part of it a caller needs,
so runs on the first 2,000 and on all 50,000 rows of one dataset share their blocks. A shard's
name holds the row range and a digest of the feature map's key and of the block's input rows, so a
change of data, preprocessing, architecture, method, dim, key or library version gives new names,
never stale features.

Each shard is an uncompressed `.npz` (a zip archive: every member carries a CRC-32) written to a
temporary name, fsynced and renamed into place, then the folder is fsynced. A truncated or
corrupt file (a kill during a write outside this scheme, a disk error) fails its CRC or shape check
when read, is deleted and recomputed, never used as data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import time
import warnings
import zipfile
from typing import Callable, Iterator

import jax
import numpy as np

from ntkfeat._version import __version__

SUFFIX = ".npz"
# Free space kept beyond what a stage's shards need (results, plots, the file system's own use).
DISK_MARGIN_BYTES = 256 << 20


class InsufficientDiskError(OSError):
    """The shards a stage will write do not fit in the free space of their folder."""


class CorruptShardWarning(UserWarning):
    """A shard failed its checks when read; it is deleted and recomputed."""


def _update(h, value) -> None:
    """Feeds one value to a hash: arrays by dtype, shape and bytes, the rest as canonical JSON."""
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        a = np.ascontiguousarray(np.asarray(value))
        h.update(f"array:{a.dtype.str}:{a.shape}:".encode())
        h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    elif isinstance(value, bytes):
        h.update(b"bytes:" + value)
    else:
        h.update(b"json:" + json.dumps(value, sort_keys=True, default=repr).encode())


def fingerprint(*parts) -> str:
    """A hex digest (32 characters) of values: JSON-able values, arrays, and pytrees of arrays
    (their structure and every leaf), with the library version (`ntkfeat.__version__`, which
    changes whenever a release changes what a feature map computes; CHANGELOG.md)."""
    h = hashlib.blake2b(digest_size=16)
    _update(h, ["ntkfeat", __version__])
    for part in parts:
        leaves, treedef = jax.tree_util.tree_flatten(part)
        _update(h, str(treedef))
        for leaf in leaves:
            _update(h, leaf)
    return h.hexdigest()


def free_bytes(path) -> int:
    """Free bytes on the file system holding `path` (its nearest existing parent)."""
    path = pathlib.Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_disk(path, needed: int, what: str) -> None:
    """InsufficientDiskError, before any work, if `needed` bytes plus a margin do not fit at `path`."""
    free = free_bytes(path)
    if needed + DISK_MARGIN_BYTES > free:
        raise InsufficientDiskError(
            f"{what} need {needed / 2**30:.2f} GiB on disk (plus a {DISK_MARGIN_BYTES >> 20} MiB margin), but "
            f"{free / 2**30:.2f} GiB are free under {path}: free space, choose another --out, or turn shards off "
            "(store.shards: false) to keep features in memory only")


def _fsync_dir(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some file systems do not open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_shard(path, phi: np.ndarray) -> int:
    """Writes phi to `path` atomically (temporary name, fsync, rename, fsync of the folder);
    returns the bytes written. Nothing is left at `path` or beside it if the write fails."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, phi=np.asarray(phi))
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return size


def load_shard(path, shape: tuple, dtype=np.float32) -> np.ndarray | None:
    """The array of a shard, or None (with a CorruptShardWarning, the file deleted) if it is
    missing its member, fails the zip CRC, or has another shape or dtype than expected."""
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            phi = z["phi"]  # reads the whole member: zipfile checks its CRC-32 at the end
        if phi.shape != tuple(shape) or phi.dtype != np.dtype(dtype):
            raise ValueError(f"shape {phi.shape} {phi.dtype}, expected {tuple(shape)} {np.dtype(dtype)}")
        return phi
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(f"feature shard {path.name} is unreadable ({type(e).__name__}: {e}); it is deleted and "
                      "recomputed", CorruptShardWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return None


@dataclasses.dataclass
class ShardLog:
    """Counts of a store's work, for records and logs."""

    computed: int = 0
    loaded: int = 0
    recovered: int = 0  # corrupt shards found and recomputed
    bytes_written: int = 0
    compute_seconds: float = 0.0


class ShardedMatrix:
    """The features of the rows of one input array, as shards of `rows` rows (see the module doc)."""

    def __init__(self, store: "ShardStore", key: str, x, compute: Callable, m: int, role: str,
                 on_progress: Callable | None = None):
        self.store, self.key, self.x, self.compute, self.m, self.role = store, key, x, compute, int(m), role
        self.on_progress = on_progress
        n = len(x)
        self.blocks = [(s, min(s + store.rows, n)) for s in range(0, n, store.rows)]
        self._names = {}

    def _name(self, i: int) -> pathlib.Path:
        if i not in self._names:
            s, e = self.blocks[i]
            digest = fingerprint(self.key, s, e, np.asarray(self.x[s:e]))
            self._names[i] = self.store.folder / f"{self.role}-{s:08d}-{e:08d}-{digest[:20]}{SUFFIX}"
        return self._names[i]

    def _needed(self, n: int) -> list:
        return [i for i, (s, _) in enumerate(self.blocks) if s < n]

    def missing(self, n: int) -> list:
        """Indices of the blocks covering rows [0, n) that have no shard file yet."""
        return [i for i in self._needed(n) if not self._name(i).exists()]

    def bytes_needed(self, n: int) -> int:
        """Disk bytes of the shards still to write for rows [0, n)."""
        return sum((self.blocks[i][1] - self.blocks[i][0]) * self.m * 4 for i in self.missing(n)) + 4096

    def _compute_block(self, i: int) -> np.ndarray:
        s, e = self.blocks[i]
        t0 = time.perf_counter()
        phi = np.asarray(self.compute(self.x[s:e]), np.float32)
        if phi.shape != (e - s, self.m):
            raise ValueError(f"feature block of rows {s}:{e} has shape {phi.shape}, expected {(e - s, self.m)}")
        self.store.log.compute_seconds += time.perf_counter() - t0
        self.store.log.bytes_written += save_shard(self._name(i), phi)
        self.store.log.computed += 1
        return phi

    def block(self, i: int) -> np.ndarray:
        """Block i's features: read from its shard (verified), or computed and written."""
        s, e = self.blocks[i]
        path = self._name(i)
        existed = path.exists()
        phi = load_shard(path, (e - s, self.m))
        if phi is not None:
            self.store.log.loaded += 1
            return phi
        if existed:
            self.store.log.recovered += 1
        return self._compute_block(i)

    def ensure(self, n: int | None = None) -> None:
        """Computes and writes every missing shard of rows [0, n) (all rows if None), checking the
        disk first. Existing shards are verified when read, not here."""
        n = len(self.x) if n is None else n
        todo = self.missing(n)
        if not todo:
            return
        check_disk(self.store.folder, self.bytes_needed(n), f"{len(todo)} {self.role} feature shards")
        total = sum(self.blocks[i][1] - self.blocks[i][0] for i in todo)
        done, t0 = 0, time.perf_counter()
        for i in todo:
            self._compute_block(i)
            done += self.blocks[i][1] - self.blocks[i][0]
            if self.on_progress is not None:
                self.on_progress(self.role, done, total, time.perf_counter() - t0)

    def stream(self, rows: np.ndarray | None, batch_size: int, n: int | None = None) -> Iterator:
        """Yields (start, phi) over x[rows] in batches of at most batch_size rows, in the order of
        `rows` (all of rows [0, n) if None), reading each needed shard once when rows are sorted."""
        if rows is None:
            rows = np.arange(len(self.x) if n is None else n)
        rows = np.asarray(rows, np.int64)
        if len(rows) == 0:
            return
        starts = np.asarray([s for s, _ in self.blocks])
        owner = np.searchsorted(starts, rows, side="right") - 1
        if np.any(np.diff(owner) < 0):  # unsorted rows: gather all needed blocks once, then index
            needed = np.unique(owner)
            phi_all = {int(i): self.block(int(i)) for i in needed}
            for b in range(0, len(rows), batch_size):
                part, blocks = rows[b:b + batch_size], owner[b:b + batch_size]
                out = np.empty((len(part), self.m), np.float32)
                for i in np.unique(blocks):  # one gather per block, not per row
                    sel = blocks == i
                    out[sel] = phi_all[int(i)][part[sel] - self.blocks[int(i)][0]]
                yield b, out
            return
        pending, position = [], 0

        def flush():
            nonlocal pending, position
            out = np.concatenate(pending) if len(pending) > 1 else pending[0]
            pending = []
            start, position = position, position + len(out)
            return start, out

        queued = 0
        for i in np.unique(owner):
            sel = rows[owner == i] - self.blocks[int(i)][0]
            phi = self.block(int(i))[sel]
            while len(phi):
                take = batch_size - queued
                pending.append(phi[:take])
                queued += len(pending[-1])
                phi = phi[take:]
                if queued == batch_size:
                    yield flush()
                    queued = 0
        if pending:
            yield flush()


class ShardStore:
    """A folder of feature shards; `matrix` gives the shards of one (feature map, input array)."""

    def __init__(self, folder, rows: int):
        if not isinstance(rows, (int, np.integer)) or rows < 1:
            raise ValueError(f"rows per shard must be a positive integer, got {rows!r}")
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rows = int(rows)
        self.log = ShardLog()
        for stale in self.folder.glob(f".*{SUFFIX}.*.tmp"):  # writes cut short by a kill
            stale.unlink(missing_ok=True)

    def matrix(self, key: str, x, compute: Callable, m: int, role: str, on_progress: Callable | None = None):
        return ShardedMatrix(self, key, x, compute, m, role, on_progress)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob(f"*{SUFFIX}"))

    def remove(self) -> int:
        """Deletes every shard (and the folder if then empty); returns the bytes freed."""
        freed = 0
        for p in self.folder.glob(f"*{SUFFIX}"):
            freed += p.stat().st_size
            p.unlink()
        try:
            self.folder.rmdir()
        except OSError:
            pass
        return freed

"""The config's method names as one interface: init, features of a batch, width, batch size.

    fm = feature_method(spec, dim, network)          # spec: a resolved `methods[i]` entry
    params = fm.init(key, x_train)
    for start, phi in feature_batches(fm, params, x, rows, batch_size, timer):
        ...                                         # phi: (b, fm.out_dim(params)), never all rows

ntk_sketch / ntk_random_features come from `nf.serial` (nf.Sketch / nf.RandomFeatures);
random_fourier, nystrom (on the architecture's exact kernel) and gradient from `ntkfeat.baselines`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import ntkfeat as nf
from ntkfeat import baselines, distributed
from ntkfeat.batching import pad_rows, progress

# Rows per batch of the baselines when the config gives no batch_size: the values their own
# feature_fn uses (random_fourier 4096, nystrom its block_size 1024), and for gradient features
# about 256 MB of per-example gradients (P numbers each, ~4 copies in the projection).
_RANDOM_FOURIER_ROWS = 4096
_NYSTROM_ROWS = 1024
_GRADIENT_BYTES = 1 << 28
# Rows per block of the exact kernel of images: neural-tangents keeps a (H W)^2 covariance per
# pair of images, ~3 MB for 29 x 29 positions, so a block of 8 x 8 pairs stays near 1 GB.
EXACT_IMAGE_ROWS = 8
# Progress bars for feature passes of at least this many batches (on terminals and in Jupyter).
_PROGRESS_BATCHES = 8


@dataclasses.dataclass
class Network:
    """The architecture's three views, built once per config."""

    layers: tuple
    init_fn: Callable
    feature_fn: Callable
    kernel_fn: Callable

    @classmethod
    def from_layers(cls, layers) -> "Network":
        init_fn, feature_fn, kernel_fn = nf.serial(*layers)
        return cls(tuple(layers), init_fn, feature_fn, kernel_fn)


@dataclasses.dataclass(frozen=True)
class FeatureMethod:
    """init(key, x_train) -> params; apply(params, xb) -> (b, out_dim) for one batch."""

    init: Callable
    apply: Callable
    out_dim: Callable  # params -> number of features
    default_batch_size: Callable  # params -> rows per batch


def feature_method(spec: dict, dim: int, network: Network, kernel_batch_size: int | None = None) -> FeatureMethod:
    """The feature map of a resolved method entry at one dimension.

    kernel_batch_size: rows per block of the exact kernel that Nystrom evaluates (see `exact_kernel`).
    """
    name = spec["method"]
    if name in ("ntk_sketch", "ntk_random_features"):
        if name == "ntk_sketch":
            method = nf.Sketch(dim=dim, degree=spec["degree"], mode=spec["mode"], fit=spec["fit"], width=spec["width"],
                               renormalize=spec["renormalize"])
        else:
            method = nf.RandomFeatures(dim=dim, leverage=spec["leverage"], orthogonal=spec["orthogonal"],
                                       width=spec["width"])
        return FeatureMethod(
            init=lambda key, x: network.init_fn(key, x.shape, method),
            apply=lambda params, xb: network.feature_fn(params, xb, batch_size=xb.shape[0], progress=False),
            out_dim=lambda params: params.out_dim,
            default_batch_size=nf.network.default_batch_size,
        )
    if name == "random_fourier":
        init_fn, feature_fn = baselines.random_fourier(dim, bandwidth=spec["bandwidth"])
        rows = lambda params: _RANDOM_FOURIER_ROWS  # noqa: E731
    elif name == "nystrom":
        def kernel_fn(x1, x2, get):
            return network.kernel_fn(x1, x2, get, batch_size=_kernel_rows(x1, kernel_batch_size))

        init_fn, feature_fn = baselines.nystrom(kernel_fn, dim, sampling=spec["sampling"], reg=spec["reg"])
        rows = lambda params: _NYSTROM_ROWS  # noqa: E731
    elif name == "gradient":
        init_fn, feature_fn = baselines.gradient_features(network.layers, dim, width=spec["width"],
                                                          projection=spec["projection"])
        itemsize = jnp.zeros((), float).dtype.itemsize
        rows = lambda params: max(1, min(4096, _GRADIENT_BYTES // (4 * params.num_params * itemsize)))  # noqa: E731
    else:
        raise ValueError(f"method {name!r} has no feature map")
    return FeatureMethod(
        init=init_fn,
        apply=lambda params, xb: feature_fn(params, xb, batch_size=xb.shape[0]),
        out_dim=lambda params: int(params.out_dim),
        default_batch_size=rows,
    )


def block(tree):
    """Waits for every array of a pytree (JAX dispatch is asynchronous)."""
    return jax.block_until_ready(tree)


@dataclasses.dataclass
class Timer:
    """Seconds spent computing features, accumulated over the batches of a run.

    Every batch of a run has the same shape, so the feature map compiles in the run's first
    batch only: `compile_seconds()` estimates compilation as the first batch's time minus the
    mean of the others.
    """

    features: float = 0.0
    batches: int = 0
    first: float = 0.0  # seconds of the first batch

    def add(self, seconds: float) -> None:
        if self.batches == 0:
            self.first = seconds
        self.features += seconds
        self.batches += 1

    def compile_seconds(self) -> float | None:
        """First batch minus the mean of the other batches, clipped at 0; None for fewer than 2 batches
        (compilation and computation cannot be told apart from one timing)."""
        if self.batches < 2:
            return None
        return max(0.0, self.first - (self.features - self.first) / (self.batches - 1))


def feature_batches(fm: FeatureMethod, params, x: np.ndarray, rows: np.ndarray | None, batch_size: int,
                    timer: Timer | None = None, desc: str | None = None, *, local: bool = False):
    """Yields (start, phi) for x[rows] (all rows if None) in consecutive batches.

    Every batch has `batch_size` rows (a short one is padded by repeating its last row and cut
    after), so the feature map compiles once per run. Each batch is waited for and its time
    added to `timer` (`Timer.add`). A progress bar (`desc`) is shown for long passes on terminals
    and in Jupyter.

    Several processes (`ntkfeat.distributed`): each computes its share of every batch's rows and
    the shares are all-gathered, so every process gets the same full batches; with `local`, this
    process computes all of x[rows] itself (rows being its own share, chosen by the caller), in
    batches of its share's size, so that the map compiles for one shape either way. With one
    process both are the same.
    """
    n = len(x) if rows is None else len(rows)
    if local:  # batches of the size of one process's share of a batch (distributed.map_split)
        batch_size = -(-batch_size // distributed.process_count())
    starts = range(0, n, batch_size)
    if desc:
        starts = progress(starts, desc=desc, unit="batch", enabled=None if len(starts) >= _PROGRESS_BATCHES else False)

    def apply(xb):
        t0 = time.perf_counter()
        phi = block(fm.apply(params, xb))
        if timer is not None:  # the cut below is left out: a new length compiles a slice (~0.1 s on a CPU)
            timer.add(time.perf_counter() - t0)
        return phi

    for start in starts:
        stop = min(start + batch_size, n)
        xb = pad_rows(x[start:stop] if rows is None else x[rows[start:stop]], batch_size)
        phi = apply(xb) if local else distributed.map_split(apply, xb)
        yield start, phi[: stop - start]


def all_features(fm: FeatureMethod, params, x, rows, batch_size, timer=None, desc=None) -> jax.Array:
    """Features of every row of x[rows], in memory."""
    return jnp.concatenate([phi for _, phi in feature_batches(fm, params, x, rows, batch_size, timer, desc)])


def _kernel_rows(x, batch_size: int | None) -> int | None:
    return batch_size or (EXACT_IMAGE_ROWS if x.ndim == 4 else None)


def exact_kernel(network: Network, x1, x2=None, batch_size: int | None = None, desc: str | None = None,
                 float64: bool = True) -> np.ndarray:
    """The architecture's exact NTK (n1, n2) as float64.

    With a batch size (default EXACT_IMAGE_ROWS for images, none for vectors: neural-tangents'
    default) the kernel is computed in blocks of rows of x1 against all of x2, each one itself in
    batch_size x batch_size blocks, with a progress bar (`desc`, terminals and Jupyter).

    Several processes (`ntkfeat.distributed`): each computes its share of the rows of x1 and
    every process gets the whole kernel.

    `float64`: neural-tangents computes in float64 (JAX's 64-bit mode for this call). A float32
    NTK is accurate to ~1e-7 relative per entry, so its eigenvalues below ~1e-5 of the largest are
    noise (one UCI kernel had a smallest eigenvalue of -5e-3): kernel ridge at the small lambdas
    that low-noise data choose then fits that noise (NOTES.md).
    """
    x2 = x1 if x2 is None else x2
    with contextlib.ExitStack() as stack:
        if float64:
            stack.enter_context(jax.enable_x64(True))
            x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
        rows = _kernel_rows(x1, batch_size)

        def kernel(part):  # rows `part` of x1 against all of x2
            if rows is None or len(part) <= rows:
                return np.asarray(block(network.kernel_fn(part, x2, "ntk", batch_size=rows)), np.float64)
            starts = range(0, len(part), rows)
            if desc:
                starts = progress(starts, desc=desc, unit="block",
                                  enabled=None if len(starts) >= _PROGRESS_BATCHES else False)
            return np.concatenate([np.asarray(block(network.kernel_fn(part[s:s + rows], x2, "ntk", batch_size=rows)),
                                              np.float64) for s in starts])

        return distributed.map_split(kernel, x1)  # several processes: each computes its share of the rows

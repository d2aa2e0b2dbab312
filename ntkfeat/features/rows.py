"""Row streaming: a convolutional stack on images, a band of rows at a time.

A stack of VALID, stride-1 convolutions and per-position layers (activations, Identity) that
ends in a global pool maps each output position to a window of input rows, so its pooled
features are a sum over bands of output rows. Whole-image arrays of the wide sketched features
spill out of the CPU's cache, and every position costs more as images grow (NOTES.md: 1.03x /
1.13x the 32-pixel cost per position at 64 / 128 pixels and dim 1024, 1.25x / 1.77x at dim
4096). Streamed, each step reads `chunk` new input rows of a batch, and every convolution
prepends the last (filter height - 1) rows of its input from the previous step (a carry): no
row is computed twice, and the working set is that of `chunk` rows. A first step fills the
carries and takes what is left over (1 to `chunk` output rows, on those plus the receptive field
- 1 input rows); the other steps, `chunk` rows each, run in a `lax.scan`. Measured on 2 CPU cores
(`python -m experiments.bench_rows`), this made the cost per position nearly flat in the image
size and lower at every size, 32 pixels included.

The features equal the whole-image features up to float rounding (the pooled sum is taken in a
different order); tests/test_rows.py checks it for both methods, both pools and both kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntkfeat.features.state import Features, input_features
from ntkfeat.features.table import apply_layer
from ntkfeat.layers.activations import Activation
from ntkfeat.layers.linear import Conv, GlobalAvgPool, GlobalSumPool, Identity

# A step gets this fraction of the batch budget: 4-16 MB of estimated intermediates on a CPU
# (its budget follows the cache size); 16 MB was the best of the chunk sizes measured at 32-128
# pixels and dims 1024 and 4096 on a 48 MB cache, 8 MB as good on a 32 MB one (NOTES.md). On
# accelerators the budget is an eighth of the memory, so a step covers whole images there.
STEP_FRACTION = 4
# Streams only when it leaves at least this many steps: below, the carries' copies and a
# second compiled copy of the stack buy nothing.
MIN_STEPS = 2


def streamable_prefix(layers) -> int | None:
    """Index of the global pool that ends a streamable prefix of `layers` (VALID stride-1
    convolutions, at least one, and per-position layers), or None."""
    for i, layer in enumerate(layers):
        if isinstance(layer, (GlobalAvgPool, GlobalSumPool)):
            return i if any(isinstance(l, Conv) for l in layers[:i]) else None
        if isinstance(layer, Conv) and layer.padding == "VALID" and layer.strides == (1, 1):
            continue
        if not isinstance(layer, (Activation, Identity)):
            return None
    return None


def _window(layer) -> int:  # the filter's height: input rows per output row
    return layer.filter_shape[0] if isinstance(layer, Conv) else 1


def chunk_rows(specs, batch: int, budget_bytes: int, itemsize: int) -> int | None:
    """Output rows per step such that a step of `batch` images stays within `budget_bytes`, or
    None when that leaves fewer than MIN_STEPS steps (then whole images go through each layer).

    specs: what enters each layer of the prefix, then what enters the pool (`Spec`s)."""
    out_rows = specs[-1].spatial[0]
    # bytes per row of the widest layer's input and output, times 3 for a rule's intermediates
    per_row = 3 * batch * itemsize * max(s.spatial[1] * (s.nngp_dim + s.ntk_dim) for s in specs)
    chunk = max(1, budget_bytes // per_row)
    return chunk if -(-out_rows // chunk) >= MIN_STEPS else None


def _rows(f: Features, start: int | None, stop: int | None) -> Features:
    return Features(*(None if a is None else a[:, start:stop] for a in f))


def _cat(a: Features, b: Features) -> Features:
    return Features(*(None if u is None else jnp.concatenate([u, v], axis=1) for u, v in zip(a, b)))


def _sums(f: Features):
    return tuple(None if a is None else jnp.sum(a, axis=(1, 2)) for a in (f.nngp, f.ntk))


def stream_pooled(layers, params, specs, x, chunk: int, ctx, average: bool) -> Features:
    """The global pool's output Features of the prefix `layers` on images x (n, H, W, C),
    `chunk` output rows per step (see the module docstring)."""

    def run(f, carries=None):
        """The prefix on f; convolutions prepend their carries. Returns (output, new carries)."""
        new, i = [], 0
        for layer, p, s in zip(layers, params, specs):
            if isinstance(layer, Conv):
                if carries is not None:
                    f = _cat(carries[i], f)
                    i += 1
                new.append(_rows(f, f.nngp.shape[1] - (_window(layer) - 1), None))
            f = apply_layer(layer, p, s, f, ctx)
        return f, tuple(new)

    halo = sum(_window(l) - 1 for l in layers)
    out_rows = x.shape[1] - halo
    steps = (out_rows - 1) // chunk  # full steps after the first, which takes the remainder (1 to chunk rows)
    head = halo + out_rows - steps * chunk
    first, carries = run(input_features(x[:, :head]))
    rest = x[:, head:].reshape((x.shape[0], steps, chunk) + x.shape[2:])

    def step(state, rows):
        carries, acc = state
        out, carries = run(input_features(rows), carries)
        return (carries, tuple(None if a is None else a + b for a, b in zip(acc, _sums(out)))), None

    (_, (nngp, ntk)), _ = jax.lax.scan(step, (carries, _sums(first)), jnp.moveaxis(rest, 1, 0))
    if average:
        positions = out_rows * first.nngp.shape[2]
        nngp, ntk = nngp / positions, None if ntk is None else ntk / positions
    return Features(nngp, ntk, None)

"""Feature rules of the combinators: serial, parallel, FanOut, FanInSum, FanInConcat.

A FanOut copies the features into branches (a tuple of `Features`); `parallel` applies one layer
per branch; FanInSum concatenates the branches' features (neural-tangents adds their kernels,
taking the branches to be independent), and FanInConcat concatenates them weighted by
sqrt(w_i / sum w), w_i the branches' channel counts (their kernel is the weighted mean).
Concatenated features wider than the inner width are brought back to it by one SRHT (rescaled
to their exact norm when sketches are renormalized).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp

from ntkfeat import _random
from ntkfeat._norms import norm, rescale
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.features.state import Branches, Features, Spec
from ntkfeat.features.table import apply_layer, init_layer, register
from ntkfeat.layers.activations import Activation
from ntkfeat.layers.combinators import FanInConcat, FanInSum, FanOut, Parallel, Serial
from ntkfeat.layers.linear import Aggregate, Conv
from ntkfeat.sketches.srht import SRHTParams, srht, srht_init

# Concatenations may exceed the inner width by a few bias coordinates before they are sketched.
WIDTH_SLACK = 4
# Layers after which an activation's outputs cannot split the output dimension (they widen the
# features again, or hold branches): then every activation keeps the full inner width.
_WIDENING = (Conv, Serial, Parallel, FanOut, FanInSum, FanInConcat, Aggregate)


@pytree_dataclass(meta=("specs",))
class ChildrenParams:
    """Parameters of a serial or parallel block: one entry per child, and the static
    description of what enters each child."""

    children: tuple
    specs: tuple


class CompressParams(NamedTuple):
    """SRHTs that bring concatenated NNGP / NTK features back to the inner width (or None)."""

    nngp: SRHTParams | None
    ntk: SRHTParams | None


def _name(layer) -> str:
    return type(layer).__name__


def final_activation(layers) -> int:
    """Index of the activation whose outputs split the output dimension: the last one, when
    only width-preserving layers follow it; -1 if none."""
    acts = [i for i, layer in enumerate(layers) if isinstance(layer, Activation)]
    if not acts or any(isinstance(layer, _WIDENING) for layer in layers[acts[-1]:]):
        return -1
    return acts[-1]


# ------------------------------------------------------------------------------------ serial


def serial_init(layer: Serial, key, spec, ctx):
    final = final_activation(layer.layers) if ctx.top else -1
    params, specs = [], []
    for i, (child, k) in enumerate(zip(layer.layers, _random.split(key, len(layer.layers)))):
        where = f"layer {i} ({_name(child)})" if ctx.top else f"{ctx.where} > {i} ({_name(child)})"
        specs.append(spec)
        p, spec = init_layer(child, k, spec, ctx._replace(final=(i == final), where=where, top=False))
        params.append(p)
    return ChildrenParams(tuple(params), tuple(specs)), spec


def serial_apply(layer: Serial, params: ChildrenParams, spec, f, ctx):
    for child, p, s in zip(layer.layers, params.children, params.specs):
        f = apply_layer(child, p, s, f, ctx)
    return f


# ---------------------------------------------------------------------------------- parallel


def parallel_init(layer: Parallel, key, spec, ctx):
    n = len(layer.layers)
    if not isinstance(spec, Branches):
        raise ValueError(f"{ctx.where}: parallel of {n} layers gets a single input; put FanOut({n}) before it")
    if len(spec) != n:
        raise ValueError(f"{ctx.where}: parallel of {n} layers gets {len(spec)} branches")
    params, specs = [], []
    for i, (child, s, k) in enumerate(zip(layer.layers, spec, _random.split(key, n))):
        p, out = init_layer(child, k, s, ctx._replace(final=False, where=f"{ctx.where} > branch {i} ({_name(child)})",
                                                       top=False))
        params.append(p)
        specs.append(out)
    return ChildrenParams(tuple(params), Branches(spec)), Branches(specs)


def parallel_apply(layer: Parallel, params: ChildrenParams, spec, f, ctx):
    return Branches(apply_layer(child, p, s, fb, ctx)
                    for child, p, s, fb in zip(layer.layers, params.children, params.specs, f))


# ------------------------------------------------------------------------------------- FanOut


def fan_out_init(layer: FanOut, key, spec, ctx):
    if isinstance(spec, Branches):
        raise ValueError(f"{ctx.where}: FanOut gets {len(spec)} branches already; merge them first")
    return None, Branches((spec,) * layer.num)


def fan_out_apply(layer: FanOut, params, spec, f, ctx):
    return Branches((f,) * layer.num)


# ------------------------------------------------------------------------------------- FanIns


def _check_branches(layer, spec, ctx, same_channels: bool) -> tuple:
    name = _name(layer)
    if not isinstance(spec, Branches):
        raise ValueError(f"{ctx.where}: {name} needs branches (after FanOut and parallel); it gets a single input")
    shapes = [s.spatial for s in spec]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"{ctx.where}: {name} needs branches of one spatial shape, got {shapes}")
    if same_channels:
        channels = [s.channels for s in spec]
        if any(c != channels[0] for c in channels):
            raise ValueError(f"{ctx.where}: {name} needs branches of equal widths (as neural-tangents), got "
                             f"{channels} channels; give the branches' last Dense/Conv the same width")
        if not all(s.gaussian for s in spec):
            raise ValueError(f"{ctx.where}: {name} needs every branch to end with Gaussian values (a Dense, Conv, "
                             "pooling or Identity of them; neural-tangents' rule), not an activation")
    return spec


def _compress_init(key, spec: Spec, width: int, dtype) -> tuple[CompressParams, Spec]:
    k1, k2 = _random.split(key, 2)
    nngp = srht_init(k1, spec.nngp_dim, width, dtype) if spec.nngp_dim > width + WIDTH_SLACK else None
    ntk = srht_init(k2, spec.ntk_dim, width, dtype) if spec.ntk_dim > width + WIDTH_SLACK else None
    out = spec._replace(nngp_dim=nngp.out_dim if nngp else spec.nngp_dim,
                        ntk_dim=ntk.out_dim if ntk else spec.ntk_dim)
    return CompressParams(nngp, ntk), out


def compress(sketch: SRHTParams | None, x, renormalize: bool):
    if sketch is None or x is None:
        return x
    out = srht(sketch, x)
    return rescale(out, norm(x)) if renormalize else out


def _merge_init(layer, key, specs, ctx, weights) -> tuple[CompressParams, Spec]:
    total = sum(weights)
    share = [w / total for w in weights]
    first = specs[0]
    merged = first._replace(
        nngp_dim=sum(s.nngp_dim for s in specs),
        ntk_dim=sum(s.ntk_dim for s in specs),
        diag_known=all(s.diag_known for s in specs),
        rho_min=min(min(s.rho_min for s in specs), 0.0),
        nngp_scale=sum(a * s.nngp_scale for a, s in zip(share, specs)) * (total if isinstance(layer, FanInSum) else 1),
        ntk_scale=sum(a * s.ntk_scale for a, s in zip(share, specs)) * (total if isinstance(layer, FanInSum) else 1),
        ntk_ends_with_nngp=False,
        power=first.power if all(s.power == first.power for s in specs) else None,
    )
    return _compress_init(key, merged, ctx.width, ctx.dtype)


def _merge_apply(params: CompressParams, renormalize: bool, branches, factors) -> Features:
    def cat(parts):
        parts = [f * p for f, p in zip(factors, parts) if p is not None]
        return None if not parts else (jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0])

    nngp = cat([b.nngp for b in branches])
    ntk = cat([b.ntk for b in branches])
    diags = [b.diag for b in branches]
    diag = None if any(d is None for d in diags) else sum(f * f * d for f, d in zip(factors, diags))
    return Features(compress(params.nngp, nngp, renormalize), compress(params.ntk, ntk, renormalize), diag)


def fan_in_sum_init(layer: FanInSum, key, spec, ctx):
    specs = _check_branches(layer, spec, ctx, same_channels=True)
    params, out = _merge_init(layer, key, specs, ctx, [1.0] * len(specs))
    return params, out._replace(channels=specs[0].channels, gaussian=True)


def fan_in_sum_apply(layer: FanInSum, params: CompressParams, spec, f, ctx):
    return _merge_apply(params, spec[0].renormalize, f, [1.0] * len(f))


def _concat_weights(specs) -> list[float]:
    channels = [s.channels for s in specs]
    # neural-tangents: equal widths give the plain mean.
    return [1.0] * len(specs) if all(c == channels[0] for c in channels) else [float(c) for c in channels]


def fan_in_concat_init(layer: FanInConcat, key, spec, ctx):
    specs = _check_branches(layer, spec, ctx, same_channels=False)
    params, out = _merge_init(layer, key, specs, ctx, _concat_weights(specs))
    return params, out._replace(channels=sum(s.channels for s in specs), gaussian=False)


def fan_in_concat_apply(layer: FanInConcat, params: CompressParams, spec, f, ctx):
    weights = _concat_weights(spec)
    factors = [math.sqrt(w / sum(weights)) for w in weights]
    return _merge_apply(params, spec[0].renormalize, f, factors)


register(Serial, None, serial_init, serial_apply)
register(Parallel, None, parallel_init, parallel_apply)
register(FanOut, None, fan_out_init, fan_out_apply)
register(FanInSum, None, fan_in_sum_init, fan_in_sum_apply)
register(FanInConcat, None, fan_in_concat_init, fan_in_concat_apply)

__all__ = ["ChildrenParams", "CompressParams", "WIDTH_SLACK", "final_activation"]

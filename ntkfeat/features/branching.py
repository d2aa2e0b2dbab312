"""Feature rules of the combinators: serial, parallel, FanOut, FanInSum, FanInProd, FanInConcat.

A FanOut copies the features into branches (a tuple of `Features`); `parallel` applies one layer
per branch; FanInSum concatenates the branches' features (neural-tangents adds their kernels,
taking the branches to be independent), and FanInConcat concatenates them weighted by
sqrt(w_i / sum w), w_i the branches' channel counts (their kernel is the weighted mean).
Concatenated features wider than the inner width are brought back to it by one SRHT (rescaled
to their exact norm when sketches are renormalized).

FanInProd multiplies the kernels: nngp = prod_i nngp_i, ntk = sum_i ntk_i prod_{j != i} nngp_j
(neural-tangents' rule, at every pair of positions). Its NNGP features are the tensor product
a_1 (x) ... (x) a_B of the branches' NNGP features a_i, and its NTK features the concatenation
over i of t_i (x) (the a_j, j != i), t_i the NTK features of branch i (none where its NTK is
zero). Each product is built left to right one factor at a time: written out while it fits the
inner width, a TensorSRHT of the two factors otherwise (unbiased; renormalized sketches are
rescaled to the exact product of the factors' norms). The NTK terms share the inner width in
proportion to their diagonal masses, the split that minimizes their summed variance.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax.numpy as jnp

from ntkfeat import _random
from ntkfeat._norms import norm, rescale
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.features.state import Branches, Features, Spec
from ntkfeat.features.table import apply_layer, init_layer, register
from ntkfeat.layers.activations import Activation
from ntkfeat.layers.combinators import FanInConcat, FanInProd, FanInSum, FanOut, Parallel, Serial
from ntkfeat.layers.linear import Aggregate, Conv
from ntkfeat.sketches.srht import (
    SRHTParams, split_proportional, srht, srht_init, tensor_srht, tensor_srht_init,
)

# Concatenations may exceed the inner width by a few bias coordinates before they are sketched.
WIDTH_SLACK = 4
# Layers after which an activation's outputs cannot split the output dimension (they widen the
# features again, or hold branches): then every activation keeps the full inner width.
_WIDENING = (Conv, Serial, Parallel, FanOut, FanInSum, FanInProd, FanInConcat, Aggregate)


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


def _check_branches(layer, spec, ctx, same_channels: bool, gaussian: bool) -> tuple:
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
    if gaussian and not all(s.gaussian for s in spec):
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
    specs = _check_branches(layer, spec, ctx, same_channels=True, gaussian=True)
    params, out = _merge_init(layer, key, specs, ctx, [1.0] * len(specs))
    return params, out._replace(channels=specs[0].channels, gaussian=True)


def fan_in_sum_apply(layer: FanInSum, params: CompressParams, spec, f, ctx):
    return _merge_apply(params, spec[0].renormalize, f, [1.0] * len(f))


def _concat_weights(specs) -> list[float]:
    channels = [s.channels for s in specs]
    # neural-tangents: equal widths give the plain mean.
    return [1.0] * len(specs) if all(c == channels[0] for c in channels) else [float(c) for c in channels]


def fan_in_concat_init(layer: FanInConcat, key, spec, ctx):
    specs = _check_branches(layer, spec, ctx, same_channels=False, gaussian=False)
    params, out = _merge_init(layer, key, specs, ctx, _concat_weights(specs))
    return params, out._replace(channels=sum(s.channels for s in specs), gaussian=False)


def fan_in_concat_apply(layer: FanInConcat, params: CompressParams, spec, f, ctx):
    weights = _concat_weights(spec)
    factors = [math.sqrt(w / sum(weights)) for w in weights]
    return _merge_apply(params, spec[0].renormalize, f, factors)


# ---------------------------------------------------------------------------------- FanInProd


class ProductChain(NamedTuple):
    """Features of a_0 (x) a_1 (x) ... built left to right: per step k >= 1, the TensorSRHT of
    (the product so far, a_k), or None where the step's product is written out."""

    steps: tuple


class ProductParams(NamedTuple):
    """nngp: the product of the branches' NNGP features. ntk: per branch i, the product of the
    other branches' NNGP features and then of its NTK features (None where its NTK is zero)."""

    nngp: ProductChain
    ntk: tuple


def _chain_init(key, dims, widths, dtype) -> tuple[ProductChain, int]:
    """The chain of factors of widths `dims`, step k (k >= 1) giving at most widths[k - 1]
    features; and its output width."""
    steps, width = [], dims[0]
    for k, d, w in zip(_random.split(key, max(len(dims) - 1, 1)), dims[1:], widths):
        if width * d <= w:  # the tensor product itself: exact, and no wider than a sketch of it
            steps.append(None)
            width *= d
        else:
            steps.append(tensor_srht_init(k, width, d, w, dtype))
            width = w
    return ProductChain(tuple(steps)), width


def _chain_apply(chain: ProductChain, factors, renormalize: bool):
    out = factors[0]
    for step, v in zip(chain.steps, factors[1:]):
        if step is None:
            out = (out[..., :, None] * v[..., None, :]).reshape(out.shape[:-1] + (-1,))
        else:
            sketch = tensor_srht(step, out, v)
            out = rescale(sketch, norm(out) * norm(v)) if renormalize else sketch
    return out


def _product_rho_min(specs) -> float:
    """The least product of correlations c_i in [rho_min_i, 1]: the product is multilinear, so
    its least value over the box is at a corner."""
    corners = itertools.product(*[(max(s.rho_min, -1.0), 1.0) for s in specs])
    return max(-1.0, min(math.prod(c) for c in corners))


def fan_in_prod_init(layer: FanInProd, key, spec, ctx):
    # neural-tangents: equal shapes (channels too); no Gaussian inputs needed, none come out.
    specs = _check_branches(layer, spec, ctx, same_channels=True, gaussian=False)
    n, width = len(specs), ctx.width
    keys = _random.split(key, n + 1)
    nngp, nngp_dim = _chain_init(keys[0], [s.nngp_dim for s in specs], [width] * (n - 1), ctx.dtype)
    # Diagonal mass of term i, ntk_i prod_{j != i} nngp_j at standardized inputs.
    masses = [s.ntk_scale * math.prod(o.nngp_scale for j, o in enumerate(specs) if j != i)
              for i, s in enumerate(specs)]
    terms = [i for i, s in enumerate(specs) if s.ntk_dim]
    if len(terms) > width:
        raise ValueError(f"{ctx.where}: FanInProd has {len(terms)} NTK terms, more than the inner width {width}; "
                         f"raise the method's width (or dim) to at least {len(terms)}")
    shares = split_proportional(width, [masses[i] for i in terms]) if terms else []
    ntk, ntk_dim = [None] * n, 0
    for i, share in zip(terms, shares):
        dims = [o.nngp_dim for j, o in enumerate(specs) if j != i] + [specs[i].ntk_dim]
        ntk[i], d = _chain_init(keys[1 + i], dims, [width] * (n - 2) + [share], ctx.dtype)
        ntk_dim += d
    powers = [s.power for s in specs]
    out = specs[0]._replace(
        nngp_dim=nngp_dim, ntk_dim=ntk_dim, diag_known=all(s.diag_known for s in specs),
        rho_min=_product_rho_min(specs), nngp_scale=math.prod(s.nngp_scale for s in specs),
        ntk_scale=sum(masses[i] for i in terms),
        # One branch: the product is that branch, unchanged.
        ntk_ends_with_nngp=n == 1 and specs[0].ntk_ends_with_nngp, gaussian=n == 1 and specs[0].gaussian,
        power=None if any(p is None for p in powers) else float(sum(powers)),
    )
    return ProductParams(nngp, tuple(ntk)), out


def fan_in_prod_apply(layer: FanInProd, params: ProductParams, spec, f, ctx):
    renormalize = spec[0].renormalize
    nngp = _chain_apply(params.nngp, [b.nngp for b in f], renormalize)
    terms = [_chain_apply(chain, [b.nngp for j, b in enumerate(f) if j != i] + [f[i].ntk], renormalize)
             for i, chain in enumerate(params.ntk) if chain is not None]
    ntk = None if not terms else (jnp.concatenate(terms, axis=-1) if len(terms) > 1 else terms[0])
    diags = [b.diag for b in f]
    diag = None if any(d is None for d in diags) else math.prod(diags)
    return Features(nngp, ntk, diag)


register(Serial, None, serial_init, serial_apply)
register(Parallel, None, parallel_init, parallel_apply)
register(FanOut, None, fan_out_init, fan_out_apply)
register(FanInSum, None, fan_in_sum_init, fan_in_sum_apply)
register(FanInConcat, None, fan_in_concat_init, fan_in_concat_apply)
register(FanInProd, None, fan_in_prod_init, fan_in_prod_apply)

__all__ = ["ChildrenParams", "CompressParams", "ProductChain", "ProductParams", "WIDTH_SLACK", "final_activation"]

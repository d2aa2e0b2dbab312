"""Gradient features: the per-example parameter gradient of a finite-width network.

    phi(x) = d f(theta, x) / d theta  (flattened),   phi(x).phi(y) = Theta_emp(x, y)

is the empirical NTK of the network f with parameters theta (NTK parameterization, as in
neural-tangents), which converges to the analytic NTK (`kernel_fn(x, y, 'ntk')` of the same layers)
as the width grows (Jacot et al., NeurIPS 2018). It has one column per parameter; with `dim`
smaller than that, a fixed random projection S (E S^T S = I) maps it to dim columns and keeps the
Gram in expectation: E (S phi(x)).(S phi(y)) = phi(x).phi(y).

- 'srht' (default): the SRHT of `ntkfeat.sketches.srht`, O(P log P) per row and O(P) memory.
- 'gaussian': G^T phi / sqrt(dim) with G (P, dim) i.i.d. N(0, 1): a dense matrix of P * dim
  entries, so only for small networks.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ntkfeat import _random, compat
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.baselines._common import check_batch, check_dim, check_train, default_dtype, map_rows
from ntkfeat.layers.base import Layer
from ntkfeat.layers.combinators import Parallel, Serial, check_layers
from ntkfeat.layers.linear import Conv, Dense
from ntkfeat.network import finite_network
from ntkfeat.sketches.srht import SRHTParams, srht, srht_init

_PROJECTIONS = ("srht", "gaussian")
_MAX_GAUSSIAN_ENTRIES = 1 << 28  # 1 GiB of float32: beyond that, use 'srht'
_BATCH_BYTES = 1 << 28  # memory for one batch's per-example gradients (and their transform)


@pytree_dataclass(meta=("layers", "input_shape", "num_params", "out_dim"))
class GradientParams:
    """Network parameters (neural-tangents' pytree), the projection, and the static description."""

    network: Any  # neural-tangents parameters of the finite network
    projection: SRHTParams | jax.Array | None  # SRHT, (P, dim) Gaussian, or None: the full gradient
    layers: Serial  # the architecture with its finite widths filled in
    input_shape: tuple[int, ...]
    num_params: int  # P, the length of the flattened gradient
    out_dim: int  # number of features: dim, or P without projection


def finite_layers(layers: Sequence | Layer, width: int) -> Serial:
    """The architecture with every unset hidden width (Dense.out_dim, Conv.out_chan) set to `width`.

    The readout (the last Dense or Conv) is left at its default of one output (a readout Conv with
    out_chan None gets out_chan=1), so that the network has a scalar output per input.
    """
    top = layers if isinstance(layers, Serial) else Serial((layers,) if isinstance(layers, Layer) else
                                                            check_layers(layers))
    width = check_dim("width", width)
    if not top.weighted:
        raise ValueError("gradient features need at least one Dense or Conv layer (the network has no parameters)")
    return _with_widths(top, width, readout=True)


def _with_widths(layer, width: int, readout: bool):
    if isinstance(layer, Dense):
        return layer if (layer.out_dim is not None or readout) else dataclasses.replace(layer, out_dim=width)
    if isinstance(layer, Conv):
        return layer if layer.out_chan is not None else dataclasses.replace(layer, out_chan=1 if readout else width)
    if isinstance(layer, Serial):
        weighted = [i for i, child in enumerate(layer.layers) if child.weighted]
        last = weighted[-1] if (readout and weighted) else -1
        return Serial(tuple(_with_widths(child, width, i == last) for i, child in enumerate(layer.layers)))
    if isinstance(layer, Parallel):
        return Parallel(tuple(_with_widths(child, width, False) for child in layer.layers))
    return layer


def _scalar_output(apply_fn, network, x):
    """f(theta, x) for one input x (without the batch axis)."""
    return apply_fn(network, x[None])[0, 0]


def flat_gradients(apply_fn, network, x: jax.Array) -> jax.Array:
    """Per-example gradients of the scalar output, flattened: (n, *input_shape) -> (n, P)."""
    grad = jax.grad(_scalar_output, argnums=1)

    def one(xi):
        return ravel_pytree(grad(apply_fn, network, xi))[0]

    return jax.vmap(one)(x)


def project(projection, g: jax.Array) -> jax.Array:
    """(n, P) -> (n, dim) with E <S g, S h> = <g, h>; the identity for projection None."""
    if projection is None:
        return g
    if isinstance(projection, SRHTParams):
        return srht(projection, g)
    return g @ projection * (1.0 / projection.shape[1]) ** 0.5


def gradient_features(layers: Sequence, dim: int | None = None, width: int = 512, projection: str = "srht"):
    """Gradient features of the finite network of `layers`: phi(x) = d f(theta, x) / d theta.

    phi(x).phi(y) is the empirical NTK (`empirical_ntk`) at the initial parameters theta; with dim
    below the parameter count P, the projection S gives S phi with E (S phi).(S phi') = phi.phi'.

    Args:
      layers: ntkfeat layers (nf.Dense, nf.Relu, nf.Conv, ...), ending in a scalar readout.
      dim: number of features; None or >= P: the full gradient (P columns).
      width: hidden width of every Dense (out_dim) and Conv (out_chan) left unset (see
        `finite_layers`).
      projection: 'srht' or 'gaussian' (dense, only for P * dim <= 2^28).

    Returns:
      (init_fn, feature_fn):
        init_fn(key, x_train) -> GradientParams (x_train sets only the input shape; theta is
          neural-tangents' initialization from the key).
        feature_fn(params, x, *, batch_size=None) -> (n, min(dim, P)) features, in batches of
          batch_size rows (default: ~256 MB of gradients per batch).
    """
    layers = finite_layers(layers, width)
    if dim is not None:
        dim = check_dim("dim", dim)
    if projection not in _PROJECTIONS:
        raise ValueError(f"projection must be one of {_PROJECTIONS}, got {projection!r}")
    net_init, apply_fn = finite_network(layers)

    @jax.jit
    def apply(params: GradientParams, x):
        g = flat_gradients(apply_fn, params.network, x)
        return project(params.projection, g)

    def init_fn(key, x_train) -> GradientParams:
        x = check_train(x_train)
        input_shape = tuple(int(s) for s in x.shape[1:])
        k_net, k_proj = _random.split(key, 2)
        out_shape, network = net_init(k_net, (-1,) + input_shape)
        if tuple(int(s) for s in out_shape[1:]) != (1,):
            raise ValueError(
                f"the network's output per input has shape {tuple(out_shape[1:])}; gradient features need one "
                "scalar output: end the stack with a readout Dense (out_dim None or 1), e.g. "
                "[..., GlobalAvgPool(), Dense()] or [..., Flatten(), Dense()]"
            )
        dtype = default_dtype()
        network = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), network)
        num_params = int(ravel_pytree(network)[0].shape[0])
        proj = None
        if dim is not None and dim < num_params:
            if projection == "srht":
                proj = srht_init(k_proj, num_params, dim, dtype)
            else:
                if num_params * dim > _MAX_GAUSSIAN_ENTRIES:
                    raise ValueError(
                        f"a Gaussian projection of {num_params} parameters to dim={dim} needs "
                        f"{num_params * dim:.2e} entries; use projection='srht'"
                    )
                proj = jnp.asarray(_random.normal(k_proj, (num_params, dim)), dtype)
        out_dim = num_params if proj is None else dim
        return GradientParams(network, proj, layers, input_shape, num_params, out_dim)

    def feature_fn(params: GradientParams, x, *, batch_size: int | None = None) -> jax.Array:
        if not isinstance(params, GradientParams):
            raise TypeError("params must come from gradient_features' init_fn (GradientParams)")
        if params.layers != layers:
            raise ValueError("these parameters were made by the init_fn of a different architecture or width")
        x = check_batch(x, params.input_shape)
        itemsize = jnp.dtype(default_dtype()).itemsize
        # Gradients, their FFT (complex, twice the size) and the output: ~4 P numbers per row.
        default = max(1, min(4096, _BATCH_BYTES // (4 * params.num_params * itemsize)))
        return map_rows(functools.partial(apply, params), x, batch_size or default)

    return init_fn, feature_fn


def empirical_ntk(layers: Sequence, width: int = 512):
    """neural-tangents' empirical NTK of the finite network that `gradient_features` builds.

    Theta_emp(x, y) = sum_p (d f(x) / d theta_p) (d f(y) / d theta_p), via `nt.empirical_ntk_fn`
    (Jacobian contraction), at the parameters of a `GradientParams` (or a raw neural-tangents
    parameter pytree).

    Returns:
      ntk_fn(params, x1, x2=None) -> (n1, n2).
    """
    layers = finite_layers(layers, width)
    nt = compat.neural_tangents()
    _, apply_fn = finite_network(layers)
    ntk = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0))

    def ntk_fn(params, x1, x2=None) -> jax.Array:
        if isinstance(params, GradientParams):
            if params.layers != layers:
                raise ValueError("these parameters were made for a different architecture or width")
            params = params.network
        x1 = jnp.asarray(x1)
        return ntk(x1, None if x2 is None else jnp.asarray(x2), params)

    return ntk_fn

"""What flows between layers of a feature map.

`Features` holds arrays; `Spec` holds the matching static description (shapes and the scalar
bookkeeping used to size and fit each layer), so every layer's parameters can be made before
any data is seen. Between a FanOut and a FanIn the network carries several branches: then the
value and the description are `Branches` (tuples) of them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax


class Features(NamedTuple):
    """Random features of one layer's kernels, per spatial position.

    nngp: (n, *spatial, m1) with <nngp(x), nngp(y)> ~ NNGP(x, y) at matching positions.
    ntk: (n, *spatial, m2) with <ntk(x), ntk(y)> ~ NTK(x, y), or None while the NTK is zero.
    diag: (n, *spatial) exact NNGP(x, x) per position, or None where it is no longer a function
      of per-position quantities (after pooling); then the feature norm stands in for it.
    """

    nngp: jax.Array
    ntk: jax.Array | None
    diag: jax.Array | None


class Spec(NamedTuple):
    """Static description of a `Features` value.

    spatial: spatial shape (() for fully-connected).
    nngp_dim, ntk_dim: feature widths (ntk_dim = 0 while the NTK is zero).
    diag_known: whether `diag` is carried.
    rho_min: a lower bound on the correlations the next nonlinearity sees (fit interval).
    nngp_scale, ntk_scale: the NNGP and NTK diagonals of a standardized input (|x|^2 = channels)
      with uniform positions: the typical variance q an activation sees, and the masses used to
      split the output dimension between the two.
    ntk_ends_with_nngp: the NTK features are [other, nngp] with the NNGP features themselves as
      their last nngp_dim coordinates (true after Dense and Conv, kept by pooling).
    renormalize: sketched features are rescaled to the norms they estimate (`Sketch`).
    channels: the channel count of a finite network here (neural-tangents tracks it: FanInSum
      and FanInProd need equal shapes and FanInConcat weights branches by it).
    gaussian: the values are Gaussian in the infinite-width limit (after Dense or Conv, kept by
      linear layers; inputs and activation outputs are not): an activation needs it.
    power: the features are positively homogeneous of this degree in the input (phi(c x) =
      c^power phi(x) for c > 0; None: not homogeneous, e.g. after a bias or a general activation).
      Homogeneous maps factor the input's scale out (exact for any |x|, no under- or overflow).
    """

    spatial: tuple[int, ...]
    nngp_dim: int
    ntk_dim: int
    diag_known: bool
    rho_min: float
    nngp_scale: float
    ntk_scale: float
    ntk_ends_with_nngp: bool = False
    renormalize: bool = False
    channels: int = 1
    gaussian: bool = False
    power: float | None = 1.0

    @property
    def positions(self) -> int:
        return math.prod(self.spatial)


class Branches(tuple):
    """The values (Features) or descriptions (Spec) of several branches, between FanOut and a FanIn."""

    __slots__ = ()


def input_spec(input_shape: tuple[int, ...], renormalize: bool) -> Spec:
    """The description of the inputs x / sqrt(C): NNGP = <x, y> / C, no NTK yet."""
    return Spec(tuple(input_shape[:-1]), input_shape[-1], 0, True, -1.0, 1.0, 0.0, renormalize=renormalize,
                channels=input_shape[-1])


def input_features(x) -> Features:
    """The Features of inputs x (n, ..., C): x / sqrt(C), no NTK yet, and NNGP(x, x) = |x|^2 / C
    per position (see `input_spec`)."""
    channels = x.shape[-1]
    return Features(x / math.sqrt(channels), None, (x * x).sum(axis=-1) / channels)

"""What flows between layers of a feature map.

`Features` holds arrays; `Spec` holds the matching static description (shapes and the scalar
bookkeeping used to size and fit each layer), so every layer's parameters can be made before
any data is seen.
"""

from __future__ import annotations

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
    nngp_scale, ntk_scale: the NNGP and NTK diagonals of a unit-norm input with uniform
      positions (used to split the output dimension between the two).
    ntk_ends_with_nngp: the NTK features are [other, nngp] with the NNGP features themselves as
      their last nngp_dim coordinates (true after Dense and Conv, kept by pooling).
    renormalize: sketched features are rescaled to the norms they estimate (`Sketch`).
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

    @property
    def positions(self) -> int:
        out = 1
        for s in self.spatial:
            out *= s
        return out

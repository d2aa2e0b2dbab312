"""Sketch of x (x) [c, y]: a tensor product whose right factor has a constant coordinate.

x (x) [c, y] = [c x, x (x) y] up to a permutation of coordinates, so its Gram is
c^2 <x, x'> + <x, x'> <y, y'>. Both arc-cosine factors used at a ReLU have such a constant
(kappa0 = 1/2 + odd terms), and it often carries half of the mass. Sketching the two blocks
separately keeps that half exact (or a plain SRHT of x, far less noisy than a TensorSRHT) and
leaves the TensorSRHT only the rest. When x is narrow, the TensorSRHT block is exact too once its
width reaches dim(x) * dim(y) (stratified rows; see `srht`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntkfeat import _random
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.sketches.srht import (
    SRHTParams,
    TensorSRHTParams,
    fft_length,
    srht,
    srht_init,
    tensor_srht,
    tensor_srht_init,
)


@pytree_dataclass(meta=("constant",))
class OffsetProductParams:
    linear: SRHTParams | None  # None: c x is kept exactly
    tensor: TensorSRHTParams | None  # None: y is empty
    constant: float


def offset_product_init(
    key, x_dim: int, y_dim: int, constant: float, out_dim: int, dtype=jnp.float32
) -> tuple[OffsetProductParams, int]:
    """Parameters for features of x (x) [constant, y] with about out_dim outputs.

    The two blocks get equal shares (their variances are balanced when constant^2 ~ E|y|^2, as
    for both ReLU factors); the c x block is exact when x fits its share.

    Returns:
      (params, actual output width).
    """
    k_lin, k_ten = _random.split(key, 2)
    if y_dim == 0:
        lin_dim = out_dim
    else:
        lin_dim = out_dim // 2
    linear = None if x_dim <= lin_dim else srht_init(k_lin, x_dim, lin_dim, dtype)
    lin_width = x_dim if linear is None else lin_dim
    tensor = None
    ten_width = 0
    if y_dim:
        ten_width = min(out_dim - lin_width, fft_length(x_dim) * fft_length(y_dim))
        if ten_width < 1:
            raise ValueError(f"out_dim={out_dim} leaves no room for the product block")
        tensor = tensor_srht_init(k_ten, x_dim, y_dim, ten_width, dtype)
    return OffsetProductParams(linear, tensor, float(constant)), lin_width + ten_width


def offset_product(params: OffsetProductParams, x: jax.Array, y: jax.Array | None) -> jax.Array:
    """Features of x (x) [c, y] along the last axis."""
    lin = params.constant * (x if params.linear is None else srht(params.linear, x))
    if params.tensor is None:
        return lin
    return jnp.concatenate([lin, tensor_srht(params.tensor, x, y)], axis=-1)

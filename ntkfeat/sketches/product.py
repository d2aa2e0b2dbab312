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
    HartleyRows,
    SRHTParams,
    TensorSRHTParams,
    fft_length,
    shared_rows_init,
    shared_srht,
    srht,
    srht_init,
    tensor_srht,
    tensor_srht_init,
)


@pytree_dataclass(meta=("constant", "linear_mode"))
class OffsetProductParams:
    linear: SRHTParams | HartleyRows | None
    tensor: TensorSRHTParams | None  # None: y is empty
    constant: float
    # 'exact': c x as it is; 'srht': its own SRHT; 'shared': rows of the TensorSRHT's transform of
    # x (one FFT of x serves both blocks).
    linear_mode: str


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
    lin_dim = out_dim if y_dim == 0 else out_dim // 2
    exact = x_dim <= lin_dim
    lin_width = x_dim if exact else lin_dim
    tensor = None
    ten_width = 0
    if y_dim:
        ten_width = min(out_dim - lin_width, fft_length(x_dim) * fft_length(y_dim))
        if ten_width < 1:
            raise ValueError(f"out_dim={out_dim} leaves no room for the product block")
        tensor = tensor_srht_init(k_ten, x_dim, y_dim, ten_width, dtype)
    if exact:
        linear, mode = None, "exact"
    elif tensor is not None:
        linear, mode = shared_rows_init(k_lin, tensor.left, lin_dim, dtype), "shared"
    else:
        linear, mode = srht_init(k_lin, x_dim, lin_dim, dtype), "srht"
    return OffsetProductParams(linear, tensor, float(constant), mode), lin_width + ten_width


def offset_product(params: OffsetProductParams, x: jax.Array, y: jax.Array | None) -> jax.Array:
    """Features of x (x) [c, y] along the last axis."""
    if params.linear_mode == "exact":
        lin = x
    elif params.linear_mode == "srht":
        lin = srht(params.linear, x)
    else:
        lin = shared_srht(params.linear, params.tensor.left, x)
    lin = params.constant * lin
    if params.tensor is None:
        return lin
    return jnp.concatenate([lin, tensor_srht(params.tensor, x, y)], axis=-1)

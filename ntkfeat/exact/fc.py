"""Closed-form NNGP and NTK of a bias-free fully-connected ReLU network, as functions of rho.

Paper convention (depth L = number of ReLU layers, inputs normalized):

    Sigma^0 = Theta^0 = rho
    Sigma^h = arccos_kernel1(Sigma^{h-1}),   dSigma^h = arccos_kernel0(Sigma^{h-1})
    Theta^h = Theta^{h-1} dSigma^h + Sigma^h

Theta_L(x, y) = |x| |y| K_L(rho) with K_L(1) = L + 1. neural-tangents' network
[Dense(W_std=sqrt 2), Relu] x L, Dense(W_std=1) has NTK |x| |y| K_L(rho) / d.
NumPy inputs are computed in float64, JAX inputs in JAX.
"""

from __future__ import annotations

from ntkfeat.exact.arccos import _module, arccos_kernel0, arccos_kernel1


def _check_depth(depth: int) -> None:
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, got {depth!r}")


def fc_nngp(rho, depth: int):
    """Sigma_L(rho): the normalized NNGP kernel after `depth` ReLU layers (value 1 at rho = 1)."""
    _check_depth(depth)
    _, k = _module(rho)
    for _ in range(depth):
        k = arccos_kernel1(k)
    return k


def fc_ntk(rho, depth: int):
    """K_L(rho): the normalized NTK of `depth` ReLU layers (value depth + 1 at rho = 1)."""
    _check_depth(depth)
    _, k = _module(rho)
    theta = k
    for _ in range(depth):
        theta = theta * arccos_kernel0(k) + arccos_kernel1(k)
        k = arccos_kernel1(k)
    return theta

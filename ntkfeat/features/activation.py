"""What every method's activation rule shares: checks, normalization and output widths.

At an activation the NNGP features z (per input and position) hold the pre-activation
covariance, so u = z / |z| is the unit direction and q = |z|^2 (or the exact diagonal, when it
is known) the variance; the dual kernel is a function of (q_x, q_y, <u_x, u_y>).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntkfeat import _norms
from ntkfeat.features.state import Branches, Spec

# One NTK feature (through a TensorSRHT) is noisier than one NNGP feature; measured on UCI data
# (NOTES.md), giving the NTK part twice its mass share balanced the two errors best.
NTK_WEIGHT = 2.0


def check_activation_input(spec, ctx, name: str) -> Spec:
    if isinstance(spec, Branches):
        raise ValueError(f"{ctx.where}: {name} gets {len(spec)} branches; merge them first "
                         "(FanInSum, FanInProd or FanInConcat)")
    if not spec.gaussian:
        raise ValueError(
            f"{ctx.where}: {name} needs Gaussian pre-activations: put a Dense or Conv before it (neural-tangents' "
            "rule; inputs and activation outputs are not Gaussian)"
        )
    return spec


def normalize(nngp: jax.Array, diag: jax.Array | None):
    """(u, scale, norm): the unit feature, the exact root-diagonal sqrt(q) (or the feature norm
    where the diagonal is not known), and the feature norm |nngp|."""
    u, norm = _norms.unit(nngp)  # gradient 0 (not NaN) at zero rows; exact at any scale
    scale = norm if diag is None else _norms.safe_sqrt(diag)
    return u, scale, norm


def split_output(dim: int, nngp_scale: float, ntk_scale: float, ntk_weight: float = NTK_WEIGHT) -> tuple[int, int]:
    """(nngp width, ntk width) of the last activation.

    `dim` is split in proportion to each kernel's diagonal mass times `ntk_weight` for the NTK
    part, the square root of how much noisier one NTK feature is than one NNGP feature (the
    NTK part goes through a TensorSRHT; the NNGP part does not): the split that minimizes the
    summed variance mass^2 v / m.
    """
    ntk = ntk_weight * max(ntk_scale, 0.0)
    total = ntk + max(nngp_scale, 0.0)
    share = ntk / total if total > 0 else 0.5  # zero kernels (W_std = 0) still get some features
    m_ntk = min(max(int(round(dim * share)), 1), dim - 1)
    return dim - m_ntk, m_ntk


def activation_widths(ctx, spec: Spec, nngp_scale: float, ntk_scale: float) -> tuple[int, int, int]:
    """(nngp width, ntk width, derivative-feature width) of an activation's outputs; the scales
    are those after the activation."""
    method, width = ctx.method, ctx.width
    if not ctx.final:
        return width, (width if spec.ntk_dim else 0), width
    if not spec.ntk_dim:
        return method.dim, 0, width
    m_nngp, m_ntk = split_output(method.dim, nngp_scale, ntk_scale)
    return m_nngp, m_ntk, width


def check_widths(ctx, name: str, m_nngp: int, m_ntk: int, has_ntk: bool, least: int = 4,
                 scales: tuple[float, float] | None = None) -> None:
    """A clear error when the method's dimension (or inner width) leaves a layer too few features.
    scales: the (nngp, ntk) masses the last activation splits dim by, for the least dim that works."""
    if m_nngp < least or (has_ntk and m_ntk < least):
        method = ctx.method
        what = f"{name} would get {m_nngp} NNGP and {m_ntk} NTK features (at least {least} each)"
        if not ctx.final:  # an inner layer: its features number `width`
            setting = "width" if method.width is not None else "dim"
            raise ValueError(f"{ctx.where}: {type(method).__name__}({setting}={ctx.width}) is too small for this "
                             f"network: {what}; use {setting} >= {least}")
        hint = ""
        if scales is not None:  # the split is not linear in dim (rounding): search the least one
            ok = (d for d in range(2, 1 << 16) if _split_ok(d, scales, least, has_ntk))
            hint = f"; use dim >= {next(ok, 1 << 16)}"
        raise ValueError(f"{ctx.where}: {type(method).__name__}(dim={method.dim}) is too small for this network: "
                         f"{what}{hint}")


def _split_ok(dim: int, scales, least: int, has_ntk: bool) -> bool:
    m_nngp, m_ntk = split_output(dim, *scales)
    return m_nngp >= least and (not has_ntk or m_ntk >= least)


__all__ = ["NTK_WEIGHT", "activation_widths", "check_activation_input", "check_widths", "normalize", "split_output"]

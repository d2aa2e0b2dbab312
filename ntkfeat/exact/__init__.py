"""Exact kernels: arc-cosine kernels and the closed-form fully-connected NTK."""

from ntkfeat.exact.arccos import arccos_kernel0, arccos_kernel0_taylor, arccos_kernel1, arccos_kernel1_taylor
from ntkfeat.exact.fc import fc_nngp, fc_ntk

__all__ = ["arccos_kernel0", "arccos_kernel0_taylor", "arccos_kernel1", "arccos_kernel1_taylor", "fc_nngp", "fc_ntk"]

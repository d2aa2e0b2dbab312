"""Layer descriptions and feature-map methods."""

from ntkfeat.layers.layers import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, Relu
from ntkfeat.layers.methods import RandomFeatures, Sketch

__all__ = ["AvgPool", "Conv", "Dense", "Flatten", "GlobalAvgPool", "Relu", "RandomFeatures", "Sketch"]

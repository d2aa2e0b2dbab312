"""Layer descriptions (neural-tangents 0.6.5's names and signatures) and feature-map methods."""

from ntkfeat.layers.activations import (
    ABRelu, Abs, Activation, Cos, Elementwise, ElementwiseNumerical, Erf, Exp, ExpNormalized, Gabor, Gaussian, Gelu,
    Hermite, HomogeneousDual, LeakyRelu, MehlerDual, Monomial, Polynomial, Rbf, RectifiedMonomial, Relu, Sigmoid_like,
    Sign, Sin,
)
from ntkfeat.layers.base import Layer
from ntkfeat.layers.combinators import (
    FanInConcat, FanInProd, FanInSum, FanOut, Parallel, Serial, check_layers, parallel, repeat, serial,
)
from ntkfeat.layers.linear import (
    Aggregate, AvgPool, Conv, Dense, Dropout, Flatten, GlobalAvgPool, GlobalSumPool, Identity, LayerNorm, LocalAvgPool,
    SumPool,
)
from ntkfeat.layers.methods import RandomFeatures, Sketch

ACTIVATIONS = (
    "ABRelu", "Abs", "Cos", "Elementwise", "ElementwiseNumerical", "Erf", "Exp", "ExpNormalized", "Gabor", "Gaussian",
    "Gelu", "Hermite", "LeakyRelu", "Monomial", "Polynomial", "Rbf", "RectifiedMonomial", "Relu", "Sigmoid_like", "Sign",
    "Sin",
)
LINEAR = ("Aggregate", "AvgPool", "Conv", "Dense", "Dropout", "Flatten", "GlobalAvgPool", "GlobalSumPool", "Identity",
          "LayerNorm", "SumPool")
COMBINATORS = ("FanInConcat", "FanInProd", "FanInSum", "FanOut", "parallel", "repeat", "serial")

__all__ = list(ACTIVATIONS + LINEAR + COMBINATORS) + [
    "Activation", "HomogeneousDual", "Layer", "LocalAvgPool", "MehlerDual", "Parallel", "RandomFeatures", "Serial",
    "Sketch",
    "check_layers",
]

"""Sketch primitives: pure functions of explicit parameters made from a PRNG key."""

from ntkfeat.sketches.dot_product import (
    DotProductFeatureParams,
    dot_product_features,
    dot_product_features_init,
    plan_dot_product_features,
    sketch_variance,
)
from ntkfeat.sketches.fold import FoldSketchParams, fold_sketch, fold_sketch_init
from ntkfeat.sketches.monomials import MonomialParams, monomial_features, monomial_features_init, num_monomials
from ntkfeat.sketches.poly_sketch import PolySketchParams, poly_sketch, poly_sketch_init
from ntkfeat.sketches.product import OffsetProductParams, offset_product, offset_product_init
from ntkfeat.sketches.srht import (
    SRHTParams,
    TensorSRHTParams,
    fft_length,
    srht,
    srht_init,
    tensor_srht,
    tensor_srht_init,
)
from ntkfeat.sketches.tensor_sketch import (
    CountSketchParams,
    TensorSketchParams,
    count_sketch,
    count_sketch_init,
    tensor_sketch,
    tensor_sketch_init,
)

__all__ = [
    "DotProductFeatureParams", "dot_product_features", "dot_product_features_init", "plan_dot_product_features",
    "sketch_variance",
    "FoldSketchParams", "fold_sketch", "fold_sketch_init",
    "MonomialParams", "monomial_features", "monomial_features_init", "num_monomials",
    "PolySketchParams", "poly_sketch", "poly_sketch_init",
    "OffsetProductParams", "offset_product", "offset_product_init",
    "SRHTParams", "TensorSRHTParams", "fft_length", "srht", "srht_init", "tensor_srht", "tensor_srht_init",
    "CountSketchParams", "TensorSketchParams", "count_sketch", "count_sketch_init", "tensor_sketch",
    "tensor_sketch_init",
]

"""ntkfeat: random features and sketches of neural tangent kernels, in JAX.

    import ntkfeat as nf
    init_fn, feature_fn, kernel_fn = nf.serial(
        nf.Dense(W_std=2**0.5), nf.Relu(), nf.Dense(W_std=2**0.5), nf.Relu(), nf.Dense(W_std=1.0))
    params = init_fn(key, (-1, d), nf.Sketch(dim=8192, degree=8))
    phi = feature_fn(params, x)      # phi @ phi.T ~ kernel_fn(x, x, 'ntk')
"""

from ntkfeat.layers import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, RandomFeatures, Relu, Sketch
from ntkfeat.network import FeatureMap, finite_network, iterate_features, serial
from ntkfeat import baselines, data, exact, polynomials, sketches, solvers

__version__ = "0.1.0"

__all__ = [
    "AvgPool", "Conv", "Dense", "Flatten", "GlobalAvgPool", "RandomFeatures", "Relu", "Sketch",
    "FeatureMap", "finite_network", "iterate_features", "serial",
    "baselines", "data", "exact", "polynomials", "sketches", "solvers",
]

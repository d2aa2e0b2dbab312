"""Baseline feature maps to compare NTK sketches against.

Each is a factory returning (init_fn, feature_fn): init_fn(key, x_train) -> params makes every
random and data-dependent choice (bandwidths, landmarks, network weights); feature_fn(params, x, *,
batch_size=None) -> (n, dim) is pure and streams rows in fixed-size batches.

- random_fourier: random Fourier features of the Gaussian kernel (exact: gaussian_kernel).
- nystrom: Nystrom features of any kernel (e.g. the exact NTK), uniform or ridge-leverage-score
  landmarks.
- gradient_features: per-example gradients of a finite network, the empirical NTK
  (exact: empirical_ntk), optionally projected.
"""

from ntkfeat.baselines.gradient import GradientParams, empirical_ntk, finite_layers, gradient_features
from ntkfeat.baselines.nystrom import NystromParams, nystrom, ridge_leverage_scores
from ntkfeat.baselines.random_fourier import RandomFourierParams, gaussian_kernel, median_bandwidth, random_fourier

__all__ = [
    "GradientParams", "empirical_ntk", "finite_layers", "gradient_features",
    "NystromParams", "nystrom", "ridge_leverage_scores",
    "RandomFourierParams", "gaussian_kernel", "median_bandwidth", "random_fourier",
]

"""How a feature map approximates the kernel: `Sketch` or `RandomFeatures`.

Both are static, hashable descriptions passed to `init_fn(key, input_shape, method)`.
"""

from __future__ import annotations

import dataclasses

_MODES = ("auto", "oneshot", "layerwise")
_FITS = ("lstsq", "taylor")


def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Sketch:
    """NTK Sketch: polynomial approximations of the arc-cosine kernels, sketched.

    Attributes:
      dim: number of output features (about; a few bias coordinates may be added).
      degree: polynomial degree q of each approximation (any q >= 1).
      mode: 'oneshot' fits one polynomial to the whole NTK of a fully-connected Dense/Relu stack
        and sketches it once (lowest error); 'layerwise' sketches every ReLU's kappa1 / kappa0
        polynomials and composes with any stack (convolutions, pooling, inner biases);
        'auto' uses 'oneshot' where it applies and 'layerwise' elsewhere.
      fit: 'lstsq' (non-negative least squares on a grid, default) or 'taylor' (truncated
        Taylor series; layerwise only, as in the theory).
      width: internal sketch width of the layerwise mode (None: dim, or dim // 2 for stacks with a
        Conv, where it gives the same error at 2.4x the speed once renormalized).
      renormalize: rescale every sketched feature vector (per input and position) to the norm
        its sketch estimates: sqrt(c_j) for each sketched degree-j block of the kappa features
        (exact blocks are exact already), the exact product of norms for the NTK product, the
        exact window sum of squared norms for a convolution. A ratio estimate (bias O(1 / width)) with much less variance where inputs
        are highly correlated, as CNN features are (NOTES.md); False keeps every step unbiased.
    """

    dim: int = 4096
    degree: int = 8
    mode: str = "auto"
    fit: str = "lstsq"
    width: int | None = None
    renormalize: bool = True

    def __post_init__(self):
        _check_positive_int("Sketch.dim", self.dim, 2)
        _check_positive_int("Sketch.degree", self.degree, 1)
        if self.mode not in _MODES:
            raise ValueError(f"Sketch.mode must be one of {_MODES}, got {self.mode!r}")
        if self.fit not in _FITS:
            raise ValueError(f"Sketch.fit must be one of {_FITS}, got {self.fit!r}")
        if self.width is not None:
            _check_positive_int("Sketch.width", self.width, 2)
        if not isinstance(self.renormalize, bool):
            raise ValueError(f"Sketch.renormalize must be True or False, got {self.renormalize!r}")


@dataclasses.dataclass(frozen=True)
class RandomFeatures:
    """NTK random features: arc-cosine random features per ReLU, TensorSRHT for the products.

    Attributes:
      dim: number of output features (about).
      leverage: draw the order-1 weights from the |w|^2-tilted Gaussian (w = r u, u uniform on
        the sphere, r^2 ~ chi-square(d + 2)) and weight each feature by sqrt(d) / |w|, which
        keeps the estimate unbiased (leverage-score sampling of the arc-cosine kernel).
      orthogonal: draw directions in orthogonal blocks (orthogonal random features): each
        direction is still uniform on the sphere, so the estimate stays unbiased, with lower
        variance.
      width: internal width of each layer's random features (None: dim).
    """

    dim: int = 4096
    leverage: bool = False
    orthogonal: bool = False
    width: int | None = None

    def __post_init__(self):
        _check_positive_int("RandomFeatures.dim", self.dim, 2)
        if self.width is not None:
            _check_positive_int("RandomFeatures.width", self.width, 2)


Method = Sketch | RandomFeatures

"""How a feature map approximates the kernel: `Sketch` or `RandomFeatures`.

Both are static, hashable descriptions passed to `init_fn(key, input_shape, method)`.
"""

from __future__ import annotations

import dataclasses

from ntkfeat import _checks
from ntkfeat.layers.base import set_field

_MODES = ("auto", "oneshot", "layerwise")
_FITS = ("lstsq", "taylor")
_PROJECTIONS = ("auto", "dense", "structured")


@dataclasses.dataclass(frozen=True)
class Sketch:
    """NTK Sketch: sketched polynomial approximations of each activation's dual kernel.

    Attributes:
      dim: number of output features (about; a few bias coordinates may be added).
      degree: polynomial degree of each approximation (any degree >= 1): the fit of a
        homogeneous activation's dual (ReLU and relatives), the truncation of a general
        activation's Mehler series (its tail beyond the degree is kept on the diagonal).
        'auto' (default): the one-shot fit takes the degree that minimizes its estimated error,
        fit bias^2 + sketch variance, at this dim (higher degrees where dim affords them: their
        smaller bias near correlation 1 is what near-interpolating kernel ridge needs, NOTES.md);
        the one-shot series of general activations takes 32 (16 or 8 where that is cheaper to
        sketch, see `mode`); layerwise maps take 8.
      mode: 'oneshot' sketches the whole NTK of a fully-connected stack once (lowest error):
        one polynomial fit for Dense layers and homogeneous activations without inner biases;
        for Dense layers (any biases) and general activations, the NTK's series in the input
        correlation with coefficients that depend on each input's first-layer variance
        (`features/oneshot_general.py`; degree 'auto' takes 32, or 16 or 8 where 32's sketch
        tree would cost more). 'layerwise' sketches every activation and composes with any
        stack; 'auto' uses 'oneshot' where it applies and 'layerwise' elsewhere (also where the
        series overflows, as Exp's can).
      fit: 'lstsq' (non-negative least squares on a grid, default) or 'taylor' (the truncated
        series, as in the theory) for homogeneous activations.
      width: internal sketch width of the layerwise mode (None: dim, or dim // 2 for stacks with a
        Conv, where it gives the same error at 2.4x the speed once renormalized).
      renormalize: rescale every sketched feature vector (per input and position) to the norm
        its sketch estimates: each sketched degree-j block of a polynomial's features to its
        coefficient's root (exact blocks are exact already), the NTK product to the exact product
        of norms, a convolution to the exact window sum of squared norms. A ratio estimate (bias
        O(1 / width)) with much less variance where inputs are highly correlated, as CNN features
        are (NOTES.md); False keeps every step unbiased.
    """

    dim: int = 4096
    degree: int | str = "auto"
    mode: str = "auto"
    fit: str = "lstsq"
    width: int | None = None
    renormalize: bool = True

    def __post_init__(self):
        set_field(self, "dim", _checks.integer("Sketch.dim", self.dim, 2))
        if self.degree != "auto":
            set_field(self, "degree", _checks.integer("Sketch.degree", self.degree, 1))
        _checks.choice("Sketch.mode", self.mode, _MODES)
        _checks.choice("Sketch.fit", self.fit, _FITS)
        set_field(self, "width", _checks.optional_integer("Sketch.width", self.width, 2))
        set_field(self, "renormalize", _checks.boolean("Sketch.renormalize", self.renormalize))


@dataclasses.dataclass(frozen=True)
class RandomFeatures:
    """NTK random features: sigma(W^T z) and sigma'(W^T z) at each activation (Mehler-centred:
    the degree-0 and -1 parts exact), TensorSRHT for the NTK products.

    Attributes:
      dim: number of output features (about).
      leverage: draw the weights from the |w|^2-tilted Gaussian (w = r u, u uniform on the
        sphere, r^2 ~ chi-square(d + 2)) and weight each feature by sqrt(d) / |w|, which keeps the
        estimate unbiased (leverage-score sampling of the arc-cosine kernel; its spectral
        guarantee is for ReLU).
      orthogonal: draw directions in orthogonal blocks (orthogonal random features): each
        direction is still uniform on the sphere, so the estimate stays unbiased, with lower
        variance.
      width: internal width of each hidden layer's random features (None: dim). dim // 2 runs
        about 1.8x faster on fully-connected stacks at an NTK error that ranged from 20% lower to
        50% higher across data and activations (NOTES.md).
      projection: how w.z is computed: 'dense' (a Gaussian matrix), 'structured' (SORF: three
        sign-flipped FFT rotations per block, orthogonal directions, O(log d) per feature), or
        'auto' (structured where the input is wider than 128, dense below).
    """

    dim: int = 4096
    leverage: bool = False
    orthogonal: bool = False
    width: int | None = None
    projection: str = "auto"

    def __post_init__(self):
        set_field(self, "dim", _checks.integer("RandomFeatures.dim", self.dim, 2))
        set_field(self, "leverage", _checks.boolean("RandomFeatures.leverage", self.leverage))
        set_field(self, "orthogonal", _checks.boolean("RandomFeatures.orthogonal", self.orthogonal))
        set_field(self, "width", _checks.optional_integer("RandomFeatures.width", self.width, 2))
        _checks.choice("RandomFeatures.projection", self.projection, _PROJECTIONS)


# The degree of 'auto' where no selection is made (layerwise maps).
LAYERWISE_DEGREE = 8


def layer_degree(method: Sketch) -> int:
    """The polynomial / series degree of a layerwise map."""
    return LAYERWISE_DEGREE if method.degree == "auto" else method.degree


Method = Sketch | RandomFeatures

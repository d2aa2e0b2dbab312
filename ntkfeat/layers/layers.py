"""Layer descriptions: small frozen dataclasses, each with its neural-tangents counterpart.

A layer says what the network computes; `serial` turns a list of them into the exact kernel
(through neural-tangents' stax) and into feature maps (through `ntkfeat.features`). Layers are
hashable and static: two equal descriptions build identical computations.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ntkfeat.compat import stax as _stax

_DEFAULT_WIDTH = 512  # width of the finite network's hidden layers (gradient features)


def _check_std(name: str, value, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or not value >= 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _tuple2(name: str, value) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and v >= 1 for v in value):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return value


def _check_padding(padding: str) -> str:
    if padding not in ("VALID", "SAME"):
        raise ValueError(f"padding must be 'VALID' or 'SAME', got {padding!r}")
    return padding


@dataclasses.dataclass(frozen=True)
class Dense:
    """Fully-connected layer in NTK parameterization: nngp' = W_std^2 nngp + b_std^2,
    ntk' = W_std^2 ntk + nngp'. Acts on the last (channel) axis.

    Attributes:
      W_std: weight standard deviation.
      b_std: bias standard deviation, or None for no bias.
      out_dim: width of this layer in a finite network (only gradient features use it; the
        infinite-width kernel does not depend on it). None: 512, or 1 for the readout.
    """

    W_std: float = 1.0
    b_std: float | None = None
    out_dim: int | None = None

    def __post_init__(self):
        _check_std("W_std", self.W_std, False)
        _check_std("b_std", self.b_std, True)
        if self.out_dim is not None and (not isinstance(self.out_dim, int) or self.out_dim < 1):
            raise ValueError(f"out_dim must be a positive integer or None, got {self.out_dim!r}")

    @property
    def bias(self) -> float:
        return float(self.b_std or 0.0)

    def stax(self, readout: bool = False):
        width = self.out_dim or (1 if readout else _DEFAULT_WIDTH)
        return _stax().Dense(width, W_std=self.W_std, b_std=self.b_std, parameterization="ntk")


@dataclasses.dataclass(frozen=True)
class Relu:
    """ReLU, unnormalized as in neural-tangents: nngp' = (1/2) sqrt(S_xx S_yy) kappa1(rho),
    ntk' = ntk kappa0(rho) / 2."""

    def stax(self, readout: bool = False):
        return _stax().Relu()


@dataclasses.dataclass(frozen=True)
class Conv:
    """2-d convolution over NHWC inputs in NTK parameterization.

    nngp'(p, p') = W_std^2 / prod(filter_shape) * sum_o nngp(p + o, p' + o) + b_std^2 (SAME pads
    with zeros and still divides by the full filter size); ntk' = the same map of ntk, plus nngp'.

    Attributes:
      filter_shape: (height, width) or one int.
      strides: (height, width) or one int.
      padding: 'VALID' or 'SAME'.
      W_std, b_std: as in Dense.
      out_chan: channels in a finite network (gradient features only). None: 128.
    """

    filter_shape: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: str = "VALID"
    W_std: float = 1.0
    b_std: float | None = None
    out_chan: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "filter_shape", _tuple2("filter_shape", self.filter_shape))
        object.__setattr__(self, "strides", _tuple2("strides", self.strides))
        _check_padding(self.padding)
        _check_std("W_std", self.W_std, False)
        _check_std("b_std", self.b_std, True)

    @property
    def bias(self) -> float:
        return float(self.b_std or 0.0)

    def stax(self, readout: bool = False):
        return _stax().Conv(
            self.out_chan or 128, self.filter_shape, strides=self.strides, padding=self.padding,
            W_std=self.W_std, b_std=self.b_std, parameterization="ntk",
        )


@dataclasses.dataclass(frozen=True)
class AvgPool:
    """Average pooling over (height, width) windows; divides by the full window (SAME included)."""

    window: tuple[int, int] = (2, 2)
    strides: tuple[int, int] | None = None
    padding: str = "VALID"

    def __post_init__(self):
        object.__setattr__(self, "window", _tuple2("window", self.window))
        strides = self.window if self.strides is None else self.strides
        object.__setattr__(self, "strides", _tuple2("strides", strides))
        _check_padding(self.padding)

    def stax(self, readout: bool = False):
        return _stax().AvgPool(self.window, strides=self.strides, padding=self.padding)


@dataclasses.dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over all spatial positions."""

    def stax(self, readout: bool = False):
        return _stax().GlobalAvgPool()


@dataclasses.dataclass(frozen=True)
class Flatten:
    """Flattens spatial positions and channels. Its kernel is the mean over matching positions
    (neural-tangents' convention), so the feature equivalent is reshape / sqrt(#positions)."""

    def stax(self, readout: bool = False):
        return _stax().Flatten()


Layer = Dense | Relu | Conv | AvgPool | GlobalAvgPool | Flatten
LAYER_TYPES = (Dense, Relu, Conv, AvgPool, GlobalAvgPool, Flatten)


def check_layers(layers: Sequence) -> tuple:
    layers = tuple(layers)
    if not layers:
        raise ValueError("serial() needs at least one layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, LAYER_TYPES):
            raise TypeError(
                f"layer {i} is {layer!r}; expected one of "
                + ", ".join(t.__name__ for t in LAYER_TYPES)
                + " (build layers with ntkfeat, e.g. nf.Dense(W_std=1.0))"
            )
    return layers

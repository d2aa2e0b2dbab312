"""Linear layers, with neural-tangents 0.6.5's names, signatures and defaults.

Their feature rules (`ntkfeat.features.linear`) are the same for every method: on features, a
linear layer of the network is a linear map, written exactly where that is cheap and sketched
where it is not. Widths (`out_dim`, `out_chan`) are accepted and ignored by the feature maps:
the infinite-width kernels do not depend on them. Only the finite networks of gradient
features and FanInConcat's weights use them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from ntkfeat import _checks
from ntkfeat.compat import stax as _stax
from ntkfeat.layers.base import DEFAULT_CONV_CHANNELS, DEFAULT_DENSE_WIDTH, Layer, check_axes, set_field

# CIRCULAR: periodic boundaries (neural-tangents' meaning): the input is wrapped around by the
# amounts SAME would pad with zeros, then the window runs VALID, so the output has SAME's shape.
_PADDINGS = ("VALID", "SAME", "CIRCULAR")


def _check_parameterization(layer: str, parameterization, s) -> None:
    if parameterization != "ntk":
        raise ValueError(
            f"{layer}: only parameterization='ntk' is supported (the 'standard' one makes the kernel depend on "
            f"the widths), got {parameterization!r}"
        )
    if tuple(s) != (1, 1):
        raise ValueError(f"{layer}: s is used by parameterization='standard' only; leave it at (1, 1), got {s!r}")


@dataclasses.dataclass(frozen=True)
class Dense(Layer):
    """Fully-connected layer on the channel (last) axis, NTK parameterization:
    nngp' = W_std^2 nngp + b_std^2,  ntk' = W_std^2 ntk + nngp'.

    Attributes:
      out_dim: width in a finite network (None: 512, or 1 for the readout). Ignored by the kernel.
      W_std: weight standard deviation.
      b_std: bias standard deviation, or None for no bias.
      batch_axis, channel_axis, parameterization, s: as in neural-tangents; only the defaults
        (0, -1, 'ntk', (1, 1)) are supported.
    """

    out_dim: int | None = None
    W_std: float = 1.0
    b_std: float | None = None
    batch_axis: int = 0
    channel_axis: int = -1
    parameterization: str = "ntk"
    s: tuple = (1, 1)

    def __post_init__(self):
        set_field(self, "out_dim", _checks.optional_integer("Dense.out_dim", self.out_dim, 1))
        set_field(self, "W_std", _checks.number("Dense.W_std", self.W_std, 0.0))
        set_field(self, "b_std", _checks.optional_number("Dense.b_std", self.b_std, 0.0))
        check_axes("Dense", self.batch_axis, self.channel_axis)
        set_field(self, "s", tuple(self.s))
        _check_parameterization("Dense", self.parameterization, self.s)

    @property
    def bias(self) -> float:
        return float(self.b_std or 0.0)

    @property
    def weighted(self) -> bool:
        return True

    def width(self, readout: bool = False) -> int:
        return self.out_dim or (1 if readout else DEFAULT_DENSE_WIDTH)

    def stax(self, readout: bool = False):
        return _stax().Dense(self.width(readout), W_std=self.W_std, b_std=self.b_std, parameterization="ntk")


@dataclasses.dataclass(frozen=True)
class Conv(Layer):
    """2-d convolution over NHWC inputs, NTK parameterization:
    nngp'(p, p') = W_std^2 / |filter| * sum_o nngp(p + o, p' + o) + b_std^2 (SAME pads with zeros
    and still divides by the full filter size; CIRCULAR takes positions modulo the image size);
    ntk' = the same map of ntk, plus nngp'.

    Attributes:
      out_chan: channels in a finite network (None: 128, or 1 for the readout). Ignored by the kernel.
      filter_shape: (height, width) or one int.
      strides: (height, width), one int, or None for (1, 1).
      padding: 'VALID', 'SAME' or 'CIRCULAR' (periodic boundaries: the image wraps around, and
        the output has SAME's shape).
      W_std, b_std: as in Dense.
      dimension_numbers, parameterization, s: as in neural-tangents; only NHWC / 'ntk' / (1, 1).
    """

    out_chan: int | None = None
    filter_shape: tuple = (3, 3)
    strides: tuple | None = None
    padding: str = "VALID"
    W_std: float = 1.0
    b_std: float | None = None
    dimension_numbers: tuple | None = None
    parameterization: str = "ntk"
    s: tuple = (1, 1)

    def __post_init__(self):
        set_field(self, "out_chan", _checks.optional_integer("Conv.out_chan", self.out_chan, 1))
        set_field(self, "filter_shape", _checks.int_tuple("Conv.filter_shape", self.filter_shape, 2))
        strides = (1, 1) if self.strides is None else self.strides
        set_field(self, "strides", _checks.int_tuple("Conv.strides", strides, 2))
        _checks.choice("Conv.padding", self.padding, _PADDINGS)
        set_field(self, "W_std", _checks.number("Conv.W_std", self.W_std, 0.0))
        set_field(self, "b_std", _checks.optional_number("Conv.b_std", self.b_std, 0.0))
        if self.dimension_numbers is not None:
            dn = tuple(self.dimension_numbers)
            if dn != ("NHWC", "HWIO", "NHWC"):
                raise ValueError(f"Conv: only dimension_numbers=('NHWC', 'HWIO', 'NHWC') is supported, got {dn!r}")
            set_field(self, "dimension_numbers", dn)
        set_field(self, "s", tuple(self.s))
        _check_parameterization("Conv", self.parameterization, self.s)

    @property
    def bias(self) -> float:
        return float(self.b_std or 0.0)

    @property
    def weighted(self) -> bool:
        return True

    def width(self, readout: bool = False) -> int:
        return self.out_chan or (1 if readout else DEFAULT_CONV_CHANNELS)

    def stax(self, readout: bool = False):
        return _stax().Conv(
            self.width(readout), self.filter_shape, strides=self.strides, padding=self.padding,
            W_std=self.W_std, b_std=self.b_std, parameterization="ntk",
        )


@dataclasses.dataclass(frozen=True)
class AvgPool(Layer):
    """Average pooling over (height, width) windows: out(p) = mean over o in the window of
    x(p * strides + o). SAME padding divides by the full window, unless normalize_edges (then by
    the number of positions inside the image); CIRCULAR wraps the image around (every window is
    full). On kernels, the same window mean over both position axes.

    Attributes:
      window_shape: (height, width) or one int.
      strides: (height, width), one int, or None for (1, 1): neural-tangents' default (not
        jax.example_libraries.stax's stride = window). Pass strides=window_shape to tile.
      padding: 'VALID', 'SAME' or 'CIRCULAR'.
      normalize_edges: see above (SAME only).
    """

    window_shape: tuple = (2, 2)
    strides: tuple | None = None
    padding: str = "VALID"
    normalize_edges: bool = False
    batch_axis: int = 0
    channel_axis: int = -1

    def __post_init__(self):
        set_field(self, "window_shape", _checks.int_tuple("AvgPool.window_shape", self.window_shape, 2))
        strides = (1, 1) if self.strides is None else self.strides  # neural-tangents' default
        set_field(self, "strides", _checks.int_tuple("AvgPool.strides", strides, 2))
        _checks.choice("AvgPool.padding", self.padding, _PADDINGS)
        _checks.boolean("AvgPool.normalize_edges", self.normalize_edges)
        check_axes("AvgPool", self.batch_axis, self.channel_axis)

    def stax(self, readout: bool = False):
        return _stax().AvgPool(self.window_shape, strides=self.strides, padding=self.padding,
                               normalize_edges=self.normalize_edges)


@dataclasses.dataclass(frozen=True)
class SumPool(Layer):
    """Sum pooling over (height, width) windows. `strides` None means (1, 1), as in
    neural-tangents; `padding` 'VALID', 'SAME' or 'CIRCULAR' (as in AvgPool)."""

    window_shape: tuple = (2, 2)
    strides: tuple | None = None
    padding: str = "VALID"
    batch_axis: int = 0
    channel_axis: int = -1

    def __post_init__(self):
        set_field(self, "window_shape", _checks.int_tuple("SumPool.window_shape", self.window_shape, 2))
        strides = (1, 1) if self.strides is None else self.strides  # neural-tangents' default
        set_field(self, "strides", _checks.int_tuple("SumPool.strides", strides, 2))
        _checks.choice("SumPool.padding", self.padding, _PADDINGS)
        check_axes("SumPool", self.batch_axis, self.channel_axis)

    def stax(self, readout: bool = False):
        return _stax().SumPool(self.window_shape, strides=self.strides, padding=self.padding)


def LocalAvgPool(c: int) -> AvgPool:
    """Local average pooling (LAP) of Li et al., "Enhanced Convolutional Neural Tangent Kernels"
    (2019), in its two-sided, positive semi-definite form: the stride-1 circular average pool of
    window (2c+1) x (2c+1), to be followed by Flatten (and the readout):

        phi_c(x)(p) = (2c+1)^-2 sum_{|a|, |b| <= c} phi(x)(p + (a, b))   (positions modulo H, W)

    so that, after Flatten, K_c(x, x') = (HW)^-1 sum_p <phi_c(x)(p), phi_c(x')(p)>: the kernel
    averaged over position offsets up to 2c per axis with triangular weights. c = 0 is the plain
    Flatten readout; a window equal to the image (2c+1 = H = W) gives GlobalAvgPool's kernel.
    The paper's one-sided form (uniform weights on offsets up to c) need not be PSD and has no
    feature map; docs/enhanced_cntk.md compares the two. neural-tangents computes this one
    exactly: `stax.AvgPool((2c+1, 2c+1), strides=(1, 1), padding='CIRCULAR')`.

    Args:
      c: the half-width, an integer >= 0.

    Returns:
      AvgPool((2c+1, 2c+1), strides=(1, 1), padding='CIRCULAR').
    """
    c = _checks.integer("LocalAvgPool.c", c, 0)
    return AvgPool((2 * c + 1, 2 * c + 1), strides=(1, 1), padding="CIRCULAR")


@dataclasses.dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """Mean over all spatial positions."""

    batch_axis: int = 0
    channel_axis: int = -1

    def __post_init__(self):
        check_axes("GlobalAvgPool", self.batch_axis, self.channel_axis)

    def stax(self, readout: bool = False):
        return _stax().GlobalAvgPool()


@dataclasses.dataclass(frozen=True)
class GlobalSumPool(Layer):
    """Sum over all spatial positions."""

    batch_axis: int = 0
    channel_axis: int = -1

    def __post_init__(self):
        check_axes("GlobalSumPool", self.batch_axis, self.channel_axis)

    def stax(self, readout: bool = False):
        return _stax().GlobalSumPool()


@dataclasses.dataclass(frozen=True)
class Flatten(Layer):
    """Flattens positions and channels. Its kernel is the mean over matching positions
    (neural-tangents' convention), so the feature equivalent is reshape / sqrt(#positions)."""

    batch_axis: int = 0
    batch_axis_out: int = 0

    def __post_init__(self):
        for name in ("batch_axis", "batch_axis_out"):
            if _checks.integer(f"Flatten.{name}", getattr(self, name)) != 0:
                raise ValueError(f"Flatten: only {name}=0 is supported, got {getattr(self, name)}")

    def stax(self, readout: bool = False):
        return _stax().Flatten()


@dataclasses.dataclass(frozen=True)
class Identity(Layer):
    """The identity (a shortcut branch of a residual block)."""

    def stax(self, readout: bool = False):
        return _stax().Identity()


_DROPOUT_MODES = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Dropout(Layer):
    """Dropout, keeping each unit with probability `rate` (neural-tangents' meaning: rate=1 keeps
    all of them) and scaling the kept ones by 1 / rate.

    mode='test' (inference) is the identity, on the kernel and on the features. mode='train'
    (neural-tangents' default) multiplies the NNGP and NTK of an input with itself by 1 / rate and
    leaves those of distinct inputs unchanged: a kernel that jumps on the diagonal, which no
    feature map of one input at a time reproduces. Its exact kernel is served (`kernel_fn`, as
    neural-tangents computes it); `init_fn` raises a ValueError that asks for mode='test'.
    """

    rate: float
    mode: str = "train"

    def __post_init__(self):
        _checks.choice("Dropout.mode", self.mode, _DROPOUT_MODES)
        rate = _checks.number("Dropout.rate", self.rate, 0.0, exclusive=True)
        if rate > 1:
            raise ValueError(f"Dropout.rate (the keep probability) must be > 0 and <= 1, got {self.rate!r}")
        set_field(self, "rate", rate)

    def stax(self, readout: bool = False):
        return _stax().Dropout(self.rate, self.mode)


@dataclasses.dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalization over the channel axis. In the infinite-width limit it divides the
    kernels by sqrt((eps + q1)(eps + q2)), q the NNGP diagonals (neural-tangents does not
    subtract means in the limit), so the features are divided by sqrt(eps + q).

    Attributes:
      axis: the normalized axes; only the channel axis (-1) is supported.
      eps: added to the variance.
    """

    axis: int | tuple = -1
    eps: float = 1e-12
    batch_axis: int = 0
    channel_axis: int = -1

    def __post_init__(self):
        axes = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
        if axes not in ((-1,),):
            raise ValueError(f"LayerNorm: only axis=-1 (the channel axis) is supported, got {self.axis!r}")
        set_field(self, "axis", -1)
        set_field(self, "eps", _checks.number("LayerNorm.eps", self.eps, 0.0))
        check_axes("LayerNorm", self.batch_axis, self.channel_axis)

    def stax(self, readout: bool = False):
        return _stax().LayerNorm(axis=-1, eps=self.eps)


@dataclasses.dataclass(frozen=True)
class Aggregate(Layer):
    """Graph aggregation (graph neural networks): out[j] = sum_i pattern[i, j] x[i] over the
    spatial (node) axes, for inputs (batch, nodes..., channels) and a dense adjacency `pattern`
    (batch, nodes..., nodes...) passed to `feature_fn` and `kernel_fn` as `pattern=`
    (`kernel_fn` takes the pair `pattern=(pattern1, pattern2)`). The kernel becomes
    pattern1^T K pattern2, so the features are pattern^T phi per graph.

    Attributes:
      aggregate_axis: None (every spatial axis; the only option supported).
      to_dense: function applied to `pattern` before use (None: the identity).
      implementation: 'DENSE' (the only one supported).
    """

    aggregate_axis: int | tuple | None = None
    batch_axis: int = 0
    channel_axis: int = -1
    to_dense: Callable | None = None
    implementation: str = "DENSE"

    def __post_init__(self):
        if self.aggregate_axis is not None:
            raise ValueError(f"Aggregate: only aggregate_axis=None (all spatial axes) is supported, "
                             f"got {self.aggregate_axis!r}")
        check_axes("Aggregate", self.batch_axis, self.channel_axis)
        if self.implementation != "DENSE":
            raise ValueError(f"Aggregate: only implementation='DENSE' (a dense pattern) is supported, "
                             f"got {self.implementation!r}")
        if self.to_dense is not None and not callable(self.to_dense):
            raise ValueError(f"Aggregate.to_dense must be a function or None, got {self.to_dense!r}")

    def dense(self, pattern):
        return pattern if self.to_dense is None else self.to_dense(pattern)

    def stax(self, readout: bool = False):
        kwargs = {} if self.to_dense is None else {"to_dense": self.to_dense}
        return _stax().Aggregate(**kwargs)


__all__ = [
    "Aggregate", "AvgPool", "Conv", "Dense", "Dropout", "Flatten", "GlobalAvgPool", "GlobalSumPool", "Identity",
    "LayerNorm", "LocalAvgPool", "SumPool",
]

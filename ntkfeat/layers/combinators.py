"""Combinators: serial, parallel, FanOut, FanInSum, FanInProd, FanInConcat (neural-tangents 0.6.5's names).

    block = nf.serial(nf.FanOut(2), nf.parallel(nf.serial(nf.Relu(), nf.Conv(128, (3, 3), padding='SAME')),
                                                nf.Identity()),
                      nf.FanInSum())
    init_fn, feature_fn, kernel_fn = nf.serial(nf.Conv(128, (3, 3)), block, nf.GlobalAvgPool(), nf.Dense(1))

`serial(...)` and `parallel(...)` return layer descriptions (`Serial`, `Parallel`) that nest in
one another and unpack into (init_fn, feature_fn, kernel_fn), like neural-tangents' triples.
Between FanOut and a FanIn the network carries several branches (a tuple of kernels in
neural-tangents, a tuple of feature sets here).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ntkfeat import _checks
from ntkfeat.compat import stax as _stax
from ntkfeat.layers.base import Layer, set_field


def check_layers(layers: Sequence, where: str = "serial") -> tuple:
    """The layers as a tuple, each an ntkfeat layer description."""
    layers = tuple(layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            hint = ""
            if isinstance(layer, tuple) and len(layer) in (3, 4) and all(callable(f) for f in layer):
                hint = " (this looks like a neural-tangents layer: use the ntkfeat layer of the same name)"
            raise TypeError(f"{where}: item {i} is {layer!r}, not an ntkfeat layer{hint}")
    return layers


@dataclasses.dataclass(frozen=True)
class Serial(Layer):
    """Layers applied one after the other."""

    layers: tuple

    def __post_init__(self):
        layers = check_layers(self.layers, "serial")
        if not layers:
            raise ValueError("serial() needs at least one layer")
        set_field(self, "layers", layers)

    @property
    def weighted(self) -> bool:
        return any(layer.weighted for layer in self.layers)

    def stax(self, readout: bool = False):
        weighted = [i for i, layer in enumerate(self.layers) if layer.weighted]
        last = weighted[-1] if (readout and weighted) else -1
        return _stax().serial(*[layer.stax(readout=(i == last)) for i, layer in enumerate(self.layers)])


@dataclasses.dataclass(frozen=True)
class Parallel(Layer):
    """Layer i applied to branch i (after a FanOut)."""

    layers: tuple

    def __post_init__(self):
        layers = check_layers(self.layers, "parallel")
        if not layers:
            raise ValueError("parallel() needs at least one layer")
        set_field(self, "layers", layers)

    @property
    def weighted(self) -> bool:
        return any(layer.weighted for layer in self.layers)

    def stax(self, readout: bool = False):
        return _stax().parallel(*[layer.stax() for layer in self.layers])


@dataclasses.dataclass(frozen=True)
class FanOut(Layer):
    """Copies the input into `num` branches."""

    num: int

    def __post_init__(self):
        set_field(self, "num", _checks.integer("FanOut.num", self.num, 1))

    def stax(self, readout: bool = False):
        return _stax().FanOut(self.num)


@dataclasses.dataclass(frozen=True)
class FanInSum(Layer):
    """Sums the branches. neural-tangents adds their kernels (the branches are taken to be
    independent: each should contain a Dense or Conv), so the features are concatenated."""

    def stax(self, readout: bool = False):
        return _stax().FanInSum()


@dataclasses.dataclass(frozen=True)
class FanInProd(Layer):
    """Multiplies the branches elementwise. neural-tangents multiplies their kernels (taking the
    branches to be independent): nngp = prod_i nngp_i and ntk = sum_i ntk_i prod_{j != i} nngp_j,
    at every pair of positions. So the NNGP features are the tensor product of the branches'
    NNGP features and the NTK features the concatenation over i of ntk_i (x) (the others' NNGP
    features), per position: each product written out where it fits the inner width, a
    TensorSRHT of it otherwise (every method). The branches need equal channel counts, and the
    product is not Gaussian (put a Dense or Conv before an activation), as in neural-tangents."""

    def stax(self, readout: bool = False):
        return _stax().FanInProd()


@dataclasses.dataclass(frozen=True)
class FanInConcat(Layer):
    """Concatenates the branches along the channel axis: the kernel is sum_i w_i K_i / sum_i w_i
    with w_i the branches' channel counts (equal counts: the plain mean), so the features are
    the concatenation of sqrt(w_i / sum w) phi_i. Only axis=-1 is supported."""

    axis: int = -1

    def __post_init__(self):
        if _checks.integer("FanInConcat.axis", self.axis) != -1:
            raise ValueError(f"FanInConcat: only axis=-1 (channels) is supported, got {self.axis}")

    def stax(self, readout: bool = False):
        return _stax().FanInConcat(axis=-1)


def serial(*layers) -> Serial:
    """Composes layers in sequence: a `Serial` description, which unpacks into
    (init_fn, feature_fn, kernel_fn):

        init_fn(key, input_shape, method=Sketch()) -> FeatureMap (the random parameters)
        feature_fn(params, x, get='ntk', *, batch_size=None, progress=None, **kwargs) -> features
        kernel_fn(x1, x2=None, get='ntk', *, batch_size=None, precision='highest', **kwargs) -> kernel

    See `ntkfeat.network` for the views.
    """
    return Serial(layers)


def parallel(*layers) -> Parallel:
    """Applies layer i to branch i of a FanOut."""
    return Parallel(layers)


def repeat(layer: Layer, n: int) -> Serial:
    """`layer` n times in sequence (neural-tangents' `repeat`, unrolled: same kernel)."""
    n = _checks.integer("repeat n", n, 1)
    return Serial((layer,) * n)


__all__ = ["FanInConcat", "FanInProd", "FanInSum", "FanOut", "Parallel", "Serial", "check_layers", "parallel", "repeat",
           "serial"]

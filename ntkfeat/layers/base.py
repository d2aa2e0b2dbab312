"""The base of every layer description.

A layer is a small frozen (hashable, static) dataclass that says what the network computes.
Each has its neural-tangents counterpart (`stax`), so that one description gives the exact
kernel, and a feature rule per method in `ntkfeat.features` gives the feature maps. Like a
neural-tangents layer, a description unpacks into its three views:

    init_fn, feature_fn, kernel_fn = nf.Dense(1)        # or nf.serial(...), nf.parallel(...)
"""

from __future__ import annotations

from ntkfeat import _checks

# Width of a finite network's hidden layers when a Dense / Conv leaves it unset (only finite
# networks and FanInConcat's weights use widths; the infinite-width kernels do not).
DEFAULT_DENSE_WIDTH = 512
DEFAULT_CONV_CHANNELS = 128


class Layer:
    """Base class of layer descriptions (frozen dataclasses)."""

    def stax(self, readout: bool = False):
        """neural-tangents' (init_fn, apply_fn, kernel_fn) of this layer. `readout`: this is the
        network's last weighted layer (its unset width defaults to 1 output)."""
        raise NotImplementedError

    @property
    def weighted(self) -> bool:
        """Whether the layer (or a layer inside it) has weights (Dense, Conv)."""
        return False

    def __iter__(self):
        from ntkfeat.network import views  # the views are built from the layers, not the reverse

        return iter(views(self))

    def __getitem__(self, index):
        """views[index], as for neural-tangents' triples: 0 init_fn, 1 feature_fn, 2 kernel_fn."""
        return tuple(self)[index]


def check_axes(layer: str, batch_axis, channel_axis) -> None:
    """ntkfeat works on NHWC / (batch, ..., channels) arrays, as neural-tangents does by default."""
    if _checks.integer(f"{layer}.batch_axis", batch_axis) != 0:
        raise ValueError(f"{layer}: only batch_axis=0 is supported, got {batch_axis}")
    if _checks.integer(f"{layer}.channel_axis", channel_axis) != -1:
        raise ValueError(f"{layer}: only channel_axis=-1 (channels last) is supported, got {channel_axis}")


def set_field(obj, name: str, value) -> None:
    """Normalizes a field of a frozen dataclass in __post_init__."""
    object.__setattr__(obj, name, value)

"""Horizontal flips of NHWC images: augmentation of the training rows and flip-averaged features.

    x_aug, y_aug = augment_flips(x_train, y_train)      # rows: x0, flip(x0), x1, flip(x1), ...
    apply = flip_averaged(apply)                        # phi(x) -> (phi(x) + phi(flip x)) / sqrt 2
    k = flip_averaged_kernel(kernel, x1, x2)            # the exact kernel of those features

A flip mirrors the W axis of (..., H, W, C) arrays. `flip_averaged` features are invariant under
flips, phi_avg(flip x) = phi_avg(x), and their kernel is
    K_avg(x, y) = (K(x, y) + K(x, fy) + K(fx, y) + K(fx, fy)) / 2,
which is K(x, y) + K(x, fy) when K is flip-equivariant (K(fx, fy) = K(x, y): convolutions with
symmetric padding, e.g. VALID or odd SAME or CIRCULAR filters, and pooling that tiles the width evenly
or runs circularly with an odd window, as local average pooling does).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

FLIP_MODES = ("augment", "average")


def flip_images(x):
    """x mirrored along its W axis (axis -2 of NHWC or HWC); NumPy in, contiguous NumPy out,
    JAX in, JAX out."""
    if x.ndim < 3:
        raise ValueError(f"flip_images needs images (..., H, W, C), got shape {x.shape}")
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x[..., ::-1, :])
    import jax.numpy as jnp

    return jnp.flip(x, axis=-2)


def augment_flips(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training rows with their mirror images, interleaved: x0, flip(x0), x1, flip(x1), ...

    Interleaving keeps every even-length prefix (a method's `n_train` rows) an augmented set of a
    prefix of the images.

    Args:
      x: (n, H, W, C) images; y: (n,) labels or targets.

    Returns:
      (x_aug, y_aug): (2n, H, W, C) of x's dtype and (2n,) with y_aug[2i] = y_aug[2i + 1] = y[i].
    """
    if x.ndim != 4:
        raise ValueError(f"flip augmentation needs NHWC images (n, H, W, C), got shape {x.shape}")
    out = np.empty((2 * len(x),) + x.shape[1:], x.dtype)
    out[0::2] = x
    out[1::2] = x[:, :, ::-1, :]
    return out, np.repeat(y, 2, axis=0)


def flip_averaged(apply: Callable) -> Callable:
    """apply(params, x) -> (apply(params, x) + apply(params, flip_images(x))) / sqrt(2).

    The features of an image and of its mirror image are then equal, and their kernel is
    `flip_averaged_kernel`. Costs two feature passes per batch.
    """

    def averaged(params, x, *args, **kwargs):
        return (apply(params, x, *args, **kwargs) + apply(params, flip_images(x), *args, **kwargs)) / math.sqrt(2)

    return averaged


def flip_averaged_kernel(kernel: Callable, x1, x2=None) -> np.ndarray:
    """(K(x1, x2) + K(x1, f x2) + K(f x1, x2) + K(f x1, f x2)) / 2 as float64, f the flip.

    kernel(a, b) -> (len(a), len(b)) array, b None meaning a with itself. For x2 None (x1 with
    itself), K(f x1, x1) = K(x1, f x1)^T saves one of the four blocks.
    """
    f1 = flip_images(x1)
    k = lambda a, b: np.asarray(kernel(a, b), np.float64)  # noqa: E731
    if x2 is None:
        cross = k(x1, f1)
        return (k(x1, None) + cross + cross.T + k(f1, None)) / 2
    f2 = flip_images(x2)
    return (k(x1, x2) + k(x1, f2) + k(f1, x2) + k(f1, f2)) / 2

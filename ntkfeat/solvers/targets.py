"""Classification as regression: centered one-hot targets and argmax accuracy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ntkfeat.solvers import _checks


def _xp(x):
    """NumPy for NumPy or Python inputs, jax.numpy otherwise (also under jit)."""
    return np if isinstance(x, (np.ndarray, np.generic, list, tuple, int)) else jnp


def one_hot_targets(labels, num_classes: int, dtype=np.float32):
    """Regression targets for classification: e_label - 1/k.

    Centering by 1/k (the convention of the NTK papers, e.g. Arora et al. 2019) makes every
    target row sum to 0, so no intercept is needed in ridge without one.

    Args:
      labels: (n,) integers in [0, num_classes).
      num_classes: k >= 2 (static under jit).
      dtype: of the result.

    Returns:
      (n, k) array: 1 - 1/k at the label, -1/k elsewhere. NumPy for NumPy labels, JAX otherwise.
    """
    k = int(num_classes)
    if k < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    xp = _xp(labels)
    labels = xp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D (n,) array of class indices, got shape {tuple(labels.shape)}")
    if not _checks.is_tracer(labels):
        if labels.size and not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise ValueError(
                f"labels must lie in [0, {k}); got values in [{int(labels.min())}, {int(labels.max())}]"
            )
    return (xp.arange(k) == labels[:, None]).astype(dtype) - xp.asarray(1.0 / k, dtype)


def accuracy(predictions, labels):
    """Fraction of rows whose argmax prediction is the label.

    Args:
      predictions: (n, k) scores.
      labels: (n,) class indices, or (n, k) targets (their argmax is the label).

    Returns:
      scalar in [0, 1] (float for NumPy inputs, JAX scalar otherwise).
    """
    xp = _xp(predictions)
    predictions, labels = xp.asarray(predictions), xp.asarray(labels)
    if labels.ndim == 2:
        labels = xp.argmax(labels, axis=1)
    if predictions.ndim != 2 or labels.shape != predictions.shape[:1]:
        raise ValueError(
            f"predictions must be (n, k) and labels (n,) or (n, k); got {tuple(predictions.shape)} "
            f"and {tuple(labels.shape)}"
        )
    return xp.mean(xp.argmax(predictions, axis=1) == labels)

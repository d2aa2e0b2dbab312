"""Exact kernel ridge regression, the reference that feature ridge approximates at moderate n.

    alpha = (K + lam I)^{-1} Y,    f(x) = K(x, X) alpha.

With K = Z Z^T this is ridge on the features Z (weights Z^T alpha): the dual form of `ridge`.
alpha and the predictions keep the target's shape: y (n,) gives alpha (n,) and predictions (t,).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat.solvers import _checks
from ntkfeat.solvers._float64 import host, regularized_solve, x64

# Largest relative asymmetry ||K - K^T||_F / ||K||_F accepted: float32 kernels computed blockwise
# differ from their transpose by ~1e-7, while a non-kernel matrix is off by O(1).
_ASYMMETRY = 1e-4


def kernel_ridge_fit(k_train, y, lam: float) -> np.ndarray:
    """Dual coefficients alpha = (K + lam I)^{-1} Y, by Cholesky in float64.

    Args:
      k_train: (n, n) kernel of the training rows, symmetric positive semi-definite (the
        symmetric part (K + K^T) / 2 is used).
      y: (n, k) targets, or (n,).
      lam: >= 0; lam = 0 interpolates and needs a non-singular K.

    Returns:
      float64 alpha in y's shape: (n, k), or (n,) for y (n,).
    """
    lam = _checks.regularization(lam)
    k_train = _checks.square(k_train, "k_train")
    vector = len(getattr(y, "shape", np.shape(y))) == 1
    y = _checks.targets(y, k_train, like_name="k_train")
    with x64():
        kernel = jnp.asarray(k_train).astype(jnp.float64)
        asymmetry = float(jnp.linalg.norm(kernel - kernel.T) / jnp.maximum(jnp.linalg.norm(kernel), 1e-300))
        if asymmetry > _ASYMMETRY:
            raise ValueError(
                f"k_train (shape {tuple(k_train.shape)}) is not symmetric (relative asymmetry {asymmetry:.2g}); "
                "pass the train-train kernel K(X, X)"
            )
        alpha, singular = regularized_solve((kernel + kernel.T) / 2, y, lam)
        alpha = host(alpha)
    if bool(singular):
        raise ValueError(
            f"K + lam I is not numerically positive definite at lam={lam:g} (singular kernel, e.g. duplicated "
            "rows); use lam > 0"
        )
    return alpha[:, 0] if vector else alpha


def kernel_ridge_predict(k_test_train, alpha):
    """Predictions K(X_test, X_train) alpha: (t, k) for alpha (n, k), (t,) for alpha (n,).

    NumPy inputs are computed in NumPy float64, JAX inputs (also under jit) in JAX at the kernel's
    dtype with full-precision matmul.
    """
    if not _checks.is_tracer(k_test_train) and not _checks.is_tracer(alpha):
        k_test_train, alpha = _checks.as_array(k_test_train, "k_test_train"), _checks.as_array(alpha, "alpha")
        if k_test_train.ndim != 2 or alpha.ndim not in (1, 2) or k_test_train.shape[1] != alpha.shape[0]:
            raise ValueError(
                f"k_test_train has shape {tuple(k_test_train.shape)} and alpha {tuple(alpha.shape)}: need "
                "(t, n) and (n, k) or (n,)"
            )
    if isinstance(k_test_train, np.ndarray):
        return np.asarray(k_test_train, np.float64) @ np.asarray(alpha, np.float64)
    return jnp.dot(k_test_train, jnp.asarray(alpha, k_test_train.dtype), precision=jax.lax.Precision.HIGHEST)

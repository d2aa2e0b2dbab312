"""How well features phi (n, m) stand in for a kernel K (n, n): in Frobenius norm, in every direction
at a regularization lambda, and in the ridge predictions a user gets.

    g = gram(phi)                                   # phi phi^T, float64
    relative_frobenius(g, k)                        # |G - K|_F / |K|_F
    spectral_error(g, k, lam)                       # smallest eps with (1 - eps)(K + lam I) <= G + lam I
                                                    #                    <= (1 + eps)(K + lam I)
    statistical_dimension(k, lam)                   # s_lam = tr(K (K + lam I)^-1)
    prediction_agreement(f_features, f_kernel)      # |f_Phi - f_K|_F / |f_K|_F
    ridge_prediction_agreement(phi_train, phi_test, k_train, k_test_train, y, lam)

Why spectral: ridge with features predicts like kernel ridge when G + lam I is close to K + lam I
relative to K + lam I itself, i.e. in the directions that ridge does not shrink away; a small
Frobenius error (dominated by the top eigenvalues) says little about the small ones, which matter
at small lambda (ALGORITHMS.md section 12). The NTK random features guarantee is
m = O(s_lam / eps^2) features for spectral error eps under leverage sampling.

Everything is float64 NumPy on the host (these run on evaluation subsets of a few thousand rows at
most; the cost is one O(n^3) symmetric eigendecomposition of K, plus one eigvalsh per lambda for
`spectral_error`). Inputs may be NumPy or JAX arrays of any float dtype; symmetric matrices are
symmetrized ((A + A^T) / 2) after a check that they are symmetric up to float32 roundoff.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "gram", "relative_frobenius", "spectral_error", "statistical_dimension", "prediction_agreement",
    "ridge_prediction_agreement", "RidgeAgreement",
]

# Largest relative asymmetry |A - A^T|_F / |A|_F accepted for a Gram or kernel matrix: float32
# kernels computed blockwise are off by ~1e-7, a matrix that is not a kernel by O(1).
_ASYMMETRY = 1e-4


# --------------------------------------------------------------------------- input checks


def _matrix(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has NaN or inf values")
    return a


def _symmetric(a, name: str) -> np.ndarray:
    """A finite, square, (nearly) symmetric matrix as float64, symmetrized."""
    a = _matrix(a, name)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square (n, n) matrix, got shape {a.shape}")
    norm = np.linalg.norm(a)
    if norm > 0 and np.linalg.norm(a - a.T) / norm > _ASYMMETRY:
        raise ValueError(f"{name} (shape {a.shape}) is not symmetric; pass a Gram or kernel matrix "
                         "(features phi: use gram(phi))")
    return (a + a.T) / 2


def _pair(approx, kernel, names=("gram", "kernel")):
    g, k = _symmetric(approx, names[0]), _symmetric(kernel, names[1])
    if g.shape != k.shape:
        raise ValueError(f"{names[0]} has shape {g.shape} and {names[1]} {k.shape}: they must be the same (n, n) "
                         "rows (features phi (n, m): use gram(phi))")
    return g, k


def _lambdas(lam):
    """(lambdas (L,) float64, scalar?) with every lambda finite and >= 0."""
    grid = np.asarray(lam, dtype=np.float64)
    if grid.ndim > 1 or grid.size == 0:
        raise ValueError(f"lam must be a number or a non-empty 1-D sequence, got shape {grid.shape}")
    if not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"lam must be finite and >= 0, got {lam!r}")
    return grid.reshape(-1), grid.ndim == 0


def _eigh(k: np.ndarray):
    """K = U diag(s) U^T with s clipped at 0, and the roundoff floor below which s is zero."""
    s, u = np.linalg.eigh(k)
    s = np.maximum(s, 0.0)
    floor = np.finfo(np.float64).eps * len(s) * max(float(s[-1]), 0.0)
    return s, u, floor


# --------------------------------------------------------------------------- metrics


def gram(phi) -> np.ndarray:
    """G = phi phi^T in float64.

    Args:
      phi: (n, m) features.

    Returns:
      (n, n) float64 Gram matrix, the features' approximation of the kernel.
    """
    phi = _matrix(phi, "phi")
    if phi.ndim != 2 or phi.shape[0] == 0:
        raise ValueError(f"phi must be a 2-D (n, m) feature matrix with n >= 1, got shape {phi.shape}")
    return phi @ phi.T


def relative_frobenius(gram, kernel) -> float:
    """|G - K|_F / |K|_F.

    Args:
      gram: (n, n) approximation G (e.g. `gram(phi)`).
      kernel: (n, n) exact kernel K, not all zero.

    Returns:
      float.
    """
    g, k = _pair(gram, kernel)
    norm = np.linalg.norm(k)
    if norm == 0:
        raise ValueError("kernel is all zero: the relative error is undefined")
    return float(np.linalg.norm(g - k) / norm)


def spectral_error(gram, kernel, lam):
    """The smallest eps with (1 - eps)(K + lam I) <= G + lam I <= (1 + eps)(K + lam I) (Loewner order).

    eps = max_i |mu_i - 1| over the eigenvalues mu of (K + lam I)^{-1/2} (G + lam I) (K + lam I)^{-1/2}
        = |D U^T (G - K) U D|_2,   K = U diag(s) U^T,  D = diag((s + lam)^{-1/2}).

    One symmetric eigendecomposition of K serves every lambda; U^T (G - K) U is formed from the
    difference G - K (no cancellation between two large matrices), then one eigvalsh per lambda.

    Args:
      gram: (n, n) approximation G, symmetric positive semi-definite (e.g. `gram(phi)`).
      kernel: (n, n) exact kernel K, symmetric positive semi-definite.
      lam: lambda >= 0, or a 1-D sequence of them. lam = 0 needs K positive definite: a K whose
        smallest eigenvalue is at its roundoff floor (n eps max eig) raises ValueError, since
        (K + lam I)^{-1/2} does not exist there and eps would be roundoff over roundoff.

    Returns:
      float eps >= 0 for a scalar lam, (L,) float64 array for a sequence.
    """
    g, k = _pair(gram, kernel)
    lambdas, scalar = _lambdas(lam)
    s, u, floor = _eigh(k)
    shifted = s[None, :] + lambdas[:, None]  # (L, n)
    if np.any(shifted <= floor):
        bad = lambdas[np.any(shifted <= floor, axis=1)]
        raise ValueError(
            f"spectral_error: K + lam I is singular at lam = {bad[0]:g} (K's smallest eigenvalue {s[0]:.3g} is at "
            f"its roundoff floor {floor:.3g}); use a larger lam"
        )
    e = u.T @ (g - k) @ u
    e = (e + e.T) / 2
    out = np.empty(len(lambdas))
    for i, d in enumerate(1.0 / np.sqrt(shifted)):
        out[i] = np.max(np.abs(np.linalg.eigvalsh(d[:, None] * e * d[None, :])))
    return float(out[0]) if scalar else out


def statistical_dimension(kernel, lam):
    """s_lam = tr(K (K + lam I)^{-1}) = sum_i s_i / (s_i + lam), K = U diag(s) U^T.

    The effective number of directions ridge keeps at lambda: n for lam -> 0 with K positive
    definite, 0 for lam -> inf. At lam = 0 it is the limit lam -> 0+, the numerical rank of K
    (eigenvalues above the roundoff floor n eps max eig count 1, the others 0).

    Args:
      kernel: (n, n) symmetric positive semi-definite kernel.
      lam: lambda >= 0, or a 1-D sequence of them.

    Returns:
      float for a scalar lam, (L,) float64 array for a sequence.
    """
    k = _symmetric(kernel, "kernel")
    lambdas, scalar = _lambdas(lam)
    s = np.maximum(np.linalg.eigvalsh(k), 0.0)
    floor = np.finfo(np.float64).eps * len(s) * max(float(s[-1]), 0.0)
    s = np.where(s > floor, s, 0.0)
    shifted = s[None, :] + lambdas[:, None]
    ratio = np.divide(s[None, :], shifted, out=np.zeros_like(shifted), where=shifted > 0)
    out = ratio.sum(axis=1)
    return float(out[0]) if scalar else out


def prediction_agreement(f_approx, f_exact) -> float:
    """|f_Phi - f_K|_F / |f_K|_F over test rows (and outputs).

    Args:
      f_approx: (t,) or (t, k) predictions of the approximation (ridge on features).
      f_exact: the exact predictions (kernel ridge), the same shape, not all zero.

    Returns:
      float, 0 for identical predictions.
    """
    a, b = _matrix(f_approx, "f_approx"), _matrix(f_exact, "f_exact")
    if a.shape != b.shape or a.ndim not in (1, 2) or a.size == 0:
        raise ValueError(f"f_approx has shape {a.shape} and f_exact {b.shape}: they must be the same (t,) or (t, k) "
                         "predictions of the same test rows")
    norm = np.linalg.norm(b)
    if norm == 0:
        raise ValueError("f_exact is all zero: the relative disagreement is undefined")
    return float(np.linalg.norm(a - b) / norm)


class RidgeAgreement(NamedTuple):
    agreement: float  # |f_features - f_kernel|_F / |f_kernel|_F
    f_features: np.ndarray  # (t,) or (t, k) ridge predictions on the features
    f_kernel: np.ndarray  # (t,) or (t, k) kernel ridge predictions


def ridge_prediction_agreement(phi_train, phi_test, k_train, k_test_train, y, lam: float) -> RidgeAgreement:
    """Ridge on features and kernel ridge at the same lambda, and how far their test predictions differ.

        f_Phi = phi_test (phi_train^T phi_train + lam I)^{-1} phi_train^T y   (`solvers.fit_ridge`)
        f_K   = K(X_test, X) (K + lam I)^{-1} y                              (`solvers.kernel_ridge_fit`)

    Both in float64. With phi phi^T = K exactly, f_Phi = f_K (push-through identity).

    Args:
      phi_train: (n, m) training features; phi_test: (t, m) test features.
      k_train: (n, n) exact kernel of the training rows; k_test_train: (t, n).
      y: (n,) or (n, k) training targets (the predictions keep y's shape).
      lam: >= 0 (0 needs non-singular systems).

    Returns:
      RidgeAgreement(agreement, f_features, f_kernel).
    """
    from ntkfeat import solvers  # the solvers import JAX; the metrics themselves need NumPy only

    phi_train, phi_test = _matrix(phi_train, "phi_train"), _matrix(phi_test, "phi_test")
    k_test_train = _matrix(k_test_train, "k_test_train")
    if phi_test.ndim != 2 or phi_train.ndim != 2 or phi_test.shape[1] != phi_train.shape[1]:
        raise ValueError(f"phi_train has shape {phi_train.shape} and phi_test {phi_test.shape}: need (n, m) and (t, m)")
    if np.shape(k_train) != (phi_train.shape[0],) * 2:
        raise ValueError(f"k_train has shape {np.shape(k_train)}, expected (n, n) = {(phi_train.shape[0],) * 2} from "
                         "phi_train")
    if k_test_train.shape != (phi_test.shape[0], phi_train.shape[0]):
        raise ValueError(f"k_test_train has shape {k_test_train.shape}, expected (t, n) = "
                         f"{(phi_test.shape[0], phi_train.shape[0])} from phi_test and phi_train")
    f_features = solvers.predict(solvers.fit_ridge(phi_train, y, lam), phi_test)
    f_kernel = solvers.kernel_ridge_predict(k_test_train, solvers.kernel_ridge_fit(k_train, y, lam))
    return RidgeAgreement(prediction_agreement(f_features, f_kernel), f_features, f_kernel)

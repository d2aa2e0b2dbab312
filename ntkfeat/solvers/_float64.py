"""Float64 linear algebra on the default JAX device, with 64-bit mode on only inside these calls.

Why float64: at the small end of a regularization path the solve sees the Gram's condition
number, which for random features easily exceeds 1 / eps_float32 ~ 1e7, so the Gram must be
accumulated and factored in float64 even though the features are float32.

Why JAX and not host NumPy: the products Z^T Z cost n m^2 and the factorizations m^3; under
`jax.enable_x64(True)` they run on the accelerator where the features already are, and the scope
leaves the global `jax_enable_x64` setting alone. Callers enter `x64()` around these kernels and
convert results with `host()` before leaving it: a JAX float64 array used after the scope ends is
silently rounded to float32 by the next jnp operation, a NumPy float64 array never is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def x64():
    """Context in which JAX creates and traces float64 arrays."""
    return jax.enable_x64(True)


def host(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _f64(x):
    return jnp.asarray(x).astype(jnp.float64)


@jax.jit
def moments(z, y):
    """(Z^T Z (m, m), Z^T Y (m, k), column sums of Y^2 (k,)) in float64."""
    z, y = _f64(z), _f64(y)
    return z.T @ z, z.T @ y, jnp.sum(y * y, axis=0)


@jax.jit
def sum_squares(z):
    """||Z||_F^2 = trace(Z^T Z) = trace(Z Z^T) in float64."""
    return jnp.sum(jnp.square(_f64(z)))


@jax.jit
def outer_rows(a, b):
    """A B^T in float64: the kernel matrix Z Z^T (or a cross block Z_v Z_t^T)."""
    return _f64(a) @ _f64(b).T


@jax.jit
def transpose_times(a, b):
    """A^T B in float64 (dual weights W = Z^T alpha)."""
    return _f64(a).T @ _f64(b)


# A Cholesky pivot L_ii^2 below this fraction of its diagonal entry A_ii + lam means the column
# is a linear combination of the previous ones up to roundoff (a duplicated feature gives ~1e-16):
# the solve would return roundoff-amplified weights, so it is reported as singular instead.
SINGULAR_PIVOT = 1e-12


@jax.jit
def regularized_solve(a, b, lam):
    """(A + lam I)^{-1} B for symmetric positive semi-definite A, by Cholesky.

    Returns:
      (solution, singular): singular is True when A + lam I is not numerically positive
      definite (some pivot ratio L_ii^2 / (A_ii + lam) < SINGULAR_PIVOT, or NaN from a failed
      factorization), as for lam = 0 with a rank-deficient A; callers turn it into an error.
    """
    a = _f64(a)
    a = a + lam * jnp.eye(a.shape[0], dtype=a.dtype)
    factor = jax.scipy.linalg.cho_factor(a, lower=True)
    pivots = jnp.diagonal(factor[0]) ** 2 / jnp.diagonal(a)
    singular = ~jnp.all(pivots >= SINGULAR_PIVOT)  # also catches NaN
    return jax.scipy.linalg.cho_solve(factor, _f64(b)), singular


@jax.jit
def times(a, b):
    """A B in float64."""
    return _f64(a) @ _f64(b)


@jax.jit
def eigen_rotate(a, r):
    """A = U diag(s) U^T; returns s (clipped at 0), U and U^T r."""
    s, u = jnp.linalg.eigh(_f64(a))
    return jnp.maximum(s, 0.0), u, u.T @ _f64(r)


@jax.jit
def spectral_fold(a_train, a_cross, r_train):
    """One eigendecomposition serves every lambda of a fold.

    With a_train = U diag(s) U^T (the train Gram Z_t^T Z_t in primal form, the train kernel
    K_tt in dual form), validation predictions at lambda are

        P(lam) = a_cross U diag(1 / (s + lam)) U^T r_train,

    with a_cross = Z_v, r_train = Z_t^T Y_t (primal) or a_cross = K_vt, r_train = Y_t (dual).

    Returns:
      s (r,) eigenvalues clipped at 0, a_cross U (n_v, r), U^T r_train (r, k).
    """
    s, u, b = eigen_rotate(a_train, r_train)
    return s, _f64(a_cross) @ u, b


def _inverse_shift(s, lam):
    """1 / (s + lam), with 0 for directions that are numerically null (a pseudo-inverse at lam = 0)."""
    floor = jnp.finfo(s.dtype).eps * s.shape[0] * jnp.max(s)
    shifted = s + lam
    return jnp.where(shifted > floor, 1.0 / jnp.where(shifted > floor, shifted, 1.0), 0.0)


@jax.jit
def path_errors(a, s, b, y, lams):
    """For every lam: P = a diag(1 / (s + lam)) b (n_v, k) against targets y (n_v, k).

    Returns:
      (sum of squared errors (L,), number of rows with argmax P == argmax y (L,)); one lambda at a
      time (lax.map) so memory stays at one (n_v, k) prediction.
    """
    y = _f64(y)
    labels = jnp.argmax(y, axis=1)

    def one(lam):
        p = (a * _inverse_shift(s, lam)) @ b
        return jnp.sum((p - y) ** 2), jnp.sum(jnp.argmax(p, axis=1) == labels)

    return jax.lax.map(one, _f64(lams))


@jax.jit
def path_sse_from_moments(s, u, b, val_gram, val_cross, val_yty, lams):
    """Validation sums of squared errors from validation moments only, for every lam.

    With W = U diag(d) b, d = 1 / (s + lam):
        ||Z_v W - Y_v||^2 = tr(W^T Z_v^T Z_v W) - 2 tr(W^T Z_v^T Y_v) + ||Y_v||^2
                          = d^T (H o b b^T) d - 2 d . rowsum(b o c) + ||Y_v||^2,
    where H = U^T Z_v^T Z_v U, c = U^T Z_v^T Y_v and o is the elementwise product; after one
    O(m^3) rotation every lambda costs O(m^2).

    The subtraction loses digits when the fit is near-perfect (relative error ~ 1e-16 ||Y_v||^2 /
    residual); the result is clipped at 0.
    """
    h = u.T @ _f64(val_gram) @ u
    c = u.T @ _f64(val_cross)
    quad = h * (b @ b.T)
    lin = jnp.sum(b * c, axis=1)
    total = jnp.sum(_f64(val_yty))

    def one(lam):
        d = _inverse_shift(s, lam)
        return jnp.maximum(d @ quad @ d - 2.0 * d @ lin + total, 0.0)

    return jax.lax.map(one, _f64(lams))

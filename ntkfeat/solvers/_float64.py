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
# With lam > 0 and A positive semi-definite every pivot is at least lam in exact arithmetic, so a
# pivot of at least lam / 2 is lam's doing, not roundoff's: accepted whatever its ratio (duplicated
# rows of a kernel with a large diagonal, A_ii ~ 1e4, at lam ~ 1e-8 have ratios near 1e-12).
SINGULAR_PIVOT = 1e-12


@jax.jit
def regularized_solve(a, b, lam):
    """(A + lam I)^{-1} B for symmetric positive semi-definite A, by Cholesky.

    Returns:
      (solution, singular): singular is True when A + lam I is not numerically positive
      definite (some pivot L_ii^2 below both SINGULAR_PIVOT (A_ii + lam) and lam / 2, or NaN
      from a failed factorization), as for lam = 0 with a rank-deficient A; callers turn it into
      an error.
    """
    a = _f64(a)
    a = a + lam * jnp.eye(a.shape[0], dtype=a.dtype)
    factor = jax.scipy.linalg.cho_factor(a, lower=True)
    squares = jnp.diagonal(factor[0]) ** 2
    ok = (squares / jnp.diagonal(a) >= SINGULAR_PIVOT) | ((lam > 0) & (squares >= 0.5 * lam))
    singular = ~jnp.all(ok)  # also catches NaN (every comparison with NaN is False)
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


# --------------------------------------------------------------------------- GCV and exact LOO
#
# For ridge with hat matrix H = A (A + lam I)^{-1} (A = K, or Z Z^T for features), write the
# eigendecomposition A = U diag(s) U^T and b = U^T Y. The residual and the LOO denominators are
#     r = Y - H Y = U diag(lam / (s + lam)) b,    1 - H_ii = sum_j U_ij^2 lam / (s_j + lam),
#     n - tr H = sum_j lam / (s_j + lam),
# and both the LOO residuals r_i / (1 - H_ii) and GCV = n |r|^2 / (n - tr H)^2 are unchanged when
# the weights g_j = lam / (s_j + lam) are all multiplied by one constant. Dividing by lam gives
# g_j = 1 / (s_j + lam), which stays finite at lam -> 0 where lam / (s + lam) vanishes:
# - lam > 0: g_j = 1 / (s_j + lam), with numerically null s_j (below the eigh roundoff floor) set to 0;
# - lam = 0 and A singular: the limit puts all the weight on the null directions (g = 1 there, 0 elsewhere);
# - lam = 0 and A non-singular: g_j = 1 / s_j, the classic [A^{-1} Y]_i / [A^{-1}]_ii.
# So lam = 0 gives the lam -> 0+ limit in every case, without dividing 0 by 0.


def _eigh_floor(s):
    """Eigenvalues at or below this are roundoff of a zero eigenvalue (eigh's backward error)."""
    return jnp.finfo(s.dtype).eps * s.shape[0] * jnp.maximum(jnp.max(s), 0.0)


def _residual_weights(s, null, null_count, lam):
    """(g (r,), g_null): the residual weights of the non-null directions and of each null one."""
    positive = lam > 0
    safe = jnp.where(null, 1.0, s + lam)
    g = jnp.where(null, 0.0, jnp.where(positive | (null_count == 0), 1.0 / safe, 0.0))
    g_null = jnp.where(positive, 1.0 / jnp.where(positive, lam, 1.0), 1.0)
    return g, g_null


def _gcv_one(s, null, energy, null_count, null_energy, n, lam):
    """n GCV = n^2 |r|^2 / (n - tr H)^2, summed over outputs, in the rescaled weights (see above):
    GCV's estimate of the sum of squared errors over n fresh rows, comparable to LOO's."""
    g, g_null = _residual_weights(s, null, null_count, lam)
    has_null = null_count > 0
    num = jnp.sum(energy * g**2) + jnp.where(has_null, null_energy * g_null**2, 0.0)
    den = jnp.sum(g) + null_count * g_null
    return n * n * num / den**2


@jax.jit
def gcv_path_dual(s, b, lams):
    """n GCV (L,) (summed over outputs, see `_gcv_one`) from an eigendecomposition A = U diag(s) U^T
    of the full (n, n) kernel and b = U^T Y (n, k). O(n k) per lambda."""
    s = jnp.maximum(_f64(s), 0.0)
    null = s <= _eigh_floor(s)
    energy = jnp.sum(_f64(b) ** 2, axis=1)
    null_count = jnp.sum(null)
    null_energy = jnp.sum(jnp.where(null, energy, 0.0))
    energy = jnp.where(null, 0.0, energy)
    n = s.shape[0]
    return jax.lax.map(lambda lam: _gcv_one(s, null, energy, null_count, null_energy, n, lam), _f64(lams))


@jax.jit
def gcv_path_gram(s, c, yty, n, lams):
    """n GCV (L,) (summed over outputs, see `_gcv_one`) of primal ridge from Gram statistics only.

    With Z^T Z = V diag(s) V^T (m, m) and c = V^T Z^T Y (m, k): the left singular direction
    u_j = Z v_j / sqrt(s_j) carries energy p_j = |c_j|^2 / s_j of Y; the n - rank(Z) directions
    orthogonal to the range of Z carry |Y|^2 - sum_j p_j and are never shrunk. This is
    y^T y - 2 w^T Z^T y + w^T Z^T Z w written per direction; the subtraction loses digits only when
    the fit is near-perfect (clipped at 0).
    """
    s = jnp.maximum(_f64(s), 0.0)
    null = s <= _eigh_floor(s)
    safe = jnp.where(null, 1.0, s)
    energy = jnp.where(null, 0.0, jnp.sum(_f64(c) ** 2, axis=1) / safe)
    rank = jnp.sum(~null)
    null_count = jnp.maximum(n - rank, 0)
    null_energy = jnp.maximum(jnp.sum(_f64(yty)) - jnp.sum(energy), 0.0)
    return jax.lax.map(lambda lam: _gcv_one(s, null, energy, null_count, null_energy, n, lam), _f64(lams))


@jax.jit
def loo_path_dual(s, u, b, lams):
    """Exact leave-one-out sums of squared errors (L,) from A = U diag(s) U^T (n, n) and b = U^T Y.

    LOO residual of row i: r_i / (1 - H_ii), both from the rescaled weights g (see above); a
    lambda at which some 1 - H_ii vanishes (a row fitted exactly whatever its target: lam = 0 with
    A singular and row i outside the null space) scores inf. O(n^2 k) per lambda.
    """
    s, u, b = jnp.maximum(_f64(s), 0.0), _f64(u), _f64(b)
    null = s <= _eigh_floor(s)
    null_count = jnp.sum(null)
    uu = u * u

    def one(lam):
        g, g_null = _residual_weights(s, null, null_count, lam)
        g = jnp.where(null, g_null, g)
        residual = u @ (g[:, None] * b)
        denominator = uu @ g
        bad = jnp.any(denominator <= _eigh_floor(g))
        safe = jnp.where(bad, 1.0, denominator)
        return jnp.where(bad, jnp.inf, jnp.sum((residual / safe[:, None]) ** 2))

    return jax.lax.map(one, _f64(lams))


@jax.jit
def loo_path_primal(z, y, lams):
    """Exact leave-one-out sums of squared errors (L,) of primal ridge on in-memory features.

    Z^T Z = V diag(s) V^T, a = Z V (n, m): H_ii = sum_j a_ij^2 / (s_j + lam) (pseudo-inverse on
    null directions), residual Y - a diag(1 / (s + lam)) V^T Z^T Y. 1 - H_ii is a difference
    here, accurate to ~m eps; a lambda with some 1 - H_ii below 100 m eps (a row that the fit
    interpolates) scores inf. O(n m k) per lambda after the O(n m^2 + m^3) rotation.
    """
    z, y = _f64(z), _f64(y)
    s, v = jnp.linalg.eigh(z.T @ z)
    s = jnp.maximum(s, 0.0)
    c = v.T @ (z.T @ y)
    a = z @ v
    aa = a * a
    tiny = 100.0 * jnp.finfo(s.dtype).eps * s.shape[0]

    def one(lam):
        d = _inverse_shift(s, lam)
        residual = y - a @ (d[:, None] * c)
        denominator = 1.0 - aa @ d
        bad = jnp.any(denominator <= tiny)
        safe = jnp.where(bad, 1.0, denominator)
        return jnp.where(bad, jnp.inf, jnp.sum((residual / safe[:, None]) ** 2))

    return jax.lax.map(one, _f64(lams))

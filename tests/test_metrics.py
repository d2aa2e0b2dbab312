"""ntkfeat.metrics against direct dense float64 computations, edge cases, and a statistical check
that the spectral error and the prediction disagreement of random features fall as m grows."""

import re

import jax
import numpy as np
import pytest
import scipy.linalg

import ntkfeat as nf
from ntkfeat import metrics as M


def psd(n, rank, seed=0, scale=1.0):
    """A symmetric positive semi-definite (n, n) matrix of the given rank, float64."""
    a = np.random.RandomState(seed).randn(n, rank)
    return scale * a @ a.T / rank


def inverse_sqrt(a):
    return np.real(scipy.linalg.inv(scipy.linalg.sqrtm(a)))


def test_exported():
    assert nf.metrics is M and "metrics" in nf.__all__


def test_gram_and_relative_frobenius():
    phi = np.random.RandomState(1).randn(20, 7).astype(np.float32)
    g = M.gram(phi)
    assert g.dtype == np.float64 and g.shape == (20, 20)
    np.testing.assert_allclose(g, phi.astype(np.float64) @ phi.T.astype(np.float64), rtol=1e-14)
    k = psd(20, 20, seed=2)
    assert M.relative_frobenius(g, k) == pytest.approx(np.linalg.norm(g - k) / np.linalg.norm(k), rel=1e-13)
    assert M.relative_frobenius(k, k) == 0.0
    assert M.gram(jax.numpy.asarray(phi)).dtype == np.float64  # JAX input


@pytest.mark.parametrize("lam", [1e-3, 0.1, 10.0])
def test_spectral_error_equals_dense_definition(lam):
    n = 25
    k = psd(n, n, seed=3)
    g = k + 0.05 * psd(n, 5, seed=4) - 0.02 * psd(n, 3, seed=5)
    eps = M.spectral_error(g, k, lam)
    # direct: eigenvalues of (K + lam I)^{-1/2} (G + lam I) (K + lam I)^{-1/2}, by scipy's sqrtm
    r = inverse_sqrt(k + lam * np.eye(n))
    mu = np.linalg.eigvalsh(r @ (g + lam * np.eye(n)) @ r)
    assert eps == pytest.approx(np.max(np.abs(mu - 1)), rel=1e-8)
    # it is the smallest such eps: both Loewner inequalities hold, one of them with equality
    lower = g + lam * np.eye(n) - (1 - eps) * (k + lam * np.eye(n))
    upper = (1 + eps) * (k + lam * np.eye(n)) - (g + lam * np.eye(n))
    low, up = np.linalg.eigvalsh(lower)[0], np.linalg.eigvalsh(upper)[0]
    scale = np.linalg.norm(k, 2)
    assert low >= -1e-10 * scale and up >= -1e-10 * scale
    assert min(low, up) <= 1e-10 * scale


def test_spectral_error_and_statistical_dimension_vectorized():
    k = psd(30, 12, seed=6)  # singular (rank 12): fine at lam > 0
    g = psd(30, 40, seed=7)
    lambdas = np.array([1e-2, 1.0, 100.0])
    eps = M.spectral_error(g, k, lambdas)
    assert eps.shape == (3,)
    np.testing.assert_allclose(eps, [M.spectral_error(g, k, lam) for lam in lambdas], rtol=1e-12)
    assert np.all(np.diff(eps) < 0)  # more regularization hides more of the difference
    s_lam = M.statistical_dimension(k, lambdas)
    direct = [np.trace(k @ np.linalg.inv(k + lam * np.eye(30))) for lam in lambdas]
    np.testing.assert_allclose(s_lam, direct, rtol=1e-9)
    assert isinstance(M.statistical_dimension(k, 1.0), float)
    assert np.all(np.diff(s_lam) < 0) and 0 < s_lam[-1] < s_lam[0] < 12


def test_lam_zero():
    k = psd(15, 15, seed=8)  # positive definite: lam = 0 is fine
    g = psd(15, 15, seed=9)
    r = inverse_sqrt(k)
    assert M.spectral_error(g, k, 0.0) == pytest.approx(np.max(np.abs(np.linalg.eigvalsh(r @ g @ r) - 1)), rel=1e-6)
    assert M.statistical_dimension(k, 0.0) == pytest.approx(15.0)
    singular = psd(15, 6, seed=10)
    with pytest.raises(ValueError, match="singular at lam = 0"):
        M.spectral_error(g, singular, 0.0)
    with pytest.raises(ValueError, match="singular at lam = 0"):
        M.spectral_error(g, singular, [1.0, 0.0])
    assert M.statistical_dimension(singular, 0.0) == pytest.approx(6.0)  # the limit lam -> 0+: the rank
    assert M.statistical_dimension(np.zeros((4, 4)), 1.0) == 0.0


def test_prediction_agreement():
    rng = np.random.RandomState(11)
    f = rng.randn(40, 3)
    noise = 0.01 * rng.randn(40, 3)
    assert M.prediction_agreement(f + noise, f) == pytest.approx(np.linalg.norm(noise) / np.linalg.norm(f))
    assert M.prediction_agreement(f[:, 0], f[:, 0]) == 0.0


def test_ridge_prediction_agreement_equals_direct_solves():
    rng = np.random.RandomState(12)
    n, t, m = 40, 15, 60
    phi_train, phi_test = rng.randn(n, m), rng.randn(t, m)
    x_train, x_test = rng.randn(n, 8), rng.randn(t, 8)
    k_train, k_test = x_train @ x_train.T + 1.0, x_test @ x_train.T + 1.0
    y = rng.randn(n)
    lam = 3.0
    out = M.ridge_prediction_agreement(phi_train, phi_test, k_train, k_test, y, lam)
    f_phi = phi_test @ np.linalg.solve(phi_train.T @ phi_train + lam * np.eye(m), phi_train.T @ y)
    f_k = k_test @ np.linalg.solve(k_train + lam * np.eye(n), y)
    assert out.f_features.shape == out.f_kernel.shape == (t,)  # a vector target gives vector predictions
    np.testing.assert_allclose(out.f_features, f_phi, rtol=1e-8)
    np.testing.assert_allclose(out.f_kernel, f_k, rtol=1e-8)
    assert out.agreement == pytest.approx(np.linalg.norm(f_phi - f_k) / np.linalg.norm(f_k), rel=1e-8)
    # features whose Gram is the kernel predict exactly like kernel ridge
    exact = M.ridge_prediction_agreement(np.c_[x_train, np.ones(n)], np.c_[x_test, np.ones(t)], k_train, k_test,
                                         y[:, None], lam)
    assert exact.f_kernel.shape == (t, 1) and exact.agreement < 1e-10


def test_errors():
    k = psd(10, 10, seed=13)
    with pytest.raises(ValueError, match=re.escape("gram has shape (9, 9) and kernel (10, 10)")):
        M.relative_frobenius(k[:9, :9], k)
    with pytest.raises(ValueError, match=re.escape("gram has shape (9, 9) and kernel (10, 10)")):
        M.spectral_error(k[:9, :9], k, 1.0)
    with pytest.raises(ValueError, match="square"):
        M.spectral_error(np.ones((10, 4)), k, 1.0)  # features where a Gram is expected
    with pytest.raises(ValueError, match="not symmetric"):
        M.relative_frobenius(np.triu(k), k)
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        M.spectral_error(k, k, -1.0)
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        M.statistical_dimension(k, [1.0, np.nan])
    with pytest.raises(ValueError, match="NaN or inf"):
        M.statistical_dimension(np.full((3, 3), np.nan), 1.0)
    with pytest.raises(ValueError, match=re.escape("f_approx has shape (5,) and f_exact (5, 1)")):
        M.prediction_agreement(np.ones(5), np.ones((5, 1)))
    with pytest.raises(ValueError, match="all zero"):
        M.prediction_agreement(np.ones(5), np.zeros(5))
    with pytest.raises(ValueError, match="all zero"):
        M.relative_frobenius(k, np.zeros((10, 10)))
    with pytest.raises(ValueError, match=re.escape("k_test_train has shape (3, 9), expected (t, n) = (3, 10)")):
        M.ridge_prediction_agreement(np.ones((10, 4)), np.ones((3, 4)), k, np.ones((3, 9)), np.ones(10), 1.0)


def test_random_features_converge_spectrally_and_in_predictions():
    """phi = x W / sqrt(m), W (d, m) standard Gaussian: E[phi phi^T] = x x^T, the linear kernel.

    With K = x x^T (rank d = 20, 200 rows) the spectral error at lam is about |W W^T / m - I|
    measured in the directions K + lam I keeps, ~ 2 sqrt(d / m) for lam well below K's spectrum:
    expected ~0.56 at m = 256, ~0.14 at m = 4096 (a 4x fall for 16x the features). The test only
    asks for a fall by 2.5x between them and monotone decrease over m = 256, 1024, 4096, with fixed
    keys (deterministic), so it passes with a wide margin for the sampling noise of one draw; the
    prediction disagreement of ridge on phi against kernel ridge falls the same way. Measured:
    eps 0.67, 0.27, 0.13 and disagreement 2.8e-3, 1.7e-3, 7.3e-4 (small: the features span the
    same d directions as K, so only the shrinkage differs)."""
    rng = np.random.RandomState(14)
    n, t, d = 200, 50, 20
    x = rng.randn(n + t, d) / np.sqrt(d)
    x_train, x_test = x[:n], x[n:]
    k_train, k_test = x_train @ x_train.T, x_test @ x_train.T
    y = x_train @ rng.randn(d) + 0.1 * rng.randn(n)
    lam = 0.01 * np.trace(k_train) / d  # 1% of K's mean non-zero eigenvalue
    eps, agreement = [], []
    for i, m in enumerate((256, 1024, 4096)):
        w = np.asarray(jax.random.normal(jax.random.PRNGKey(i), (d, m)), np.float64)
        phi = x @ w / np.sqrt(m)
        eps.append(M.spectral_error(M.gram(phi[:n]), k_train, lam))
        agreement.append(M.ridge_prediction_agreement(phi[:n], phi[n:], k_train, k_test, y, lam).agreement)
    assert eps[0] > eps[1] > eps[2] and eps[0] > 2.5 * eps[2]
    assert agreement[0] > agreement[1] > agreement[2] and agreement[0] > 2.5 * agreement[2]
    assert 0.2 < eps[0] < 1.2 and eps[2] < 0.3  # the scale predicted above, within a factor ~2
    s_lam = M.statistical_dimension(k_train, lam)
    assert 15 < s_lam < d  # nearly all d directions are kept at this lambda

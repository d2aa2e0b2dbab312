import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkfeat as nf
from ntkfeat.exact import arccos_kernel0, arccos_kernel0_taylor, arccos_kernel1, arccos_kernel1_taylor, fc_nngp, fc_ntk
from ntkfeat.polynomials import poly_eval

from conftest import fc_stack, rel_fro

RHO = np.linspace(-1, 1, 41)


def test_arccos_identities():
    assert arccos_kernel0(1.0) == pytest.approx(1.0)
    assert arccos_kernel1(1.0) == pytest.approx(1.0)
    assert arccos_kernel1(0.0) == pytest.approx(1 / np.pi)
    assert arccos_kernel0(0.0) == pytest.approx(0.5)
    assert arccos_kernel0(-1.0) == pytest.approx(0.0)
    assert arccos_kernel1(-1.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("x64", [False, True])
def test_kappa1_derivative_is_kappa0(x64):
    with jax.enable_x64(x64):
        rho = jnp.linspace(-0.95, 0.95, 19)
        grad = jax.vmap(jax.grad(arccos_kernel1))(rho)
        tol = 1e-12 if x64 else 1e-5
        np.testing.assert_allclose(grad, arccos_kernel0(rho), atol=tol)
        assert arccos_kernel1(rho).dtype == (jnp.float64 if x64 else jnp.float32)


def test_monte_carlo_definitions():
    # 2 E[1{w.x>0} 1{w.y>0}] = kappa0 and 2 E[relu(w.x) relu(w.y)] = |x||y| kappa1; 400k samples
    # give a standard error below 2e-3, so 1e-2 is a 5-sigma tolerance.
    key = jax.random.PRNGKey(0)
    x = np.array([1.0, 0.0, 0.0])
    y = np.array([0.3, 0.8, 0.2])
    w = np.asarray(jax.random.normal(key, (400_000, 3)))
    rho = x @ y / np.linalg.norm(x) / np.linalg.norm(y)
    k0 = 2 * np.mean((w @ x > 0) & (w @ y > 0))
    k1 = 2 * np.mean(np.maximum(w @ x, 0) * np.maximum(w @ y, 0)) / np.linalg.norm(x) / np.linalg.norm(y)
    assert k0 == pytest.approx(arccos_kernel0(rho), abs=1e-2)
    assert k1 == pytest.approx(arccos_kernel1(rho), abs=1e-2)


def test_taylor_coefficients_nonnegative_and_converge():
    c0, c1 = arccos_kernel0_taylor(401), arccos_kernel1_taylor(402)
    assert np.all(c0 >= 0) and np.all(c1 >= 0)
    rho = np.linspace(-0.9, 0.9, 19)
    np.testing.assert_allclose(poly_eval(c0, rho), arccos_kernel0(rho), atol=1e-6)
    np.testing.assert_allclose(poly_eval(c1, rho), arccos_kernel1(rho), atol=1e-6)
    # truncation error at rho = 1 (the documented 0.182 / 0.0225 for the lowest degrees)
    assert 1 - poly_eval(arccos_kernel0_taylor(1), 1.0) == pytest.approx(0.182, abs=1e-3)
    assert 1 - poly_eval(arccos_kernel1_taylor(2), 1.0) == pytest.approx(0.0225, abs=1e-3)


def test_taylor_rejects_negative_degree():
    with pytest.raises(ValueError):
        arccos_kernel0_taylor(-1)


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4])
def test_fc_ntk_diagonal(depth):
    assert fc_ntk(1.0, depth) == pytest.approx(depth + 1)
    assert fc_nngp(1.0, depth) == pytest.approx(1.0)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_fc_ntk_matches_neural_tangents(tabular, depth):
    x = tabular[:30].astype(np.float64)
    with jax.enable_x64(True):
        _, _, kernel_fn = nf.serial(*fc_stack(nf, depth))
        k_nt = np.asarray(kernel_fn(x, x, "ntk"))
    norms = np.linalg.norm(x, axis=1)
    rho = np.clip(x @ x.T / np.outer(norms, norms), -1, 1)
    k = np.outer(norms, norms) * fc_ntk(rho, depth) / x.shape[1]
    assert rel_fro(k, k_nt) < 1e-6

import numpy as np
import pytest

from ntkfeat.exact import arccos_kernel0, arccos_kernel1, fc_ntk
from ntkfeat.polynomials import fit_grid, fit_nonneg_polynomial, poly_eval, taylor_polynomial


@pytest.mark.parametrize("degree", [1, 2, 3, 5, 8, 13, 16])
@pytest.mark.parametrize("fn", [arccos_kernel0, arccos_kernel1])
def test_fit_is_nonnegative_and_monotone(fn, degree):
    c = fit_nonneg_polynomial(fn, degree, (-1.0, 1.0))
    assert c.shape == (degree + 1,)
    assert np.all(c >= 0)
    p = poly_eval(c, fit_grid((-1.0, 1.0)))
    assert np.all(np.diff(p) >= -1e-8)


@pytest.mark.parametrize("fn", [arccos_kernel0, arccos_kernel1])
def test_fit_error_falls_with_degree(fn):
    grid = np.linspace(0, 1, 501)
    errs = [np.abs(poly_eval(fit_nonneg_polynomial(fn, q, (0.0, 1.0)), grid) - fn(grid)).max() for q in (2, 4, 8, 16)]
    assert all(b < a for a, b in zip(errs, errs[1:]))


def test_fit_beats_taylor_at_same_degree():
    grid = np.linspace(-1, 1, 801)
    for q in (4, 8):
        fit = np.abs(poly_eval(fit_nonneg_polynomial(arccos_kernel1, q), grid) - arccos_kernel1(grid)).max()
        tay = np.abs(poly_eval(taylor_polynomial("arccos1", q), grid) - arccos_kernel1(grid)).max()
        assert fit < tay


def test_whole_ntk_fit_is_not_forced_monotone():
    # K_1 decreases near rho = -1; forcing monotonicity there costs accuracy, so the default
    # (monotone only when the target is) must fit it well.
    c = fit_nonneg_polynomial(lambda r: fc_ntk(r, 1), 8)
    grid = np.linspace(-1, 1, 801)
    assert np.abs(poly_eval(c, grid) - fc_ntk(grid, 1)).max() < 0.05


def test_fit_rejects_bad_arguments():
    with pytest.raises(ValueError):
        fit_nonneg_polynomial(arccos_kernel1, -1)
    with pytest.raises(ValueError):
        fit_nonneg_polynomial(arccos_kernel1, 3, (0.5, 0.2))
    with pytest.raises(ValueError):
        fit_nonneg_polynomial(lambda r: np.full_like(r, np.nan), 3)
    with pytest.raises(ValueError):
        taylor_polynomial("relu", 3)

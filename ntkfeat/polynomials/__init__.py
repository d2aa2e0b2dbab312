"""Polynomial approximations with non-negative coefficients."""

from ntkfeat.polynomials.fit import fit_grid, fit_nonneg_polynomial, poly_eval, taylor_polynomial

__all__ = ["fit_grid", "fit_nonneg_polynomial", "poly_eval", "taylor_polynomial"]

"""Elementwise activations, with neural-tangents 0.6.5's names, signatures and defaults.

An activation is data: its function sigma (for random features and finite networks) and its
dual kernel (`dual()`), from which every method builds its features:

- `HomogeneousDual`: positively homogeneous activations (ReLU and its relatives, Sign,
  monomials, Hermite, ExpNormalized). The dual is (q1 q2)^(k/2) f(rho), with f known in closed
  form (values and Taylor coefficients); the NTK's derivative kernel is (q1 q2)^((k-1)/2) f'(rho).
- `MehlerDual`: any other activation. Its Mehler coefficients a_l(q) come from Gauss-Hermite
  quadrature of sigma at each input's own variance q (`ntkfeat.exact.duals`).

A new activation is one dataclass here: its fields, `fn`, `stax` and (if it is homogeneous)
`dual`. The feature rules need nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _checks, _trig
from ntkfeat.compat import stax as _stax
from ntkfeat.exact import duals
from ntkfeat.layers.base import Layer, set_field


class HomogeneousDual(NamedTuple):
    """Dual of a positively homogeneous activation of degree k: (q1 q2)^(k/2) f(rho).

    f, f_prime: NumPy functions of rho (f_prime None: neural-tangents sets the derivative
    kernel to zero, as for the steps Sign and RectifiedMonomial(0)). taylor(n): the Taylor
    coefficients c_0..c_n of f (all >= 0). polynomial: the degree of f if it is a polynomial.
    coefficients(n), derivative_coefficients(n): the signed Mehler coefficients a_l(1) of sigma
    and sigma' (l <= n) when E[sigma(u) sigma(v)] of the layer's own `fn` is the dual (random
    features need them); None when it is not (Hermite assumes unit variances, ExpNormalized
    has no function).
    """

    degree: int
    f: Callable
    f_prime: Callable | None
    taylor: Callable
    polynomial: int | None = None
    coefficients: Callable | None = None
    derivative_coefficients: Callable | None = None


class MehlerDual(NamedTuple):
    """Dual of a general activation, from its Mehler coefficients at each input's variance.

    fn, fn_prime: JAX functions (sigma and sigma'). series_degree: the Mehler series is finite
    (a polynomial activation) and ends at this degree; None: infinite.
    """

    fn: Callable
    fn_prime: Callable
    series_degree: int | None = None


def _rectified(k: int, s_pos: float, s_neg: float, has_derivative: bool = True, polynomial: bool = False):
    """The dual of sigma(x) = s_pos x^k (x > 0), s_neg |x|^k (x < 0)."""
    s_pos, s_neg = float(s_pos), float(s_neg)
    return HomogeneousDual(
        degree=k,
        f=functools.partial(duals.homogeneous_dual, k, s_pos, s_neg),
        f_prime=functools.partial(duals.homogeneous_dual_derivative, k, s_pos, s_neg) if has_derivative else None,
        taylor=functools.partial(duals.homogeneous_mehler_squares, k, s_pos, s_neg),
        polynomial=k if polynomial else None,
        coefficients=functools.partial(duals.homogeneous_mehler_coefficients, k, s_pos, s_neg),
        derivative_coefficients=(
            functools.partial(duals.homogeneous_mehler_coefficients, k - 1, k * s_pos, -k * s_neg)
            if has_derivative else None),
    )


class Activation(Layer):
    """Base class of elementwise activations."""

    def fn(self, x):
        """sigma, elementwise (JAX)."""
        raise NotImplementedError(f"{type(self).__name__} has no finite-network function")

    def dual(self) -> HomogeneousDual | MehlerDual:
        return MehlerDual(self.fn, derivative(self.fn))


def derivative(fn: Callable) -> Callable:
    """sigma' of an elementwise JAX function (the gradient of the sum is sigma' per entry)."""
    return jax.grad(lambda x: jnp.sum(fn(x)))


# --------------------------------------------------------------------------- homogeneous


@dataclasses.dataclass(frozen=True)
class ABRelu(Activation):
    """a * min(x, 0) + b * max(x, 0). `do_stabilize` only matters to neural-tangents' numerics."""

    a: float
    b: float
    do_stabilize: bool = False

    def __post_init__(self):
        set_field(self, "a", _checks.number(f"{type(self).__name__}.a", self.a))
        set_field(self, "b", _checks.number(f"{type(self).__name__}.b", self.b))
        _checks.boolean(f"{type(self).__name__}.do_stabilize", self.do_stabilize)

    def fn(self, x):
        return self.a * jnp.minimum(x, 0) + self.b * jnp.maximum(x, 0)

    def dual(self):
        return _rectified(1, self.b, -self.a)

    def stax(self, readout: bool = False):
        return _stax().ABRelu(self.a, self.b, do_stabilize=self.do_stabilize)


@dataclasses.dataclass(frozen=True)
class Relu(Activation):
    """max(x, 0). Unnormalized as in neural-tangents: nngp' = sqrt(q1 q2) kappa1(rho) / 2,
    ntk' = ntk kappa0(rho) / 2 (kappa: arc-cosine kernels), so W_std = sqrt(2) preserves norms."""

    do_stabilize: bool = False

    def __post_init__(self):
        _checks.boolean("Relu.do_stabilize", self.do_stabilize)

    def fn(self, x):
        return jnp.maximum(x, 0)

    def dual(self):
        return _rectified(1, 1.0, 0.0)

    def stax(self, readout: bool = False):
        return _stax().Relu(do_stabilize=self.do_stabilize)


@dataclasses.dataclass(frozen=True)
class LeakyRelu(Activation):
    """alpha * min(x, 0) + max(x, 0)."""

    alpha: float
    do_stabilize: bool = False

    def __post_init__(self):
        set_field(self, "alpha", _checks.number("LeakyRelu.alpha", self.alpha))
        _checks.boolean("LeakyRelu.do_stabilize", self.do_stabilize)

    def fn(self, x):
        return self.alpha * jnp.minimum(x, 0) + jnp.maximum(x, 0)

    def dual(self):
        return _rectified(1, 1.0, -self.alpha)

    def stax(self, readout: bool = False):
        return _stax().LeakyRelu(self.alpha, do_stabilize=self.do_stabilize)


@dataclasses.dataclass(frozen=True)
class Abs(Activation):
    """|x|."""

    do_stabilize: bool = False

    def __post_init__(self):
        _checks.boolean("Abs.do_stabilize", self.do_stabilize)

    def fn(self, x):
        return jnp.abs(x)

    def dual(self):
        return _rectified(1, 1.0, 1.0)

    def stax(self, readout: bool = False):
        return _stax().Abs(do_stabilize=self.do_stabilize)


@dataclasses.dataclass(frozen=True)
class Sign(Activation):
    """sign(x). Its NTK contribution is zero (neural-tangents: sigma' = 0 almost everywhere)."""

    def fn(self, x):
        return jnp.sign(x)

    def dual(self):
        return _rectified(0, 1.0, -1.0, has_derivative=False)

    def stax(self, readout: bool = False):
        return _stax().Sign()


@dataclasses.dataclass(frozen=True)
class RectifiedMonomial(Activation):
    """(x >= 0) * x^degree."""

    degree: int

    def __post_init__(self):
        set_field(self, "degree", _checks.integer("RectifiedMonomial.degree", self.degree, 0))

    def fn(self, x):
        return jnp.where(x >= 0, x**self.degree, 0.0)

    def dual(self):
        return _rectified(self.degree, 1.0, 0.0, has_derivative=self.degree > 0)

    def stax(self, readout: bool = False):
        return _stax().RectifiedMonomial(self.degree)


@dataclasses.dataclass(frozen=True)
class Monomial(Activation):
    """x^degree, degree in 0..5 (as in neural-tangents)."""

    degree: int

    def __post_init__(self):
        set_field(self, "degree", _checks.integer("Monomial.degree", self.degree, 0))
        if self.degree > 5:
            raise ValueError(f"Monomial.degree must be between 0 and 5 (neural-tangents' limit), got {self.degree}")

    def fn(self, x):
        return x**self.degree

    def dual(self):
        return _rectified(self.degree, 1.0, (-1.0) ** self.degree, has_derivative=self.degree > 0, polynomial=True)

    def stax(self, readout: bool = False):
        return _stax().Monomial(self.degree)


@dataclasses.dataclass(frozen=True)
class Hermite(Activation):
    """He_degree(x) / sqrt(degree!), for unit-variance inputs. neural-tangents' kernel is
    nngp' = nngp^degree whatever the variances, i.e. f(rho) = rho^degree with homogeneity
    degree `degree`; the features follow that kernel."""

    degree: int

    def __post_init__(self):
        set_field(self, "degree", _checks.integer("Hermite.degree", self.degree, 0))

    def fn(self, x):
        coeffs = duals.hermite_polynomial(self.degree)
        return jnp.polyval(jnp.asarray(coeffs[::-1], dtype=jnp.result_type(x, float)), x) / math.sqrt(
            math.factorial(self.degree))

    def dual(self):
        n = self.degree

        def taylor(q):
            c = np.zeros(q + 1)
            if n <= q:
                c[n] = 1.0
            return c

        f_prime = (lambda rho: n * np.asarray(rho, np.float64) ** (n - 1)) if n > 0 else None
        return HomogeneousDual(n, lambda rho: np.asarray(rho, np.float64) ** n, f_prime, taylor, polynomial=n)

    def stax(self, readout: bool = False):
        return _stax().Hermite(self.degree)


@dataclasses.dataclass(frozen=True)
class ExpNormalized(Activation):
    """The normalized Gaussian kernel as an activation (no finite-network function):
    nngp' = sqrt(q1 q2) exp(gamma (rho + shift)), ntk' = gamma ntk exp(gamma (rho + shift)).
    `do_clip` only matters to neural-tangents' numerics."""

    gamma: float = 1.0
    shift: float = -1.0
    do_clip: bool = False

    def __post_init__(self):
        set_field(self, "gamma", _checks.number("ExpNormalized.gamma", self.gamma, 0.0))
        set_field(self, "shift", _checks.number("ExpNormalized.shift", self.shift))
        _checks.boolean("ExpNormalized.do_clip", self.do_clip)

    def dual(self):
        g, s = self.gamma, self.shift

        def taylor(q):
            return np.array([math.exp(g * s) * g**j / math.factorial(j) for j in range(q + 1)])

        return HomogeneousDual(
            1, lambda rho: np.exp(g * (np.asarray(rho, np.float64) + s)),
            lambda rho: g * np.exp(g * (np.asarray(rho, np.float64) + s)), taylor,
        )

    def stax(self, readout: bool = False):
        return _stax().ExpNormalized(self.gamma, self.shift, self.do_clip)


# --------------------------------------------------------------------------- general (Mehler)


@dataclasses.dataclass(frozen=True)
class Erf(Activation):
    """a * erf(b x) + c."""

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0

    def __post_init__(self):
        for name in ("a", "b", "c"):
            set_field(self, name, _checks.number(f"Erf.{name}", getattr(self, name)))

    def fn(self, x):
        return self.a * jax.scipy.special.erf(self.b * x) + self.c

    def stax(self, readout: bool = False):
        return _stax().Erf(self.a, self.b, self.c)


def Sigmoid_like() -> Erf:  # noqa: N802 (neural-tangents' name)
    """0.5 erf(x / 2.4020563531719796) + 0.5, a sigmoid-like function (neural-tangents' constant)."""
    return Erf(a=0.5, b=1 / 2.4020563531719796, c=0.5)


@dataclasses.dataclass(frozen=True)
class Gelu(Activation):
    """x Phi(x). `approximate` (tanh form) changes only a finite network, as in neural-tangents:
    the kernel is that of the exact Gelu."""

    approximate: bool = False

    def __post_init__(self):
        _checks.boolean("Gelu.approximate", self.approximate)

    def fn(self, x):
        return jax.nn.gelu(x, approximate=False)

    def stax(self, readout: bool = False):
        return _stax().Gelu(self.approximate)


@dataclasses.dataclass(frozen=True)
class Sin(Activation):
    """a * sin(b x + c)."""

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0

    def __post_init__(self):
        for name in ("a", "b", "c"):
            set_field(self, name, _checks.number(f"Sin.{name}", getattr(self, name)))

    def fn(self, x):
        return self.a * _trig.sin(self.b * x + self.c)

    def stax(self, readout: bool = False):
        return _stax().Sin(self.a, self.b, self.c)


def Cos(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Sin:  # noqa: N802
    """a * cos(b x + c) = a * sin(b x + c + pi / 2)."""
    return Sin(a=a, b=b, c=_checks.number("Cos.c", c) + math.pi / 2)


@dataclasses.dataclass(frozen=True)
class Exp(Activation):
    """a * exp(b x)."""

    a: float = 1.0
    b: float = 1.0

    def __post_init__(self):
        for name in ("a", "b"):
            set_field(self, name, _checks.number(f"Exp.{name}", getattr(self, name)))

    def fn(self, x):
        return self.a * jnp.exp(self.b * x)

    def stax(self, readout: bool = False):
        return _stax().Exp(self.a, self.b)


@dataclasses.dataclass(frozen=True)
class Gaussian(Activation):
    """a * exp(b x^2)."""

    a: float = 1.0
    b: float = -1.0

    def __post_init__(self):
        set_field(self, "a", _checks.number("Gaussian.a", self.a))
        set_field(self, "b", _checks.number("Gaussian.b", self.b))
        if self.b > 0:
            raise ValueError(f"Gaussian.b must be <= 0 (else the activation has no Gaussian second moment), got {self.b}")

    def fn(self, x):
        return self.a * jnp.exp(self.b * x * x)

    def stax(self, readout: bool = False):
        return _stax().Gaussian(self.a, self.b)


@dataclasses.dataclass(frozen=True)
class Rbf(Activation):
    """sqrt(2) sin(sqrt(2 gamma) x + pi / 4), whose NNGP is exp(-gamma |x - y|^2)."""

    gamma: float = 1.0

    def __post_init__(self):
        set_field(self, "gamma", _checks.number("Rbf.gamma", self.gamma, 0.0))

    def fn(self, x):
        return math.sqrt(2.0) * _trig.sin(math.sqrt(2.0 * self.gamma) * x + math.pi / 4)

    def stax(self, readout: bool = False):
        return _stax().Rbf(self.gamma)


@dataclasses.dataclass(frozen=True)
class Gabor(Activation):
    """exp(-x^2) sin(x)."""

    def fn(self, x):
        return jnp.exp(-x * x) * _trig.sin(x)

    def stax(self, readout: bool = False):
        return _stax().Gabor()


@dataclasses.dataclass(frozen=True)
class Polynomial(Activation):
    """coef[0] + coef[1] x + ... + coef[n] x^n."""

    coef: tuple

    def __post_init__(self):
        try:
            coef = tuple(_checks.number(f"Polynomial.coef[{i}]", c) for i, c in enumerate(self.coef))
        except TypeError:
            raise ValueError(f"Polynomial.coef must be a sequence of numbers, got {self.coef!r}") from None
        set_field(self, "coef", coef)

    def fn(self, x):
        return jnp.polyval(jnp.asarray(self.coef[::-1], dtype=jnp.result_type(x, float)), x) if self.coef else 0.0 * x

    def dual(self):
        return MehlerDual(self.fn, derivative(self.fn), max(len(self.coef) - 1, 0))

    def stax(self, readout: bool = False):
        return _stax().Polynomial(self.coef)


@dataclasses.dataclass(frozen=True)
class ElementwiseNumerical(Activation):
    """A user's own activation `fn` (a JAX function), with its derivative `df` (default: jax.grad).

    neural-tangents computes its kernel by 2-d Gauss-Hermite quadrature with `deg` points per
    axis (~25 suggested for smooth functions): the oracle itself is that accurate. The features
    use this library's 1-d quadrature of the Mehler coefficients (`deg` is not used by them).
    """

    fn: Callable = dataclasses.field()  # a field, not a default: Activation.fn is a method
    deg: int = dataclasses.field()
    df: Callable | None = None

    def __post_init__(self):
        if not callable(self.fn):
            raise ValueError(f"ElementwiseNumerical.fn must be a function, got {self.fn!r}")
        set_field(self, "deg", _checks.integer("ElementwiseNumerical.deg", self.deg, 1))
        if self.df is not None and not callable(self.df):
            raise ValueError(f"ElementwiseNumerical.df must be a function or None, got {self.df!r}")

    def dual(self):
        return MehlerDual(self.fn, self.df or derivative(self.fn))

    def stax(self, readout: bool = False):
        import warnings

        with warnings.catch_warnings():  # neural-tangents warns on every construction
            warnings.simplefilter("ignore")
            return _stax().ElementwiseNumerical(self.fn, self.deg, self.df)


@dataclasses.dataclass(frozen=True)
class Elementwise(Activation):
    """A user's own activation `fn` (a JAX function of an array, elementwise), with its dual
    kernel `nngp_fn` for the exact kernel (neural-tangents' `Elementwise`).

    The features come from `fn` alone, as for every general activation: its Mehler coefficients
    at each input's own variance (1-d Gauss-Hermite quadrature), the derivative by `jax.grad`.
    `Sketch` truncates the series at its `degree` (default 'auto': 8 per layer, and the one-shot
    series of fully-connected stacks 32, or 16 or 8 where that is cheaper to sketch), keeping the
    tail's mass on the diagonal; `RandomFeatures` evaluate fn(w.z) and fn'(w.z) themselves.

    The exact kernel is neural-tangents' `stax.Elementwise(fn, nngp_fn, d_nngp_fn)`:
    nngp_fn(cov12, var1, var2) = E[fn(u) fn(v)] over the centred Gaussian pair (u, v) with
    those variances and covariance, d_nngp_fn the same of fn' (default: d nngp_fn / d cov12 by
    autodiff). Features and kernel agree only where nngp_fn is fn's dual. Without nngp_fn the
    kernel_fn raises a NotImplementedError, as neural-tangents' does (the features still work;
    `ElementwiseNumerical(fn, deg)` computes the exact kernel by quadrature instead). fn=None (a
    kernel-only layer in neural-tangents) raises a ValueError: the features need fn.
    """

    fn: Callable | None = None  # a field: the instance's fn is the user's function, not Activation.fn
    nngp_fn: Callable | None = None
    d_nngp_fn: Callable | None = None

    def __post_init__(self):
        if self.fn is None:
            raise ValueError("Elementwise needs fn, the activation: ntkfeat builds its features from fn (a kernel-only "
                             "layer given by nngp_fn alone has no features; its exact kernel is "
                             "nf.stax.Elementwise(nngp_fn=...))")
        for name in ("fn", "nngp_fn", "d_nngp_fn"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ValueError(f"Elementwise.{name} must be a function{'' if name == 'fn' else ' or None'}, "
                                 f"got {value!r}")

    def dual(self):
        return MehlerDual(self.fn, derivative(self.fn))

    def stax(self, readout: bool = False):
        import warnings

        nngp_fn = self.nngp_fn if self.nngp_fn is not None else _missing_nngp_fn
        with warnings.catch_warnings():  # neural-tangents warns when d_nngp_fn comes from autodiff
            warnings.simplefilter("ignore")
            return _stax().Elementwise(self.fn, nngp_fn, self.d_nngp_fn)


def _missing_nngp_fn(cov12, var1, var2):
    # neural-tangents' Elementwise without nngp_fn raises a bare NotImplementedError in kernel_fn.
    raise NotImplementedError(
        "Elementwise(fn) without nngp_fn has no exact kernel (neural-tangents needs nngp_fn(cov12, var1, var2) = "
        "E[fn(u) fn(v)]): give nngp_fn, or use ElementwiseNumerical(fn, deg) for a kernel by quadrature; the "
        "features need fn only")


__all__ = [
    "ABRelu", "Abs", "Activation", "Cos", "Elementwise", "ElementwiseNumerical", "Erf", "Exp", "ExpNormalized", "Gabor",
    "Gaussian", "Gelu", "Hermite", "derivative", "HomogeneousDual", "LeakyRelu", "MehlerDual", "Monomial", "Polynomial",
    "Rbf", "RectifiedMonomial", "Relu", "Sigmoid_like", "Sign", "Sin",
]

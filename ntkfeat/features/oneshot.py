"""One-shot NTK Sketch of a fully-connected stack of Dense layers and homogeneous activations.

Without inner biases, the whole NTK of such a stack is (|z_x| |z_y|)^p T(rho) with
z = [W_0 x / sqrt(C), b_0], rho the correlation of z_x and z_y, p the product of the
activations' degrees (1 for ReLU and its relatives) and T an explicit function of rho (a scalar
run of the layer rules). One non-negative polynomial fit of T, one set of features of
u = z / |z|, times |z|^p: the sketch error no longer compounds through layers.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat._pytree import pytree_dataclass
from ntkfeat.features.activation import normalize
from ntkfeat.features.oneshot_general import GeneralOneShotParams, general_apply, general_init, general_reason
from ntkfeat.features.sketch import kappa_features
from ntkfeat.layers.activations import Activation, HomogeneousDual, Relu
from ntkfeat.layers.combinators import Serial
from ntkfeat.layers.linear import Dense, Flatten, Identity
from ntkfeat.polynomials.fit import fit_nonneg_polynomial
from ntkfeat.sketches.dot_product import (
    DotProductFeatureParams, dot_product_features_init, sketch_tree_cost, sketch_variance,
)


def flat_layers(layer) -> list:
    """The layers of nested serial blocks, in order."""
    if isinstance(layer, Serial):
        return [inner for child in layer.layers for inner in flat_layers(child)]
    return [layer]


def oneshot_reason(layers, input_shape) -> str | None:
    """Why no one-shot NTK Sketch can represent this stack, or None if one can (the homogeneous
    fit below, or the series of `oneshot_general` for general activations and inner biases)."""
    reason = homogeneous_reason(layers, input_shape)
    if reason is None or general_reason(layers, input_shape) is None:
        return None
    return reason


def homogeneous_reason(layers, input_shape) -> str | None:
    """Why the one-shot fit of a homogeneous stack cannot represent it, or None if it can."""
    if len(input_shape) != 1:
        return "the input is not flat (one-shot needs (n, d) inputs; use mode='layerwise')"
    for i, layer in enumerate(layers):
        if isinstance(layer, Activation):
            if not isinstance(layer.dual(), HomogeneousDual):
                return f"layer {i} is {type(layer).__name__}, which is not positively homogeneous"
        elif not isinstance(layer, (Dense, Flatten, Identity)):
            return f"layer {i} is {type(layer).__name__} (one-shot handles Dense, homogeneous activations and Flatten)"
    dense = [i for i, l in enumerate(layers) if isinstance(l, Dense)]
    if not dense or dense[0] != min(i for i, l in enumerate(layers) if not isinstance(l, (Flatten, Identity))):
        return "the stack does not start with a Dense layer"
    for i in dense:
        if layers[i].bias > 0 and i != dense[0] and i != len(layers) - 1:
            return (f"layer {i} is a Dense with a bias between activations, so the NTK is not a function of the "
                    "input correlation alone (one-shot allows biases only in the first and last layers)")
    return None


def oneshot_kernel_fn(layers):
    """NTK(x, y) = (|z_x| |z_y|)^p T(rho_z) + b_last^2 (see module docstring).

    Returns:
      (w0, b0, T, p, b_last): input scaling z = [w0 x / sqrt(C), b0]; T a vectorized NumPy
      function; p the power of the norms; b_last the readout bias (a constant feature).
    """
    layers = [l for l in layers if not isinstance(l, (Flatten, Identity))]
    w0, b0 = layers[0].W_std, layers[0].bias
    rest = list(layers[1:])
    b_last = rest[-1].bias if rest and isinstance(rest[-1], Dense) else 0.0
    power = 1
    for layer in rest:
        if isinstance(layer, Activation):
            power *= layer.dual().degree

    def theta(rho):
        rho = np.clip(np.asarray(rho, dtype=np.float64), -1.0, 1.0)
        s, g, t = 1.0, rho, rho  # NNGP = s (|z_x||z_y|)^p g(rho), g(1) = 1; NTK = (..)^p t(rho)
        for layer in rest:
            if isinstance(layer, Activation):
                dual = layer.dual()
                k, top = dual.degree, float(dual.f(1.0))
                t = 0.0 * t if dual.f_prime is None else t * s ** (k - 1) * dual.f_prime(g)
                s, g = s**k * top, dual.f(g) / top
            else:
                s = layer.W_std**2 * s
                t = layer.W_std**2 * t + s * g
        return t

    return w0, b0, theta, power, b_last


@pytree_dataclass(meta=("w0", "b0", "b_last", "power", "in_dim", "renormalize"))
class OneShotParams:
    features: DotProductFeatureParams
    coeffs: jax.Array  # the fitted polynomial of T, for diagnostics
    w0: float
    b0: float
    b_last: float
    power: int
    in_dim: int
    renormalize: bool = False

    @property
    def out_dim(self) -> int:
        return self.features.out_dim + (1 if self.b_last > 0 else 0)

    @property
    def homogeneous_power(self) -> float | None:
        """phi(c x) = c^p phi(x) for c > 0 without biases, else None."""
        return float(self.power) if self.b0 == 0 and self.b_last == 0 else None


def oneshot_init(layers, key, input_shape, method, dtype, x=None) -> OneShotParams | GeneralOneShotParams:
    reason = homogeneous_reason(layers, input_shape)
    if reason is not None:
        if general_reason(layers, input_shape) is None:
            return general_init(layers, key, input_shape, method, dtype, x=x)
        raise ValueError(f"Sketch(mode='oneshot') does not apply: {reason}")
    if method.fit != "lstsq":
        raise ValueError("Sketch(mode='oneshot') fits the whole NTK and supports fit='lstsq' only")
    (d,) = input_shape
    w0, b0, theta, power, b_last = oneshot_kernel_fn(layers)
    z_dim = d + (1 if b0 > 0 else 0)
    budget = method.dim - (1 if b_last > 0 else 0)
    if method.degree == "auto":
        depth = sum(isinstance(l, Activation) for l in layers)
        coeffs = choose_polynomial(theta, z_dim, budget, COST_FACTOR * reference_cost(depth, z_dim, budget))
    else:
        coeffs = fit_nonneg_polynomial(theta, method.degree, (-1.0, 1.0))
    feats = dot_product_features_init(key, z_dim, coeffs, budget, dtype)
    return OneShotParams(feats, jnp.asarray(coeffs, dtype), float(w0), float(b0), float(b_last), int(power), d,
                         bool(method.renormalize))


# Degrees 'auto' chooses from: powers of two, whose PolySketch trees are complete. Interleaved
# timing on 8,000 protein rows, dim 8192, 2 CPU cores (NOTES.md): degree 16 ran at 0.56x degree
# 8's rows/s, 24 at 0.44x (its half-empty top level), 32 at 1.22x (its few sketched rows are
# narrow; the low degrees are exact monomials). Beyond 32 the fits gain little.
AUTO_DEGREES = (4, 8, 16, 32)
# Calibration of the error estimate (NOTES.md, "Degree by estimated error"): on 500 protein and
# kin8nm rows (depth 2, dims 1024-16384, degrees 4-32) the measured error of exact-monomial maps
# was 2.5-2.8x the RMS fit error over a uniform grid (data put their pairs where the fit is worst,
# near correlation 1) and the sketch variance 1-1.7x the plan's bound.
BIAS_FACTOR = 2.8
VARIANCE_FACTOR = 1.5


# What 'auto' may spend: the PolySketch tree of the chosen fit costs at most COST_FACTOR times the
# tree of the ReLU network of the same depth on the same inputs and dim (`reference_cost`), the
# map the library is tuned on; feature time per row follows the tree's cost. Abs (500 protein
# rows, depth 2, dim 8192, 3 keys, NOTES.md): its even fits put their tails on one wide block,
# degree 32 at 2.1x ReLU's tree (1.7x its time per row, error 0.0065), 16 at 1.5x (1.5x,
# 0.0105), 8 at 0.64x (0.76x, 0.0184): 'auto' takes 8. On 240 cases (depth 1-4, W_std 1 to 2,
# 8-100 inputs, dims 1024-16384) Relu, LeakyRelu, ABRelu(0.2, 1), RectifiedMonomial and
# ExpNormalized keep every choice the bound-free rule made; ABRelu(-0.5, 1) steps down in 72.
COST_FACTOR = 1.25


@functools.lru_cache(maxsize=64)
def reference_cost(depth: int, in_dim: int, dim: int) -> int:
    """Tree cost (`sketch_tree_cost`) of the degree-'auto' map of [Dense(sqrt 2), Relu] x depth,
    Dense: the reference of COST_FACTOR."""
    layers = [Dense(W_std=math.sqrt(2.0)), Relu()] * depth + [Dense(W_std=1.0)]
    coeffs = choose_polynomial(oneshot_kernel_fn(layers)[2], in_dim, dim)
    return sketch_tree_cost(in_dim, coeffs, dim)


def choose_polynomial(theta, in_dim: int, dim: int, max_cost: float | None = None) -> np.ndarray:
    """The fit of T whose estimated relative error, (c_b bias)^2 + c_v variance, is smallest
    among those whose sketch tree costs at most `max_cost` (the cheapest fit if none does).

    bias: the RMS of |p - T| / T(1) over [-1, 1]; variance: the sketch plan's bound on the
    summed variance of one entry over p(1)^2 (`sketch_variance`; zero when every degree is exact).
    Both are per entry and relative, like the relative Frobenius error they add up to; c_b and c_v
    are measured (above). High degrees win where dim affords them: their smaller bias near
    correlation 1 is what near-interpolating kernel ridge feels.
    """
    grid = np.linspace(-1.0, 1.0, 801)
    target = theta(grid)
    best, cheapest = None, None
    for degree in AUTO_DEGREES:
        coeffs = fit_nonneg_polynomial(theta, degree, (-1.0, 1.0))
        bias = float(np.sqrt(np.mean((np.polyval(coeffs[::-1], grid) - target) ** 2)) / target[-1])
        try:
            variance = sketch_variance(in_dim, coeffs, dim) / float(np.sum(coeffs)) ** 2
            cost = sketch_tree_cost(in_dim, coeffs, dim) if max_cost is not None else 0
        except ValueError:  # the dimension cannot hold this degree
            break
        if cheapest is None or cost < cheapest[0]:
            cheapest = (cost, coeffs)
        if max_cost is not None and cost > max_cost:
            continue
        error = (BIAS_FACTOR * bias) ** 2 + VARIANCE_FACTOR * variance
        if best is None or error < best[0]:
            best = (error, coeffs)
    if cheapest is None:
        raise ValueError(f"dim={dim} is too small for a polynomial of degree {AUTO_DEGREES[0]} on {in_dim} inputs")
    return best[1] if best is not None else cheapest[1]


def oneshot_apply(params: OneShotParams | GeneralOneShotParams, x: jax.Array) -> jax.Array:
    if isinstance(params, GeneralOneShotParams):
        return general_apply(params, x)
    z = params.w0 * x / math.sqrt(params.in_dim)
    if params.b0 > 0:
        z = jnp.concatenate([z, jnp.full(z.shape[:-1] + (1,), params.b0, z.dtype)], axis=-1)
    u, norm, _ = normalize(z, None)
    amplitude = norm if params.power == 1 else norm**params.power
    out = amplitude[..., None] * kappa_features(params.features, u, params.renormalize)[0]
    if params.b_last > 0:
        out = jnp.concatenate([out, jnp.full(out.shape[:-1] + (1,), params.b_last, out.dtype)], -1)
    return out


__all__ = ["GeneralOneShotParams", "OneShotParams", "flat_layers", "homogeneous_reason", "oneshot_apply", "oneshot_init", "oneshot_kernel_fn", "oneshot_reason"]

"""One-shot NTK Sketch of a fully-connected stack whose activations are general (Mehler).

With z = [W_0 x / sqrt(C), b_0] the first layer's pre-activation, s = |z|^2 its variance and
u = z / |z|, the NTK of a stack of Dense layers (any biases) and activations is a function of
(s_x, s_y, rho = <u_x, u_y>): a power series sum_m C_m(s_x, s_y) rho^m whose coefficients
depend on the two inputs' variances, because a general activation's dual does (Mehler's formula
with a_l(q) at each variance). Each C_m, as a function of the pair of variances, is a positive
semi-definite kernel. So:

1. On a grid of variances (uniform in tau = |z| / (|z| + t0), t0 the typical |z|, from 0 to
   64x the typical variance), the layer rules run on the series themselves, evaluated at N
   points of the complex unit circle (composition is pointwise there; an FFT gives the
   coefficients): C_m on grid x grid for m < N / 2, and the exact diagonal of every grid point.
2. Degrees m <= p: C_m ~ G_m G_m^T, its leading eigenvectors (rank <= 4, eigenvalues below
   1e-3 of the top dropped), interpolated linearly in tau between grid points (still a Gram
   matrix, so still positive semi-definite). Degrees beyond p: the diagonal's tail mass per
   parity on two degrees, as the layerwise Mehler sketch puts it (`coefficients_with_tail`).
3. Features: one sketch of u (exact monomials for the low degrees, a PolySketch tree for the
   rest, `dot_product_features`), each degree block multiplied per input by its factors at s:
   exact blocks once per rank (the copies' inner products add up the ranks exactly), sketched
   blocks by g_0(s) + sum_r eps_r g_r(s) with fixed random signs eps per coordinate (unbiased:
   the cross terms average out over the block's coordinates).

The composition is done once per architecture and degree on the host (float64 NumPy, about a
second) and cached. Inputs whose variance lies beyond the grid take the factors of its last point
(their kernel is then approximate); `describe` reports how many rows of x do.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.exact import duals
from ntkfeat.features.activation import normalize
from ntkfeat.features.sketch import coefficients_with_tail, kappa_features, tail_degrees
from ntkfeat.layers.activations import Activation, MehlerDual
from ntkfeat.layers.linear import Dense, Flatten, Identity
from ntkfeat.sketches.dot_product import (
    DotProductFeatureParams, _exact_cost, dot_product_features_init, sketch_tree_cost,
)

# Grid of first-layer variances: tau = |z| / (|z| + t0) uniform on [0, GRID_TOP]; 8 / 9 reaches
# |z| = 8 t0, 64x the typical variance.
GRID_POINTS = 64
GRID_TOP = 8.0 / 9.0
# Points on the unit circle at which series are composed; coefficients are resolved to half.
SERIES_POINTS = 128
# Degree at which each activation's Mehler series is cut inside the composition (the diagonal,
# computed from second moments, stays exact; what the cut drops is tail mass).
MEHLER_DEGREE = 64
# Rank of each degree's coefficient kernel, and the relative eigenvalue below which one is dropped.
MAX_RANK = 4
RANK_TOL = 1e-3
# Degrees 'auto' tries, highest first: it takes the first whose sketch tree costs at most
# TREE_COST x dim in summed TensorSRHT widths (a degree-32 ReLU map: 4.1 at dim 8192), else the
# cheapest. Higher degrees leave less to the tail lumps (lower error, NOTES.md); an activation
# with much mass at high degrees (Gaussian) spreads the dimension over many deep nodes there.
AUTO_DEGREES = (32, 16, 8)
TREE_COST = 5.0
# Largest share of the dimension of a tail degree, relative to the largest kept degree's. The
# tail lumps sit at the deepest degrees, so their widths set the widest nodes of the tree.
# Gaussian (500 protein rows, depth 2, dim 8192, 3 keys; NOTES.md): cap 0.25 left degree 16 at
# error 0.0163 and 1.5-1.6x Relu's cost; 0.04 lets degree 32 in at error 0.0152 and 0.9x. Erf,
# Gelu and Sigmoid_like are unchanged (their tails are below the cap), Sin 0.0184 -> 0.0192.
TAIL_CAP = 0.04
# Variances (factors of the typical one) whose degree shares split the dimension.
_TYPICAL_SPREAD = (0.25, 4.0)


class OneShotUnavailable(ValueError):
    """The series cannot be composed for this stack (it overflows on the variance grid)."""


def general_reason(layers, input_shape) -> str | None:
    """Why this one-shot map cannot represent the stack, or None if it can."""
    if len(input_shape) != 1:
        return "the input is not flat (one-shot needs (n, d) inputs; use mode='layerwise')"
    core = [l for l in layers if not isinstance(l, (Flatten, Identity))]
    if not core or not isinstance(core[0], Dense):
        return "the stack does not start with a Dense layer"
    for i, layer in enumerate(layers):
        if isinstance(layer, Activation):
            if not isinstance(layer.dual(), MehlerDual):
                return (f"layer {i} is {type(layer).__name__}, a homogeneous activation in a stack with inner biases or "
                        "general activations")
        elif not isinstance(layer, (Dense, Flatten, Identity)):
            return f"layer {i} is {type(layer).__name__} (one-shot handles Dense, activations and Flatten)"
    return None


def typical_root(layers) -> float:
    """t0: the first layer's typical |z| for standardized inputs (|x|^2 / C = 1)."""
    first = next(l for l in layers if isinstance(l, Dense))
    return math.sqrt(first.W_std**2 + first.bias**2) or 1.0


def grid_variances(t0: float) -> tuple[np.ndarray, np.ndarray]:
    """(tau, s): the grid and its first-layer variances."""
    tau = np.linspace(0.0, GRID_TOP, GRID_POINTS)
    root = np.maximum(t0 * tau / (1.0 - tau), 1e-6 * t0)  # tau = 0: a tiny variance stands for zero
    return tau, root * root


def _mehler_sum(a, c):
    """sum_l a_l(q_i) a_l(q_j) c^l by Horner, a (G, L + 1), c (G, G, N) complex."""
    out = np.zeros_like(c)
    for l in range(a.shape[1] - 1, -1, -1):
        out = out * c + (a[:, None, l] * a[None, :, l])[..., None]
    return out


def compose_series(layers, s, points: int = SERIES_POINTS, mehler_degree: int = MEHLER_DEGREE):
    """The NTK's series in rho on every pair of first-layer variances s (G,).

    Returns:
      (C, diag): C (G, G, points) real coefficients (the first points // 2 are resolved),
      diag (G,) the exact NTK at x = y.
    """
    rho = np.exp(2j * np.pi * np.arange(points) / points)
    core = [l for l in layers if not isinstance(l, (Flatten, Identity))]
    k = np.sqrt(np.outer(s, s))[..., None] * rho  # after the first Dense
    ntk, q, t = k.copy(), s.copy(), s.copy()
    for layer in core[1:]:
        if isinstance(layer, Dense):
            w2, b2 = layer.W_std**2, layer.bias**2
            k = w2 * k + b2
            ntk = w2 * ntk + k
            q = w2 * q + b2
            t = w2 * t + q
            continue
        dual = layer.dual()
        a, (second, _, _) = duals.host_mehler_coefficients(dual.fn, q, mehler_degree)
        b, (second_prime, _, _) = duals.host_mehler_coefficients(dual.fn_prime, q, mehler_degree)
        root = np.sqrt(np.maximum(q, 1e-300))
        c = k / np.outer(root, root)[..., None]
        k, ntk = _mehler_sum(a, c), ntk * _mehler_sum(b, c)
        q, t = second, t * second_prime
    return np.fft.fft(ntk, axis=-1).real / points, t


class GeneralPlan:
    """The composed series of one architecture at one degree (host NumPy, see module docstring).

    factors: {degree: (G, rank) values of g_{m, r} on the grid}; weights: (size,) each degree's
    largest share of the diagonal over typical variances (what splits the dimension);
    kept: (G,) share of the diagonal the degrees up to p carry.
    """

    def __init__(self, layers: tuple, degree: int):
        self.degree = degree
        self.t0 = typical_root(layers)
        self.tau, s = grid_variances(self.t0)
        with np.errstate(all="ignore"):
            coeffs, diag = compose_series(layers, s)
        if not (np.all(np.isfinite(coeffs)) and np.all(np.isfinite(diag))):
            raise OneShotUnavailable("Sketch(mode='oneshot') does not apply: the NTK overflows on the grid of input "
                                     "variances (an activation grows too fast, e.g. Exp); use mode='layerwise'")
        top = SERIES_POINTS // 2
        masses = np.maximum(np.einsum("iim->im", coeffs[:, :, : top + 1]), 0.0)
        l = np.arange(top + 1)
        rest = np.maximum(diag - masses.sum(1), 0.0)  # beyond the resolved degrees
        tail_even = masses[:, (l > degree) & (l % 2 == 0)].sum(1)
        tail_odd = masses[:, (l > degree) & (l % 2 == 1)].sum(1)
        tail = tail_even + tail_odd
        even_share = np.where(tail > 0, tail_even / np.where(tail > 0, tail, 1.0), 0.5)
        even = masses[:, l % 2 == 0].sum(1) + rest * even_share
        odd = masses[:, l % 2 == 1].sum(1) + rest * (1.0 - even_share)
        size = max(max(d) for d in tail_degrees(degree)) + 1
        # Ranks in relative terms: C_m(s, s') / sqrt(diag(s) diag(s')), so that small variances
        # are represented as well as large ones (the NTK grows with the variance).
        scale = np.sqrt(np.where(diag > 0, diag, 1.0))
        self.factors = {}
        roots = np.sqrt(masses)
        for m in range(degree + 1):
            values, vectors = np.linalg.eigh(coeffs[:, :, m] / np.outer(scale, scale))
            values, vectors = values[::-1][:MAX_RANK], vectors[:, ::-1][:, :MAX_RANK]
            keep = values > RANK_TOL * max(values[0], 0.0)
            if values[0] > 0 and np.any(keep):
                self.factors[m] = scale[:, None] * vectors[:, keep] * np.sqrt(values[keep])
                roots[:, m] = np.sqrt(np.sum(self.factors[m] ** 2, axis=1))  # what the ranks keep
            else:
                roots[:, m] = 0.0
        # The tail (and what the dropped ranks miss) goes on the diagonal: exact on the grid.
        lumped = coefficients_with_tail(roots, (diag, even, odd), degree, True, size)
        for m in range(degree + 1, size):
            if np.any(lumped[:, m] > 0):
                self.factors[m] = lumped[:, m : m + 1]
        safe = np.where(diag > 0, diag, 1.0)
        central = (s >= _TYPICAL_SPREAD[0] * self.t0**2) & (s <= _TYPICAL_SPREAD[1] * self.t0**2)
        self.central = central  # grid points at typical variances
        self.weights = np.zeros(size)
        for m, g in self.factors.items():
            self.weights[m] = float(np.max(np.sum(g[central] ** 2, axis=1) / safe[central]))
        if not np.any(self.weights > 0):
            raise OneShotUnavailable("Sketch(mode='oneshot') does not apply: the NTK is zero (a W_std of 0); use "
                                     "mode='layerwise'")
        self.weights[self.weights < 1e-12 * self.weights.max()] = 0.0
        # The tail's degrees feed the deepest, widest nodes of the sketch tree: no wider than
        # the widest kept degree (their share is high only at the largest variances).
        self.weights[degree + 1 :] = np.minimum(self.weights[degree + 1 :], TAIL_CAP * self.weights[: degree + 1].max())
        self.factors = {m: g for m, g in self.factors.items() if self.weights[m] > 0}
        kept = sum(np.sum(g**2, axis=1) for m, g in self.factors.items() if m <= degree)
        self.kept = np.where(diag > 0, kept / safe, 1.0)


@functools.lru_cache(maxsize=32)
def _cached_plan(layers: tuple, degree: int) -> GeneralPlan:
    return GeneralPlan(layers, degree)


def general_plan(layers: tuple, degree: int) -> GeneralPlan:
    """The plan of a stack at a degree, cached when its layers are hashable (they are unless a
    user's activation holds an unhashable field)."""
    try:
        hash(layers)
    except TypeError:
        return GeneralPlan(layers, degree)
    return _cached_plan(layers, degree)


@pytree_dataclass(meta=("w0", "b0", "in_dim", "t0", "degree", "columns", "renormalize"))
class GeneralOneShotParams:
    features: DotProductFeatureParams
    table: jax.Array  # (GRID_POINTS, K): g_{m, r} / sqrt(weight_m) on the grid, column per (m, r)
    # (K, out_dim): output column c is sum_k g_k(|z|) mixer[k, c] times its feature column: 1 on
    # the rank's column for exact copies; rank 0's column and fixed random signs on the others for
    # sketched blocks. One small matmul and one fused product per row, however many blocks.
    mixer: jax.Array
    w0: float
    b0: float
    in_dim: int
    t0: float
    degree: int  # the series' degree p (the tail lies on degrees beyond it)
    columns: tuple  # per degree present: (degree, (column of rank 0, column of rank 1, ...))
    renormalize: bool = True

    @property
    def out_dim(self) -> int:
        ranks = dict(self.columns)
        exact = sum(_exact_cost(self.features.in_dim, j) * len(ranks[j]) for j in self.features.head_exact[0])
        return exact + sum(m for _, _, m in self.features.head_slices[0])

    homogeneous_power = None  # biases and general activations: not homogeneous


def general_init(layers, key, input_shape, method, dtype) -> GeneralOneShotParams:
    reason = general_reason(layers, input_shape)
    if reason is not None:
        raise ValueError(f"Sketch(mode='oneshot') does not apply: {reason}")
    (d,) = input_shape
    first = next(l for l in layers if isinstance(l, Dense))
    z_dim = d + (1 if first.bias > 0 else 0)
    degrees = AUTO_DEGREES if method.degree == "auto" else (method.degree,)
    costs = {}
    for degree in degrees:
        plan = general_plan(tuple(layers), int(degree))
        copies = {m: g.shape[1] for m, g in plan.factors.items()}
        try:
            costs[degree] = sketch_tree_cost(z_dim, plan.weights, method.dim, copies)
        except ValueError as e:  # the dimension cannot hold this degree
            if "too small" not in str(e):
                raise
            error = e
            continue
        if len(degrees) == 1 or costs[degree] <= TREE_COST * method.dim:
            return _draw(plan, key, z_dim, first, method, dtype)
    if not costs:
        raise ValueError(f"Sketch(dim={method.dim}) is too small for the one-shot map of this stack at degree "
                         f"{degrees[-1]} ({error}); raise dim or lower degree")
    cheapest = min(costs, key=costs.get)
    return _draw(general_plan(tuple(layers), int(cheapest)), key, z_dim, first, method, dtype)


def _draw(plan: GeneralPlan, key, z_dim: int, first: Dense, method, dtype) -> GeneralOneShotParams:
    k_features, k_signs = _random.split(key, 2)
    copies = {m: g.shape[1] for m, g in plan.factors.items()}
    features = dot_product_features_init(k_features, z_dim, plan.weights, method.dim, dtype, exact_copies=copies)
    columns, table = [], []
    for m in sorted(plan.factors):
        g = plan.factors[m] / math.sqrt(plan.weights[m])
        columns.append((m, tuple(range(len(table), len(table) + g.shape[1]))))
        table.extend(g.T)
    ranks, k = dict(columns), len(table)
    blocks = []  # (K, width) per output block, in output order
    for j in features.head_exact[0]:
        for c in ranks[j]:
            blocks.append(np.zeros((k, _exact_cost(z_dim, j))))
            blocks[-1][c] = 1.0
    slice_keys = _random.split(k_signs, max(len(features.head_slices[0]), 1))
    for (j, _, m), key_j in zip(features.head_slices[0], slice_keys):
        cols = ranks[j]
        block = np.zeros((k, m))
        block[cols[0]] = 1.0
        if len(cols) > 1:  # fixed random signs mix the ranks into one block (traceable in the key)
            signs = _random.rademacher(key_j, (len(cols) - 1, m))
            block = jnp.asarray(block, dtype).at[np.asarray(cols[1:])].set(jnp.asarray(signs, dtype))
        blocks.append(block)
    mixer = jnp.concatenate([jnp.asarray(b, dtype) for b in blocks], axis=1)
    return GeneralOneShotParams(features, jnp.asarray(np.stack(table, axis=1), dtype), mixer,
                                float(first.W_std), float(first.bias), z_dim - (1 if first.bias > 0 else 0),
                                float(plan.t0), plan.degree, tuple(columns), bool(method.renormalize))


def _grid_factors(params: GeneralOneShotParams, root: jax.Array) -> jax.Array:
    """(..., K) the table interpolated linearly in tau at |z| = root."""
    tau = root / (root + params.t0)
    pos = tau * ((GRID_POINTS - 1) / GRID_TOP)
    i = jnp.clip(jnp.floor(pos), 0, GRID_POINTS - 2).astype(jnp.int32)
    frac = jnp.clip(pos - i, 0.0, 1.0)[..., None]
    return params.table[i] * (1 - frac) + params.table[i + 1] * frac


def general_apply(params: GeneralOneShotParams, x: jax.Array) -> jax.Array:
    z = params.w0 * x / math.sqrt(params.in_dim)
    if params.b0 > 0:
        z = jnp.concatenate([z, jnp.full(z.shape[:-1] + (1,), params.b0, z.dtype)], axis=-1)
    u, root, _ = normalize(z, None)
    g = _grid_factors(params, root).astype(x.dtype)
    feats = kappa_features(params.features, u, params.renormalize)[0]
    factors = jnp.dot(g, params.mixer.astype(x.dtype), precision=jax.lax.Precision.HIGHEST)  # no TF32 on GPUs
    return jnp.concatenate([feats[..., i:j] for i, j in _source_slices(params)], axis=-1) * factors


def _source_slices(params: GeneralOneShotParams) -> list[tuple[int, int]]:
    """The feature columns the output copies, as (start, stop) slices: an exact block once per
    rank, then the sketched blocks (static slices: XLA fuses them with the product; a gather
    with an index array ran 1.3x slower on CPU)."""
    ranks = dict(params.columns)
    slices, start = [], 0
    for j in params.features.head_exact[0]:
        width = _exact_cost(params.features.in_dim, j)
        slices += [(start, start + width)] * len(ranks[j])
        start += width
    return slices + [(start, start + sum(m for _, _, m in params.features.head_slices[0]))]


def general_report(params: GeneralOneShotParams, layers, x=None) -> dict:
    """What the one-shot series keeps: its degree, the rank of each degree's coefficients, the
    share of the NTK's diagonal the degrees up to it carry (min and mean over the rows of x, or
    over the grid's typical variances without x), and the rows of x beyond the variance grid."""
    plan = general_plan(tuple(layers), params.degree)
    top = float((params.t0 * GRID_TOP / (1 - GRID_TOP)) ** 2)
    out = {"layer": "network", "kind": "one-shot Mehler series of the NTK", "degree": params.degree,
           "ranks": {j: len(c) for j, c in params.columns if j <= params.degree}, "variance_range": (0.0, top)}
    if x is None:
        kept = plan.kept[plan.central]
    else:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        s = params.w0**2 * np.sum(x * x, axis=1) / params.in_dim + params.b0**2
        root = np.sqrt(s)
        kept = np.interp(root / (root + params.t0), plan.tau, plan.kept)
        out["rows_beyond_grid"] = int(np.sum(s > top))
    out["ntk_kept_min"], out["ntk_kept_mean"] = float(np.min(kept)), float(np.mean(kept))
    return out


__all__ = ["GeneralOneShotParams", "OneShotUnavailable", "general_apply", "general_init", "general_plan", "general_reason", "general_report"]

"""One-shot NTK Sketch of a fully-connected stack whose activations are general (Mehler).

With z = [W_0 x / sqrt(C), b_0] the first layer's pre-activation, s = |z|^2 its variance and
u = z / |z|, the NTK of a stack of Dense layers (any biases) and activations is a function of
(s_x, s_y, rho = <u_x, u_y>): a power series sum_m C_m(s_x, s_y) rho^m whose coefficients
depend on the two inputs' variances, because a general activation's dual does (Mehler's formula
with a_l(q) at each variance). Each C_m, as a function of the pair of variances, is a positive
semi-definite kernel. So:

1. On a grid of variances (uniform in log s; from 1e-3 (or b0^2) to 64x the typical variance,
   widened to the rows of x when init is given them), the layer rules run on the series
   themselves (Mehler coefficients by a trapezoid quadrature that resolves sigma(sqrt(q) g) at
   any q, see `host_mehler`), evaluated at N
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

The composition is done once per architecture and variance range on the host (float64 NumPy, a
few seconds) and cached. Factors are stored relative to the root diagonal, itself interpolated
in log-log: inputs below the grid (a bias-free stack's tiny inputs, where it is linear) are
exact; inputs above it keep the relative factors of its last point (approximate; `describe`
reports how many rows of x do). Where the series' own error on the planned variances exceeds
WARN_BIAS (degrees spread far beyond p at large variances: sin, erf', the Gaussian), init warns
with a `SketchAccuracyWarning`.
"""

from __future__ import annotations

import functools
import math
import warnings

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
    DotProductFeatureParams, _exact_cost, dot_product_features_init, sketch_tree_cost, sketch_variance,
)

# Grid of first-layer variances, uniform in log s. Without data it spans [GRID_LOW, GRID_HIGH]
# times the typical variance t0^2 (a biased first layer starts at b0^2, the least variance an
# input can have); with data (`init_fn(..., x=x)`) it also covers the rows' variances. Factors
# are stored relative to the root diagonal, which is interpolated in log-log: below the grid a
# bias-free stack is in its linear regime (relative factors constant, diagonal a power of s), so
# the ends extend exactly to tiny inputs. GRID_DENSITY points per decade, GRID_POINTS at least.
GRID_POINTS = 64
GRID_DENSITY = 12
GRID_MAX_POINTS = 128
GRID_LOW, GRID_HIGH = 1e-3, 64.0
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


def variance_range(layers, s_data=None) -> tuple[float, float]:
    """(lo, hi): the first-layer variances the plan's grid covers (see GRID_LOW)."""
    t0 = typical_root(layers)
    b0 = next(l for l in layers if isinstance(l, Dense)).bias
    lo, hi = (b0**2 if b0 > 0 else GRID_LOW * t0**2), GRID_HIGH * t0**2
    if s_data is not None and len(s_data):
        positive = s_data[s_data > 0]
        if len(positive):
            lo, hi = min(lo, float(positive.min())), max(hi, float(s_data.max()))
    return _round_range(lo, hi)  # powers of 2: nearby data share one cached plan


def grid_variances(lo: float, hi: float) -> np.ndarray:
    """First-layer variances of the grid: log-uniform on [lo, hi]."""
    points = int(np.clip(math.ceil(GRID_DENSITY * math.log10(hi / lo)) + 1, GRID_POINTS, GRID_MAX_POINTS))
    return np.geomspace(lo, hi, points)


# Host quadrature of the Mehler coefficients: the trapezoid rule on [-QUAD_HALF_WIDTH,
# QUAD_HALF_WIDTH] in g, spectrally accurate for smooth integrands once the step resolves the
# fastest oscillation. sigma(sqrt(q) g) varies on a scale 1 / sqrt(q) in g, so Gauss-Hermite's
# fixed 96 nodes fail beyond q ~ 10: E[sin(sqrt(q) g)^2] came out 0.966 instead of 0.5 at q = 100,
# and E[erf'(sqrt(q) g)^2] 0.0019 instead of 0.0636. The step is halved until the second moment
# agrees with the previous step's to QUAD_RTOL, at most QUAD_MAX_NODES nodes; variances where it
# never agrees are reported untrusted (the plan then warns).
QUAD_HALF_WIDTH = 12.0
QUAD_RTOL = 1e-7
QUAD_MAX_NODES = 1 << 17


@functools.lru_cache(maxsize=16)
def _hermite_table(intervals: int, degree: int) -> np.ndarray:
    """(intervals + 1, degree + 1): He_l(g) / sqrt(l!) on the trapezoid nodes g (read-only; cached,
    since a handful of node counts serve every plan)."""
    g = np.linspace(-QUAD_HALF_WIDTH, QUAD_HALF_WIDTH, intervals + 1)
    out = np.empty((len(g), degree + 1))
    h_prev, h = np.zeros_like(g), np.ones_like(g)
    for l in range(degree + 1):
        out[:, l] = h
        h_prev, h = h, (g * h - math.sqrt(l) * h_prev) / math.sqrt(l + 1)
    out.flags.writeable = False
    return out


def _evaluate(fn, points: np.ndarray) -> np.ndarray:
    """fn at float64 points (any shape), jitted on the flattened points padded to a power of two
    (a few shapes are ever compiled, whatever the grid's size)."""
    flat = points.reshape(-1)
    size = 1 << max(int(math.ceil(math.log2(max(len(flat), 1)))), 10)
    padded = np.zeros(size)
    padded[: len(flat)] = flat
    return np.asarray(_jitted(fn)(jnp.asarray(padded, jnp.float64)), np.float64)[: len(flat)].reshape(points.shape)


def _jitted(fn):
    try:
        return _jit_cache(fn)
    except TypeError:  # an unhashable user function
        return jax.jit(fn)


@functools.lru_cache(maxsize=64)
def _jit_cache(fn):
    return jax.jit(fn)


def host_mehler(fn, q: np.ndarray, degree: int):
    """Mehler coefficients a_l(q) (G, degree + 1), second moments (even + odd, even, odd) and a
    (G,) mask of the variances whose quadrature converged; float64 NumPy. One step serves every
    variance (the largest sets it); node counts are 2^k + 1, so a few shapes are ever compiled."""
    q = np.maximum(np.asarray(q, np.float64), 0.0)
    if not np.all(np.isfinite(q)):  # an activation that grows too fast (Exp) overflowed the variance
        raise OneShotUnavailable("Sketch(mode='oneshot') does not apply: the NTK overflows on the grid of input "
                                 "variances (an activation grows too fast, e.g. Exp); use mode='layerwise'")
    root = np.sqrt(q)
    step = min(0.05, math.pi / (4.0 * (float(root.max(initial=0.0)) + 2.0 * math.sqrt(degree + 1))))
    intervals = min(1 << max(int(math.ceil(math.log2(2 * QUAD_HALF_WIDTH / step))), 4), QUAD_MAX_NODES)
    previous, trusted = None, np.zeros(len(q), bool)
    with jax.ensure_compile_time_eval(), jax.enable_x64(True):
        while True:
            g = np.linspace(-QUAD_HALF_WIDTH, QUAD_HALF_WIDTH, intervals + 1)
            values = _evaluate(fn, root[:, None] * g)
            density = (g[1] - g[0]) * np.exp(-0.5 * g * g) / math.sqrt(2 * math.pi)
            flipped = values[:, ::-1]
            even = ((values + flipped) / 2) ** 2 @ density
            odd = ((values - flipped) / 2) ** 2 @ density
            second = even + odd
            if previous is not None:
                trusted = np.abs(second - previous) <= QUAD_RTOL * np.maximum(np.abs(second), 1e-300)
            if trusted.all() or 2 * intervals > QUAD_MAX_NODES:
                break
            previous, intervals = second, 2 * intervals
        a = (values * density[None, :]) @ _hermite_table(intervals, degree)
    return a, (second, even, odd), trusted


def _mehler_sum(a, c):
    """sum_l a_l(q_i) a_l(q_j) c^l by Horner, a (G, L + 1), c (G, G, N) complex. Degrees whose
    coefficients carry below 1e-16 of every row's second moment are left out (|c| <= 1, so what
    they add is below that too): small variances' series end early, which halves the work."""
    mass = a * a
    tail = np.cumsum(mass[:, ::-1], axis=1)[:, ::-1]  # tail[:, l]: sum of a_j^2 over j >= l
    needed = np.any(tail > 1e-16 * np.maximum(tail[:, :1], 1e-300), axis=0)
    top = int(np.nonzero(needed)[0].max()) if np.any(needed) else 0
    out = np.zeros_like(c)
    for l in range(top, -1, -1):  # in place: no (G, G, N) temporaries
        out *= c
        out += (a[:, None, l] * a[None, :, l])[..., None]
    return out


def compose_series(layers, s, points: int = SERIES_POINTS, mehler_degree: int = MEHLER_DEGREE):
    """The NTK's series in rho on every pair of first-layer variances s (G,).

    Returns:
      (C, diag, trusted): C (G, G, points) real coefficients (the first points // 2 are
      resolved), diag (G,) the exact NTK at x = y, trusted (G,) whether every quadrature on
      the way converged.
    """
    # Every step maps conj(rho) to the conjugate value (real coefficients throughout), so the
    # series is composed on the upper half of the circle only and mirrored before the FFT.
    half = points // 2 + 1
    rho = np.exp(2j * np.pi * np.arange(half) / points)
    core = [l for l in layers if not isinstance(l, (Flatten, Identity))]
    k = np.sqrt(np.outer(s, s))[..., None] * rho  # after the first Dense
    ntk, q, t = k.copy(), s.copy(), s.copy()
    trusted = np.ones(len(s), bool)
    for layer in core[1:]:
        if isinstance(layer, Dense):
            w2, b2 = layer.W_std**2, layer.bias**2
            k = w2 * k + b2
            ntk = w2 * ntk + k
            q = w2 * q + b2
            t = w2 * t + q
            continue
        dual = layer.dual()
        a, (second, _, _), ok_a = host_mehler(dual.fn, q, mehler_degree)
        b, (second_prime, _, _), ok_b = host_mehler(dual.fn_prime, q, mehler_degree)
        trusted &= ok_a & ok_b
        root = np.sqrt(np.maximum(q, 1e-300))
        c = k / np.outer(root, root)[..., None]
        k, ntk = _mehler_sum(a, c), ntk * _mehler_sum(b, c)
        q, t = second, t * second_prime
    full = np.concatenate([ntk, np.conj(ntk[..., 1 : points - half + 1][..., ::-1])], axis=-1)
    return np.fft.fft(full, axis=-1).real / points, t, trusted


def _one_blas_thread(fn):
    """Run fn with BLAS on one thread: the plan's matrices are small (G <= 128), and OpenBLAS's
    threads only wait on each other there (64 x 64 eigh took 35x longer with 2 threads on a
    loaded 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency
    except ImportError:  # pragma: no cover
        return fn

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapped


class GeneralPlan:
    """The composed series of one architecture at one degree on a grid of first-layer variances
    covering s_range (host NumPy, see module docstring).

    factors: {degree: (G, rank) values of g_{m, r} / sqrt(diag) on the grid (relative to the
    root diagonal)}; log_root: (G,) log sqrt(diag); weights: (size,) each degree's largest share
    of the diagonal over the variances that matter (the data's, or typical ones), which splits
    the dimension; kept: (G,) share of the diagonal the degrees up to p carry; trusted: (G,)
    whether the quadratures converged; bias: (G,) the largest error of the plan's series
    (ranks and tail lumps, before sketching) relative to the diagonal, over rho in [-1, 1].
    """

    @_one_blas_thread
    def __init__(self, layers: tuple, degree: int, s_range: tuple[float, float], focus: tuple[float, float]):
        self.degree = degree
        self.t0 = typical_root(layers)
        self.lo, self.hi = s_range
        self.s = s = grid_variances(*s_range)
        coeffs, diag, self.trusted = _series(layers, s_range)
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
        self.log_root = np.log(scale)
        first = next(l for l in layers if isinstance(l, Dense))
        if first.bias == 0 and np.all(diag[:2] > 0):
            # Below the grid (tiny inputs of a bias-free first layer) the apply extends log
            # sqrt(diag) by its first segment's slope. The diagonal is analytic in s, s^p (d_p +
            # d_{p+1} s + ...), so its log-log slope tends to the integer p; the segment's own
            # slope is off by O(s_lo) (0.998 for Erf), and that error grows with every decade
            # below (diagonal 1.053x the exact one at 1e-7 x). Snap it to p.
            slope = (self.log_root[1] - self.log_root[0]) / math.log(s[1] / s[0])
            p = round(2.0 * slope)
            if abs(2.0 * slope - p) < 0.1:
                self.log_root[0] = self.log_root[1] - 0.5 * p * math.log(s[1] / s[0])
        self.factors = {}
        roots = np.sqrt(masses)
        for m in range(degree + 1):
            values, vectors = np.linalg.eigh(coeffs[:, :, m] / np.outer(scale, scale))
            values, vectors = values[::-1][:MAX_RANK], vectors[:, ::-1][:, :MAX_RANK]
            keep = values > RANK_TOL * max(values[0], 0.0)
            if values[0] > 0 and np.any(keep):
                self.factors[m] = vectors[:, keep] * np.sqrt(values[keep])
                roots[:, m] = scale * np.sqrt(np.sum(self.factors[m] ** 2, axis=1))  # what the ranks keep
            else:
                roots[:, m] = 0.0
        # The tail (and what the dropped ranks miss) goes on the diagonal: exact on the grid.
        lumped = coefficients_with_tail(roots, (diag, even, odd), degree, True, size)
        for m in range(degree + 1, size):
            if np.any(lumped[:, m] > 0):
                self.factors[m] = lumped[:, m : m + 1] / scale[:, None]
        # The variances that matter: grid points inside `focus`, and the two around each end.
        inside = (s >= focus[0]) & (s <= focus[1])
        edges = np.searchsorted(s, focus)
        inside[np.clip(edges - 1, 0, len(s) - 1)] = inside[np.clip(edges, 0, len(s) - 1)] = True
        self.central = inside
        self.weights = np.zeros(size)
        for m, g in self.factors.items():
            self.weights[m] = float(np.max(np.sum(g[inside] ** 2, axis=1)))
        if not np.any(self.weights > 0):
            raise OneShotUnavailable("Sketch(mode='oneshot') does not apply: the NTK is zero (a W_std of 0); use "
                                     "mode='layerwise'")
        self.weights[self.weights < 1e-12 * self.weights.max()] = 0.0
        kept = sum(np.sum(g**2, axis=1) for m, g in self.factors.items() if m <= degree)
        self.kept = np.where(diag > 0, kept, 1.0)
        # The tail's degrees feed the deepest, widest nodes of the sketch tree: no wider than
        # TAIL_CAP of the widest kept degree while the kept degrees carry most of the diagonal
        # at every variance that matters. Where they do not (large variances: sin, erf' and
        # the Gaussian spread their series to high degrees), the tail is most of the kernel and
        # keeps its share.
        if np.min(self.kept[inside]) >= 0.5:
            cap = TAIL_CAP * self.weights[: degree + 1].max()
            self.weights[degree + 1 :] = np.minimum(self.weights[degree + 1 :], cap)
        self.factors = {m: g for m, g in self.factors.items() if self.weights[m] > 0}
        self.bias = self._bias(coeffs, diag)

    def _bias(self, coeffs, diag) -> np.ndarray:
        """max over rho in [-1, 1] of |plan - series| / diag at each grid variance (x = y up to rho)."""
        rho = np.linspace(-1.0, 1.0, 81)
        top = SERIES_POINTS // 2
        diag_coeffs = np.einsum("iim->im", coeffs[:, :, :top])
        exact = diag_coeffs @ rho[None, :] ** np.arange(top)[:, None]
        # The series resolved to degree top misses what lies beyond: at |rho| = 1 the diagonal.
        exact[:, -1] = diag
        approx = np.zeros_like(exact)
        for m, g in self.factors.items():
            approx += np.sum(g**2, axis=1)[:, None] * (diag[:, None] * rho[None, :] ** m)
        safe = np.where(diag > 0, diag, 1.0)[:, None]
        return np.max(np.abs(approx - exact) / safe, axis=1)

    def interpolate(self, s: np.ndarray, values: np.ndarray) -> np.ndarray:
        """values (G,) on the grid, at first-layer variances s (linear in log s, clamped)."""
        return np.interp(np.log(np.maximum(s, 1e-300)), np.log(self.s), values)


def _series(layers: tuple, s_range: tuple[float, float]):
    """compose_series on the grid of s_range, cached (every degree 'auto' tries shares it)."""
    try:
        return _cached_series(layers, s_range)
    except TypeError:  # unhashable layers
        return _cached_series.__wrapped__(layers, s_range)


@functools.lru_cache(maxsize=8)
def _cached_series(layers: tuple, s_range: tuple[float, float]):
    with np.errstate(all="ignore"):
        return compose_series(layers, grid_variances(*s_range))


def _round_range(lo: float, hi: float) -> tuple[float, float]:
    return 2.0 ** math.floor(math.log2(lo)), 2.0 ** math.ceil(math.log2(hi))


@functools.lru_cache(maxsize=32)
def _cached_plan(layers: tuple, degree: int, s_range, focus) -> GeneralPlan:
    return GeneralPlan(layers, degree, s_range, focus)


def general_plan(layers: tuple, degree: int, s_data: np.ndarray | None = None) -> GeneralPlan:
    """The plan of a stack at a degree, for the first-layer variances s_data of the rows it will
    see (None: standardized inputs), cached when its layers are hashable (they are unless a
    user's activation holds an unhashable field)."""
    s_range = variance_range(layers, s_data)
    t0 = typical_root(layers)
    if s_data is None or not np.any(s_data > 0):
        focus = (_TYPICAL_SPREAD[0] * t0**2, _TYPICAL_SPREAD[1] * t0**2)
    else:
        focus = (float(np.min(s_data[s_data > 0])), float(np.max(s_data)))
    focus = _round_range(*focus)
    try:
        hash(layers)
    except TypeError:
        return GeneralPlan(layers, degree, s_range, focus)
    return _cached_plan(layers, degree, s_range, focus)


class SketchAccuracyWarning(UserWarning):
    """A feature map's plan cannot reach its usual accuracy on the inputs it was planned for
    (the message names the layer, the variance range, the expected error and what works)."""


# Expected error of the plan's series (ranks, tail lumps), relative to the diagonal, above which
# init warns: the sketch adds about 0.01-0.02 at dim 4096-8192 on top of it.
WARN_BIAS = 0.03
# The sketch's own variance, on rows given to init: the plan's bound on one entry's variance
# (`sketch_variance` of the factors, which are relative to the diagonal) times the rows' diagonal
# dominance D = sqrt(sum_{i != j} K_ii K_jj) / |K|_F (the Frobenius norm of K falls short of its
# trace where off-diagonal entries are small: Rbf, Sin and Cos at large variances) bounds the
# expected relative Frobenius error; measured errors were 0.07-1.0x of it, median 0.4, on the
# sweep of docs/accuracy_envelope.md. Init warns where 0.4x the bound exceeds WARN_VARIANCE; the
# error falls as 1/sqrt(dim).
WARN_VARIANCE = 0.05
VARIANCE_BOUND_SHARE = 0.4
VARIANCE_ROWS = 256  # rows of x that estimate D (a strided subset; D is extrapolated to all rows)


@pytree_dataclass(meta=("w0", "b0", "in_dim", "log_lo", "log_step", "degree", "columns", "renormalize"))
class GeneralOneShotParams:
    features: DotProductFeatureParams
    table: jax.Array  # (G, K): g_{m, r} / sqrt(diag weight_m) on the grid, column per (m, r)
    log_root: jax.Array  # (G,): log sqrt(diag) on the grid
    # (K, out_dim): output column c is sum_k g_k(|z|) mixer[k, c] times its feature column: 1 on
    # the rank's column for exact copies; rank 0's column and fixed random signs on the others for
    # sketched blocks. One small matmul and one fused product per row, however many blocks.
    mixer: jax.Array
    w0: float
    b0: float
    in_dim: int
    log_lo: float  # log of the grid's first variance
    log_step: float  # log-variance step of the grid
    degree: int  # the series' degree p (the tail lies on degrees beyond it)
    columns: tuple  # per degree present: (degree, (column of rank 0, column of rank 1, ...))
    renormalize: bool = True

    @property
    def out_dim(self) -> int:
        ranks = dict(self.columns)
        exact = sum(_exact_cost(self.features.in_dim, j) * len(ranks[j]) for j in self.features.head_exact[0])
        return exact + sum(m for _, _, m in self.features.head_slices[0])

    homogeneous_power = None  # biases and general activations: not homogeneous


def first_variances(layers, x) -> np.ndarray:
    """(n,) float64 first-layer variances s = W0^2 |x|^2 / C + b0^2 of the rows of x."""
    first = next(l for l in layers if isinstance(l, Dense))
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return first.W_std**2 * np.sum(x * x, axis=1) / x.shape[1] + first.bias**2


def general_init(layers, key, input_shape, method, dtype, x=None) -> GeneralOneShotParams:
    """Parameters of the one-shot series; with x (rows like those the map will see), its grid
    of variances and its split of the dimension follow the rows' first-layer variances, and a
    `SketchAccuracyWarning` says where the plan cannot reach its usual accuracy on them."""
    reason = general_reason(layers, input_shape)
    if reason is not None:
        raise ValueError(f"Sketch(mode='oneshot') does not apply: {reason}")
    (d,) = input_shape
    first = next(l for l in layers if isinstance(l, Dense))
    z_dim = d + (1 if first.bias > 0 else 0)
    s_data = None if x is None else first_variances(layers, x)
    degrees = AUTO_DEGREES if method.degree == "auto" else (method.degree,)
    if max(degrees) > MEHLER_DEGREE:  # the composed series is resolved up to MEHLER_DEGREE only
        raise OneShotUnavailable(f"Sketch(degree={method.degree}): the one-shot series of general activations "
                                 f"goes up to degree {MEHLER_DEGREE}; use degree <= {MEHLER_DEGREE} or "
                                 "mode='layerwise'")
    costs, chosen = {}, None
    for degree in degrees:
        plan = general_plan(tuple(layers), int(degree), s_data)
        copies = {m: g.shape[1] for m, g in plan.factors.items()}
        try:
            costs[degree] = sketch_tree_cost(z_dim, plan.weights, method.dim, copies)
        except ValueError as e:  # the dimension cannot hold this degree
            if "too small" not in str(e):
                raise
            error = e
            continue
        if len(degrees) == 1 or costs[degree] <= TREE_COST * method.dim:
            chosen = plan
            break
    if chosen is None:
        if not costs:
            raise ValueError(f"Sketch(dim={method.dim}) is too small for the one-shot map of this stack at degree "
                             f"{degrees[-1]} ({error}); raise dim or lower degree")
        chosen = general_plan(tuple(layers), int(min(costs, key=costs.get)), s_data)
    _warn_accuracy(chosen, layers, s_data)
    if x is not None:
        _warn_variance(chosen, layers, x, z_dim, method.dim)
    return _draw(chosen, key, z_dim, first, method, dtype)


def plan_kernel(plan: GeneralPlan, layers, x) -> np.ndarray:
    """(n, n) the NTK of the rows of x as the plan's series gives it (host float64): sqrt(K_ii
    K_jj) sum_m <f_m(s_i), f_m(s_j)> rho_ij^m, f_m the degree-m factors relative to the diagonal."""
    first = next(l for l in layers if isinstance(l, Dense))
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    z = first.W_std * x / math.sqrt(x.shape[1])
    if first.bias > 0:
        z = np.concatenate([z, np.full((len(z), 1), first.bias)], axis=1)
    s = np.sum(z * z, axis=1)
    norms = np.sqrt(s)
    u = z / np.where(norms > 0, norms, 1.0)[:, None]
    rho = np.clip(u @ u.T, -1.0, 1.0)
    relative = np.zeros_like(rho)
    for m, g in plan.factors.items():
        f = np.stack([plan.interpolate(s, g[:, r]) for r in range(g.shape[1])], axis=1)
        relative += (f @ f.T) * rho**m
    root = np.exp(plan.interpolate(s, plan.log_root)) * (norms > 0)
    return relative * np.outer(root, root)


def _warn_variance(plan: GeneralPlan, layers, x, z_dim: int, dim: int) -> None:
    """Warn where the sketch's variance on these rows is expected above WARN_VARIANCE (see there)."""
    n = len(x)
    if n < 2:
        return
    rows = np.asarray(x)[:: max(1, n // VARIANCE_ROWS)][:VARIANCE_ROWS]
    k = plan_kernel(plan, layers, rows)
    d = np.diag(k)
    off = ~np.eye(len(d), dtype=bool)
    mean_dd, mean_d2, mean_k2 = float(np.mean(np.outer(d, d)[off])), float(np.mean(d**2)), float(np.mean(k[off] ** 2))
    frobenius2 = n * mean_d2 + n * (n - 1) * mean_k2
    if frobenius2 <= 0:
        return
    dominance = math.sqrt(n * (n - 1) * mean_dd / frobenius2)
    copies = {m: g.shape[1] for m, g in plan.factors.items()}
    score = sketch_variance(z_dim, plan.weights, dim, copies)
    expected = VARIANCE_BOUND_SHARE * math.sqrt(score) * dominance
    if expected <= WARN_VARIANCE:
        return
    acts = sorted({type(l).__name__ for l in layers if isinstance(l, Activation)})
    needed = int(2 ** math.ceil(math.log2(dim * (expected / WARN_VARIANCE) ** 2)))
    warnings.warn(
        f"network (one-shot Sketch of {', '.join(acts)}, dim {dim}): the NTK of these {n} rows is dominated by its "
        f"diagonal (sqrt(sum_(i!=j) K_ii K_jj) / |K|_F = {dominance:.2g}), so the sketch's variance gives an expected "
        f"relative kernel error of about {expected:.2g}, beyond the usual 0.01-0.05. The error falls as 1/sqrt(dim): "
        f"dim={needed} is expected to reach {WARN_VARIANCE}", SketchAccuracyWarning, stacklevel=4)


def _warn_accuracy(plan: GeneralPlan, layers, s_data) -> None:
    """Warn where the plan's own series error on the variances that matter exceeds WARN_BIAS
    or its quadratures did not converge."""
    s = plan.s[plan.central] if s_data is None else s_data
    bias = plan.interpolate(s, plan.bias)
    trusted = plan.interpolate(s, plan.trusted.astype(float)) > 0.999
    bad = (bias > WARN_BIAS) | ~trusted
    if not np.any(bad):
        return
    acts = sorted({type(l).__name__ for l in layers if isinstance(l, Activation)})
    where = "on these rows" if s_data is not None else "at typical variances of standardized inputs"
    lo, hi = float(np.min(s[bad])), float(np.max(s[bad]))
    quad = "" if np.all(trusted) else " (the Mehler quadrature did not converge there)"
    warnings.warn(
        f"network (one-shot Mehler series of {', '.join(acts)}, degree {plan.degree}): at first-layer variances "
        f"{lo:.3g} to {hi:.3g} (W_std^2 |x|^2 / C + b_std^2; {int(np.sum(bad))} of {len(s)} "
        f"{'rows' if s_data is not None else 'grid points'} {where}) the series' error is up to "
        f"{float(np.max(bias[bad])):.2g} of the diagonal{quad}, beyond the usual 0.01-0.05 kernel error. "
        "Scale the inputs or lower W_std / b_std, or use nf.RandomFeatures (which samples the activation at any "
        "variance)", SketchAccuracyWarning, stacklevel=4)


def _draw(plan: GeneralPlan, key, z_dim: int, first: Dense, method, dtype) -> GeneralOneShotParams:
    k_features, k_signs = _random.split(key, 2)
    copies = {m: g.shape[1] for m, g in plan.factors.items()}
    features = dot_product_features_init(k_features, z_dim, plan.weights, method.dim, dtype, exact_copies=copies)
    columns, table = [], []
    for m in sorted(plan.factors):
        g = plan.factors[m] / math.sqrt(plan.weights[m])  # relative to the root diagonal
        columns.append((m, tuple(range(len(table), len(table) + g.shape[1]))))
        table.extend(g.T)
    ranks, k = dict(columns), len(table)
    blocks = []  # (K, width) per output block, in output order
    for j in features.head_exact[0]:
        for c in ranks[j]:
            blocks.append(np.zeros((k, _exact_cost(z_dim, j))))
            blocks[-1][c] = 1.0
    exact_width = sum(b.shape[1] for b in blocks)
    slices = features.head_slices[0]
    total = sum(m for _, _, m in slices)
    base = np.zeros((k, exact_width + total))
    base[:, :exact_width] = np.concatenate(blocks, axis=1) if blocks else np.zeros((k, 0))
    # Fixed random signs mix the ranks into one sketched block: rank r > 0 of the block's degree
    # takes row r - 1 of one (MAX_RANK - 1, total) Rademacher draw (one op, traceable in the key).
    select = np.zeros((MAX_RANK - 1, k, total))
    start = exact_width
    for j, _, m in slices:
        cols = ranks[j]
        base[cols[0], start : start + m] = 1.0
        for r, c in enumerate(cols[1:]):
            select[r, c, start - exact_width : start - exact_width + m] = 1.0
        start += m
    if select.any():
        signs = _random.rademacher(k_signs, (MAX_RANK - 1, total))
        if isinstance(signs, np.ndarray):  # a concrete key: on the host, nothing to compile
            base[:, exact_width:] += np.einsum("rkt,rt->kt", select, signs)
        else:
            mixed = jnp.einsum("rkt,rt->kt", jnp.asarray(select, dtype), jnp.asarray(signs, dtype))
            base = jnp.asarray(base, dtype).at[:, exact_width:].add(mixed)
    mixer = jnp.asarray(base, dtype)
    log_s = np.log(plan.s)
    return GeneralOneShotParams(features, jnp.asarray(np.stack(table, axis=1), dtype),
                                jnp.asarray(plan.log_root, dtype), mixer, float(first.W_std), float(first.bias),
                                z_dim - (1 if first.bias > 0 else 0), float(log_s[0]), float(log_s[1] - log_s[0]),
                                plan.degree, tuple(columns), bool(method.renormalize))


def _grid_factors(params: GeneralOneShotParams, root: jax.Array) -> jax.Array:
    """(..., K) the factors at |z| = root: the relative table interpolated linearly in log s
    (constant beyond the grid's ends), times the root diagonal interpolated linearly in log s
    and extended by its end slopes (a power of s: exact for a bias-free stack's tiny inputs)."""
    positive = root > 0
    log_s = 2.0 * jnp.log(jnp.where(positive, root, 1.0))  # no log(0): zero rows of bias-free stacks
    pos = (log_s - params.log_lo) / params.log_step
    points = params.table.shape[0]
    i = jnp.clip(jnp.floor(pos), 0, points - 2).astype(jnp.int32)
    frac = pos - i
    clipped = jnp.clip(frac, 0.0, 1.0)[..., None]
    relative = params.table[i] * (1 - clipped) + params.table[i + 1] * clipped
    log_root = params.log_root[i] * (1 - frac) + params.log_root[i + 1] * frac
    return jnp.where(positive, jnp.exp(log_root), 0.0)[..., None] * relative


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
    grid's variance range, the share of the NTK's diagonal the degrees up to it carry and the
    series' own error relative to the diagonal (min / mean / max over the rows of x, or over the
    grid's typical variances without x), and the rows of x beyond the variance grid."""
    points = params.table.shape[0]
    lo = math.exp(params.log_lo)
    hi = math.exp(params.log_lo + (points - 1) * params.log_step)
    s_range = (2.0 ** round(math.log2(lo)), 2.0 ** round(math.log2(hi)))
    plan = GeneralPlan(tuple(layers), params.degree, s_range, s_range)
    out = {"layer": "network", "kind": "one-shot Mehler series of the NTK", "degree": params.degree,
           "ranks": {j: len(c) for j, c in params.columns if j <= params.degree}, "variance_range": (lo, hi)}
    if x is None:
        kept, bias = plan.kept[plan.central], plan.bias[plan.central]
    else:
        s = first_variances(layers, x)
        kept, bias = plan.interpolate(s, plan.kept), plan.interpolate(s, plan.bias)
        out["rows_beyond_grid"] = int(np.sum(s > hi * (1 + 1e-9)))
    out["ntk_kept_min"], out["ntk_kept_mean"] = float(np.min(kept)), float(np.mean(kept))
    out["series_error_max"] = float(np.max(bias))
    return out


__all__ = ["GeneralOneShotParams", "OneShotUnavailable", "SketchAccuracyWarning", "first_variances", "general_apply", "general_init", "general_plan", "general_reason", "general_report"]

"""Random features for a dot-product kernel sum_j c_j <x, y>^j with c_j >= 0.

The features are the concatenation of sqrt(c_j) * (features of <x, y>^j) over the degrees j:
- degree 0 is one constant coordinate;
- the lowest degrees, while exact monomial features are cheap (C(d + j - 1, j) of them), are
  written exactly and add no variance;
- the remaining degrees share one PolySketch tree, each degree keeping m_j of its root's
  outputs, with m_j proportional to c_j sqrt(levels_j + 1): the split that minimizes the summed
  variance sum_j c_j^2 v_j / m_j under sum_j m_j = budget when the variance of a degree-j sketch
  grows with the number of TensorSRHT levels it went through.
The number of exact degrees is chosen to minimize that variance bound as well (the low-degree
terms carry most of the kernel mass, so writing them exactly is usually the best use of the
dimension when the input is small).

Several polynomials of the same input ("heads", e.g. kappa1 and kappa0 at a ReLU) can share one
parameter set: the exact monomials are computed once, and the sketched degrees come from one
PolySketch tree whose root rows are split into disjoint slices, one per head. Each head is still
an unbiased sketch of its own polynomial, and the FFTs of the input are paid once.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random
from ntkfeat._norms import norm, rescale_blocks
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.sketches.monomials import monomial_features, monomial_features_init, monomial_products, num_monomials
from ntkfeat.sketches.poly_sketch import PolySketchParams, num_levels, poly_sketch, poly_sketch_init, tensor_width
from ntkfeat.sketches.srht import (
    HartleyRows, SRHTParams, shared_rows_init, shared_srht, split_proportional, srht, srht_init,
)

# A sketched degree never gets fewer dimensions than this.
_MIN_SKETCH_DIM = 8
# The PolySketch node (level 1, position 0, two x leaves): x (x) x, present for every degree >= 2.
_FIRST_PRODUCT = str((1, 0, 2))


def _variance_weight(j: int) -> float:
    return math.sqrt(num_levels(j) + 1.0)


def plan_dot_product_features(in_dim: int, coeffs, dim: int) -> tuple[tuple[int, ...], dict[int, int]]:
    """Chooses which degrees are exact and how many dimensions each sketched degree gets.

    Returns:
      (exact_degrees, sketch_dims) with sketch_dims a {degree: m_j} dict.
    """
    exact, dims, _ = _plan([_check_coeffs(coeffs)], [dim], in_dim)
    return exact, dims[0]


def sketch_variance(in_dim: int, coeffs, dim: int, exact_copies: dict | None = None) -> float:
    """The plan's bound on the summed variance of one kernel entry of unit vectors, sum_j c_j^2
    v_j / m_j (v_j the variance of a degree-j sketch per dimension, ~ levels_j + 1; 0 when every
    degree is exact); divide by p(1)^2 for a relative variance. `exact_copies` as in
    `dot_product_features_init`."""
    return _plan([_check_coeffs(coeffs)], [dim], in_dim, exact_copies)[2]


def sketch_tree_cost(in_dim: int, coeffs, dim: int, exact_copies: dict | None = None) -> int:
    """What the PolySketch tree of these features costs: the summed width of its TensorSRHT
    nodes (`poly_sketch.tensor_width`; 0 when every degree is exact), without drawing it."""
    _, dims, _ = _plan([_check_coeffs(coeffs)], [dim], in_dim, exact_copies)
    widths = {j: m for j, m in dims[0].items() if j >= 2}
    if not widths:
        return 0
    return tensor_width(in_dim, tuple(widths), max(widths.values()), widths)


def _check_coeffs(coeffs) -> np.ndarray:
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 1 or np.any(coeffs < 0) or not np.all(np.isfinite(coeffs)):
        raise ValueError("coefficients must be a 1-d array of finite non-negative numbers")
    if not np.any(coeffs > 0):
        raise ValueError("all polynomial coefficients are zero")
    return coeffs


def _exact_cost(in_dim: int, j: int) -> int:
    return 1 if j == 0 else num_monomials(in_dim, j)


def _plan(coeffs_list, dims, in_dim, copies=None):
    """Shared exact degrees and per-head sketch dimensions (see module docstring). copies: {degree:
    n}, a caller that uses an exact block n times (the budget pays for every copy)."""
    copies = copies or {}
    present = [[j for j in range(len(c)) if c[j] > 0] for c in coeffs_list]
    degrees = sorted(set().union(*present))
    best = None
    for n_exact in range(len(degrees) + 1):
        exact = degrees[:n_exact]
        if 0 in degrees and 0 not in exact and n_exact < len(degrees):
            continue  # degree 0 is always exact (one coordinate)
        score, rests, feasible = 0.0, [], True
        for c, dim, deg in zip(coeffs_list, dims, present):
            sketched = [j for j in deg if j not in exact]
            rest = dim - sum(_exact_cost(in_dim, j) * copies.get(j, 1) for j in deg if j in exact)
            if rest < _MIN_SKETCH_DIM * len(sketched):
                feasible = False
                break
            mass = sum(c[j] * _variance_weight(j) for j in sketched)
            score += mass**2 / rest if sketched else 0.0
            rests.append((rest, sketched))
        if not feasible:
            break
        if best is None or score <= best[0] * (1 + 1e-9):
            best = (score, tuple(exact), rests)
    if best is None:
        raise ValueError(
            f"dim={min(dims)} is too small for a polynomial of degree {degrees[-1]} on {in_dim} inputs: "
            f"it needs at least {1 + _MIN_SKETCH_DIM * len(degrees)}"
        )
    score, exact, rests = best
    head_dims = [
        _split(rest, {j: c[j] * _variance_weight(j) for j in sketched})
        for c, (rest, sketched) in zip(coeffs_list, rests)
    ]
    return exact, head_dims, score


def _split(total: int, weights: dict[int, float]) -> dict[int, int]:
    """Integer split of `total` proportional to `weights`, each part >= _MIN_SKETCH_DIM."""
    keys = sorted(weights)
    parts = split_proportional(total, [weights[k] for k in keys], _MIN_SKETCH_DIM) if keys else []
    return dict(zip(keys, parts))


@pytree_dataclass(meta=("in_dim", "exact_degrees", "head_exact", "head_slices"))
class DotProductFeatureParams:
    sqrt_coeffs: jax.Array  # (heads, q + 1)
    monomials: dict  # degree (str) -> MonomialParams, for exact degrees >= 2 (shared)
    # When degree 1 is sketched: its own SRHT, or rows of the tree's first transform of x.
    degree_one: SRHTParams | HartleyRows | None
    tree: PolySketchParams | None  # sketched degrees >= 2 (shared)
    in_dim: int
    exact_degrees: tuple[int, ...]  # computed once
    head_exact: tuple[tuple[int, ...], ...]  # per head: the exact degrees it uses (c_j > 0)
    head_slices: tuple[tuple[tuple[int, int, int], ...], ...]  # per head: ((degree, start, m), ...)

    def input_transform(self) -> SRHTParams | None:
        """An SRHT of the input whose FFT these features take anyway (the first transform of the
        PolySketch tree, or degree one's own), or None. Another sketch of the same input can
        borrow it (see `sketches.product`) and pay no FFT."""
        if self.tree is not None and _FIRST_PRODUCT in self.tree.nodes:
            return self.tree.nodes[_FIRST_PRODUCT].left
        return self.degree_one if isinstance(self.degree_one, SRHTParams) else None

    @property
    def heads(self) -> int:
        return len(self.head_slices)

    def head_exact_dim(self, head: int) -> int:
        """Width of the exact (leading) block of a head's features."""
        return sum(_exact_cost(self.in_dim, j) for j in self.head_exact[head])

    def head_out_dim(self, head: int) -> int:
        return self.head_exact_dim(head) + sum(m for _, _, m in self.head_slices[head])

    @property
    def out_dim(self) -> int:
        """Output width of the first (or only) head."""
        return self.head_out_dim(0)

    def head_degrees(self, head: int) -> np.ndarray:
        """(head_out_dim,) the degree of each output coordinate of a head (static)."""
        cols = [np.full(_exact_cost(self.in_dim, j), j) for j in self.head_exact[head]]
        cols += [np.full(m, j) for j, _, m in self.head_slices[head]]
        return np.concatenate(cols).astype(np.int32)

    @property
    def sketch_dims(self) -> tuple[tuple[int, int], ...]:
        """((degree, m_j), ...) of the first (or only) head."""
        return tuple((j, m) for j, _, m in self.head_slices[0])


def dot_product_features_init(
    key: jax.Array, in_dim: int, coeffs, dim, dtype=jnp.float32, exact_copies: dict | None = None
) -> DotProductFeatureParams:
    """Parameters for features of sum_j coeffs[j] <x, y>^j with about `dim` outputs.

    Args:
      key: PRNG key.
      in_dim: d.
      coeffs: (q + 1,) non-negative coefficients, or a list of such arrays (one per head).
      dim: output dimension budget (an int, or a list with one per head); a head has at most
        its `dim` features (fewer when exact features for every degree fit in fewer).
      exact_copies: {degree: n} for a caller that will use degree j's exact block n times
        (the one-shot map of general activations, once per rank): the budget pays for them.
    """
    multi = isinstance(dim, (list, tuple))
    coeffs_list = [_check_coeffs(c) for c in coeffs] if multi else [_check_coeffs(coeffs)]
    dims = list(dim) if multi else [dim]
    if len(coeffs_list) != len(dims):
        raise ValueError(f"{len(coeffs_list)} coefficient arrays but {len(dims)} dims")
    exact, head_dims, _ = _plan(coeffs_list, dims, in_dim, exact_copies)
    q = max(len(c) for c in coeffs_list)
    sqrt_coeffs = np.zeros((len(coeffs_list), q))
    for h, c in enumerate(coeffs_list):
        sqrt_coeffs[h, : len(c)] = np.sqrt(c)
    k_one, k_tree = _random.split(key, 2)
    monomials = {str(j): monomial_features_init(in_dim, j, dtype) for j in exact if j >= 2}
    totals = {}
    for hd in head_dims:
        for j, m in hd.items():
            totals[j] = totals.get(j, 0) + m
    widths = {1: totals.get(1, 0)}
    tree_degrees = tuple(j for j in totals if j >= 2)
    tree = None
    if tree_degrees:
        tree = poly_sketch_init(k_tree, in_dim, tree_degrees, max(totals[j] for j in tree_degrees), dtype,
                                degree_widths={j: totals[j] for j in tree_degrees})
        widths.update(tree.out_dims())
    degree_one = None
    if 1 in totals:
        first = tree.nodes.get(_FIRST_PRODUCT) if tree is not None else None
        if first is not None:  # degree 1 from the rows of x's first transform in the tree
            degree_one = shared_rows_init(k_one, first.left, totals[1], dtype)
        else:
            degree_one = srht_init(k_one, in_dim, totals[1], dtype)
    slices = []
    starts = {j: 0 for j in totals}
    for hd in head_dims:
        head = []
        for j in sorted(hd):
            m = min(hd[j], widths[j])
            # Disjoint root rows per head while they fit; an exact (narrow) root is shared whole.
            start = starts[j] if starts[j] + m <= widths[j] else 0
            starts[j] = start + m
            head.append((j, start, m))
        slices.append(tuple(head))
    head_exact = tuple(tuple(j for j in exact if j < len(c) and c[j] > 0) for c in coeffs_list)
    return DotProductFeatureParams(
        jnp.asarray(sqrt_coeffs, dtype), monomials, degree_one, tree, in_dim, exact, head_exact, tuple(slices)
    )


def dot_product_features(params: DotProductFeatureParams, x: jax.Array, *, heads: bool = False,
                         renormalize: bool = False, x_norm=None):
    """(..., d) -> (..., out_dim) with E <f(x), f(y)> = sum_j c_j <x, y>^j.

    With several heads, returns the tuple of every head's features when `heads=True` (and the
    first head's otherwise). With `renormalize`, each sketched degree-j block is rescaled to the
    norm it estimates, sqrt(c_j) |x|^j: a ratio estimate, biased by O(1/m_j), whose error
    shrinks with the angle between x and y instead of growing with |<x, y>|. Exact blocks have
    their norms already. `x_norm`: |x| where the caller knows it (1 for unit vectors), so that
    renormalizing takes no pass over x.
    """
    if x.shape[-1] != params.in_dim:
        raise ValueError(f"dot_product_features: last axis {x.shape[-1]} != {params.in_dim}")
    exact = {}
    top = max((j for j in params.exact_degrees if j >= 2), default=0)
    products = monomial_products(x, top) if top else []  # every exact degree from one chain
    for j in params.exact_degrees:
        if j == 0:
            exact[j] = jnp.ones(x.shape[:-1] + (1,), x.dtype)
        elif j == 1:
            exact[j] = x
        else:
            exact[j] = monomial_features(params.monomials[str(j)], x, products[j - 1])
    sketched = {}
    if isinstance(params.degree_one, SRHTParams):
        sketched[1] = srht(params.degree_one, x)
    elif params.degree_one is not None:
        sketched[1] = shared_srht(params.degree_one, params.tree.nodes[_FIRST_PRODUCT].left, x)
    if params.tree is not None:
        sketched.update(poly_sketch(params.tree, x))
    sc = params.sqrt_coeffs.astype(x.dtype)
    if renormalize and sketched and x_norm is None:
        x_norm = norm(x)
    outputs = []
    for h in range(params.heads if heads else 1):
        parts = [sc[h, j] * exact[j] for j in params.head_exact[h]]
        slices = params.head_slices[h]
        blocks = [sketched[j][..., start : start + m] for j, start, m in slices]
        if renormalize and blocks:
            targets = jnp.stack([sc[h, j] * jnp.asarray(x_norm, x.dtype) ** j for j, _, _ in slices], axis=-1)
            blocks = [rescale_blocks(jnp.concatenate(blocks, axis=-1), [m for _, _, m in slices], targets)]
        else:
            # The root's rows are exchangeable draws, so any m of them form a sketch of
            # dimension m once rescaled.
            blocks = [sc[h, j] * (sketched[j].shape[-1] / m) ** 0.5 * b for (j, _, m), b in zip(slices, blocks)]
        outputs.append(jnp.concatenate(parts + blocks, axis=-1))
    return tuple(outputs) if heads else outputs[0]

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
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import _random
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.sketches.monomials import MonomialParams, monomial_features, monomial_features_init, num_monomials
from ntkfeat.sketches.poly_sketch import PolySketchParams, num_levels, poly_sketch, poly_sketch_init
from ntkfeat.sketches.srht import SRHTParams, srht, srht_init

# A sketched degree never gets fewer dimensions than this.
_MIN_SKETCH_DIM = 8


def _variance_weight(j: int) -> float:
    return math.sqrt(num_levels(j) + 1.0)


def plan_dot_product_features(in_dim: int, coeffs, dim: int) -> tuple[tuple[int, ...], dict[int, int]]:
    """Chooses which degrees are exact and how many dimensions each sketched degree gets.

    Returns:
      (exact_degrees, sketch_dims) with sketch_dims a {degree: m_j} dict.
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 1 or np.any(coeffs < 0) or not np.all(np.isfinite(coeffs)):
        raise ValueError("coefficients must be a 1-d array of finite non-negative numbers")
    degrees = [j for j in range(len(coeffs)) if coeffs[j] > 0]
    if not degrees:
        raise ValueError("all polynomial coefficients are zero")
    best = None
    # Candidate: the exact set is the first `n_exact` present degrees.
    for n_exact in range(len(degrees) + 1):
        exact = degrees[:n_exact]
        sketched = [j for j in degrees[n_exact:]]
        cost = sum(1 if j == 0 else num_monomials(in_dim, j) for j in exact)
        if sketched and 0 in sketched:
            continue  # degree 0 is always exact (one coordinate)
        rest = dim - cost
        if rest < (_MIN_SKETCH_DIM * len(sketched) if sketched else 0):
            break
        mass = sum(coeffs[j] * _variance_weight(j) for j in sketched)
        score = mass**2 / rest if sketched else 0.0
        if best is None or score <= best[0] * (1 + 1e-9):
            best = (score, tuple(exact), tuple(sketched), rest)
    if best is None:
        raise ValueError(
            f"dim={dim} is too small for a polynomial of degree {degrees[-1]} on {in_dim} inputs: "
            f"it needs at least {1 + _MIN_SKETCH_DIM * len(degrees)}"
        )
    _, exact, sketched, rest = best
    dims = _split(rest, {j: coeffs[j] * _variance_weight(j) for j in sketched})
    return exact, dims


def _split(total: int, weights: dict[int, float]) -> dict[int, int]:
    """Integer split of `total` proportional to `weights`, each part >= _MIN_SKETCH_DIM."""
    if not weights:
        return {}
    keys = sorted(weights)
    w = np.array([weights[k] for k in keys])
    parts = np.maximum(np.floor(total * w / w.sum()).astype(int), _MIN_SKETCH_DIM)
    # Hand the remainder (or take the excess) from the largest parts.
    order = np.argsort(-w)
    i = 0
    while parts.sum() != total:
        step = 1 if parts.sum() < total else -1
        k = order[i % len(order)]
        if step > 0 or parts[k] > _MIN_SKETCH_DIM:
            parts[k] += step
        i += 1
    return {k: int(p) for k, p in zip(keys, parts)}


@pytree_dataclass(meta=("in_dim", "exact_degrees", "sketch_dims"))
class DotProductFeatureParams:
    sqrt_coeffs: jax.Array  # (q + 1,)
    monomials: dict  # degree (str) -> MonomialParams, for exact degrees >= 2
    degree_one: SRHTParams | None  # when degree 1 is sketched, a single SRHT does it
    tree: PolySketchParams | None  # sketched degrees >= 2
    in_dim: int
    exact_degrees: tuple[int, ...]
    sketch_dims: tuple[tuple[int, int], ...]  # ((degree, m_j), ...)

    @property
    def out_dim(self) -> int:
        exact = sum(1 if j == 0 else num_monomials(self.in_dim, j) for j in self.exact_degrees)
        return exact + sum(m for j, m in self.sketch_dims)


def dot_product_features_init(
    key: jax.Array, in_dim: int, coeffs, dim: int, dtype=jnp.float32
) -> DotProductFeatureParams:
    """Parameters for features of sum_j coeffs[j] <x, y>^j with about `dim` outputs.

    Args:
      key: PRNG key.
      in_dim: d.
      coeffs: (q + 1,) non-negative coefficients.
      dim: output dimension budget; the output has at most `dim` features (fewer when exact
        features for every degree fit in fewer).
    """
    exact, dims = plan_dot_product_features(in_dim, coeffs, dim)
    coeffs = np.asarray(coeffs, dtype=np.float64)
    k_one, k_tree = _random.split(key, 2)
    monomials = {str(j): monomial_features_init(in_dim, j, dtype) for j in exact if j >= 2}
    degree_one = srht_init(k_one, in_dim, dims[1], dtype) if 1 in dims else None
    tree_degrees = tuple(j for j in dims if j >= 2)
    tree = None
    if tree_degrees:
        width = max(dims[j] for j in tree_degrees)
        tree = poly_sketch_init(k_tree, in_dim, tree_degrees, width, dtype)
        # A root narrower than its share (an exact node) keeps its natural width.
        root = tree.out_dims()
        dims = {j: (min(m, root[j]) if j >= 2 else m) for j, m in dims.items()}
    return DotProductFeatureParams(
        jnp.asarray(np.sqrt(coeffs), dtype), monomials, degree_one, tree, in_dim, exact,
        tuple(sorted(dims.items())),
    )


def dot_product_features(params: DotProductFeatureParams, x: jax.Array) -> jax.Array:
    """(..., d) -> (..., out_dim) with E <f(x), f(y)> = sum_j c_j <x, y>^j."""
    if x.shape[-1] != params.in_dim:
        raise ValueError(f"dot_product_features: last axis {x.shape[-1]} != {params.in_dim}")
    parts = []
    sc = params.sqrt_coeffs.astype(x.dtype)
    for j in params.exact_degrees:
        if j == 0:
            parts.append(jnp.broadcast_to(sc[0], x.shape[:-1] + (1,)))
        elif j == 1:
            parts.append(sc[1] * x)
        else:
            parts.append(sc[j] * monomial_features(params.monomials[str(j)], x))
    sketch_dims = dict(params.sketch_dims)
    if 1 in sketch_dims:
        parts.append(sc[1] * srht(params.degree_one, x))
    if params.tree is not None:
        roots = poly_sketch(params.tree, x)
        for j, root in roots.items():
            m = sketch_dims[j]
            # The root's outputs are exchangeable draws, so any m of them form a sketch of
            # dimension m once rescaled.
            parts.append(sc[j] * (root.shape[-1] / m) ** 0.5 * root[..., :m])
    return jnp.concatenate(parts, axis=-1)

"""Exact features of a homogeneous polynomial kernel <x, y>^j through symmetric monomials.

<x, y>^j = sum_{|alpha| = j} (j! / alpha!) x^alpha y^alpha, so the C(d + j - 1, j) features
sqrt(j! / alpha!) x^alpha reproduce it exactly. When d is small (d = 9: 45 features for j = 2,
165 for j = 3) they cost fewer dimensions than a sketch would need and add no variance.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class MonomialParams(NamedTuple):
    index: jax.Array  # (M, j) int32: the variables of each monomial, with repetition
    weight: jax.Array  # (M,) sqrt(j! / alpha!)


def num_monomials(in_dim: int, degree: int) -> int:
    """C(d + j - 1, j): the number of degree-j monomials in d variables."""
    return math.comb(in_dim + degree - 1, degree)


def monomial_features_init(in_dim: int, degree: int, dtype=jnp.float32) -> MonomialParams:
    """Index and weight tables for the exact degree-`degree` features (deterministic)."""
    if degree < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    combos = np.array(list(itertools.combinations_with_replacement(range(in_dim), degree)), np.int32)
    fact = math.factorial(degree)
    weight = np.array(
        [math.sqrt(fact / math.prod(math.factorial(m) for m in Counter(c).values())) for c in combos]
    )
    return MonomialParams(jnp.asarray(combos), jnp.asarray(weight, dtype))


def monomial_products(x: jax.Array, degree: int) -> list[jax.Array]:
    """The unweighted monomials x^alpha of degrees 1..degree, each in the order of
    `monomial_features_init` (lexicographic in the sorted variable indices).

    No gathers: in that order, the degree-j monomials whose first variable is i are x_i times the
    degree-(j-1) monomials whose variables are all >= i, a contiguous tail of the previous
    degree's list. So each degree costs one pass that writes it.
    """
    d = x.shape[-1]
    out = [x]
    for j in range(2, degree + 1):
        prev = out[-1]
        # starts[i]: where the degree-(j-1) monomials with first variable >= i begin.
        counts = [num_monomials(d - i, j - 2) if j > 2 else 1 for i in range(d)]
        starts = np.concatenate([[0], np.cumsum(counts)])
        out.append(jnp.concatenate([x[..., i : i + 1] * prev[..., int(starts[i]) :] for i in range(d)], axis=-1))
    return out


def monomial_features(params: MonomialParams, x: jax.Array, products=None) -> jax.Array:
    """(..., d) -> (..., M) with <f(x), f(y)> = <x, y>^j exactly. `products`: this degree's
    unweighted monomials when the caller has them (`monomial_products`)."""
    degree = params.index.shape[1]
    if products is None:
        products = monomial_products(x, degree)[-1]
    return params.weight.astype(x.dtype) * products

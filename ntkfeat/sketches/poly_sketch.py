"""PolySketch (Ahle et al., SODA 2020): sketches of x^(tensor j) for every j <= q from one tree.

A binary tree of ceil(log2 q) levels of independent TensorSRHTs. Its 2^levels leaves are copies
of x; the degree-j sketch replaces the last leaves by e1 = (1, 0, ...), since x (x) e1 has the
Gram of x. A node with e1 on its right is a plain SRHT of its left child (and the identity when
the left child already fits the width); a node with e1 on both sides is e1 and costs nothing.
Nodes depend only on (level, position, number of x-leaves below), so full subtrees are shared by
every degree. Any q >= 1 works, not only powers of two.

A TensorSRHT node keeps min(width, N_left * N_right) outputs (N: the padded FFT lengths): with stratified rows a node of that
size is exact (see `srht`), so low-dimensional inputs are sketched without variance.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ntkfeat import _random
from ntkfeat._pytree import pytree_dataclass
from ntkfeat.sketches.srht import TensorSRHTParams, fft_length, srht, srht_init, tensor_srht, tensor_srht_init


class _Node(NamedTuple):
    kind: str  # 'leaf' | 'one' | 'identity' | 'srht' | 'tensor'
    width: int  # output width (0 for 'one')
    left: tuple | None
    right: tuple | None


def num_levels(degree: int) -> int:
    return max(0, math.ceil(math.log2(degree))) if degree > 1 else 0


def _users(degrees: tuple[int, ...]) -> dict[tuple, list[int]]:
    """The degrees whose sketch passes through each node (level, position, x-leaf count)."""
    levels = num_levels(max(degrees))
    users: dict[tuple, list[int]] = {}

    def visit(key, j):
        users.setdefault(key, []).append(j)
        level, pos, count = key
        if count == 0 or level == 0:
            return
        half = 1 << (level - 1)
        visit((level - 1, 2 * pos, min(count, half)), j)
        visit((level - 1, 2 * pos + 1, max(count - half, 0)), j)

    for j in degrees:
        visit((levels, 0, j), j)
    return users


def _plan(in_dim: int, degrees: tuple[int, ...], width: int, degree_widths: tuple = ()) -> dict[tuple, _Node]:
    """The nodes needed for `degrees`, keyed by (level, position, x-leaf count).

    A node is as wide as the widest degree it feeds needs (`degree_widths`, {degree: width};
    `width` for degrees not given), so the nodes that only serve high degrees, which carry little
    of a kernel and get few dimensions, cost little."""
    levels = num_levels(max(degrees))
    need = dict(degree_widths)
    users = _users(degrees)
    plan: dict[tuple, _Node] = {}

    def visit(level: int, pos: int, count: int) -> _Node:
        key = (level, pos, count)
        if key in plan:
            return plan[key]
        node_width = max(need.get(j, width) for j in users[key])
        if count == 0:
            node = _Node("one", 0, None, None)
        elif level == 0:
            node = _Node("leaf", in_dim, None, None)
        else:
            half = 1 << (level - 1)
            lkey = (level - 1, 2 * pos, min(count, half))
            rkey = (level - 1, 2 * pos + 1, max(count - half, 0))
            left, right = visit(*lkey), visit(*rkey)
            if right.kind == "one":
                if left.width <= node_width:
                    node = _Node("identity", left.width, lkey, None)
                else:
                    node = _Node("srht", node_width, lkey, None)
            else:
                full = fft_length(left.width) * fft_length(right.width)  # exact at this width
                node = _Node("tensor", min(node_width, full), lkey, rkey)
        plan[key] = node
        return node

    for j in degrees:
        visit(levels, 0, j)
    return plan


def tensor_width(in_dim: int, degrees: tuple[int, ...], width: int, degree_widths=()) -> int:
    """Summed output width of the TensorSRHT nodes of the tree for these degrees: what evaluating
    it costs (rows/s of the one-shot maps ran inversely proportional to it within 1.3x, NOTES.md)."""
    plan = _plan(in_dim, tuple(degrees), width, tuple(sorted(dict(degree_widths).items())))
    return sum(node.width for node in plan.values() if node.kind == "tensor")


@pytree_dataclass(meta=("in_dim", "degrees", "width", "degree_widths"))
class PolySketchParams:
    nodes: dict  # str(key) -> TensorSRHTParams or SRHTParams
    in_dim: int
    degrees: tuple[int, ...]
    width: int
    degree_widths: tuple = ()  # ((degree, width), ...): the nodes a degree feeds are at least this wide

    @property
    def tensor_width(self) -> int:
        """Summed output width of the tree's TensorSRHT nodes (`tensor_width`)."""
        return tensor_width(self.in_dim, self.degrees, self.width, self.degree_widths)

    def out_dims(self) -> dict[int, int]:
        plan = _plan(self.in_dim, self.degrees, self.width, self.degree_widths)
        levels = num_levels(max(self.degrees))
        return {j: plan[(levels, 0, j)].width for j in self.degrees}


def poly_sketch_init(
    key: jax.Array, in_dim: int, degree: int | tuple[int, ...], width: int, dtype=jnp.float32, *,
    degree_widths: dict | None = None,
) -> PolySketchParams:
    """Parameters of a PolySketch of x (dimension in_dim) for degrees 1..degree (or the given set).

    Args:
      key: PRNG key.
      in_dim: d, the input dimension.
      degree: q (sketch every degree 1..q) or an explicit tuple of degrees >= 1.
      width: the output width of every node (the sketch dimension).
      degree_widths: {degree: width} to give each degree its own output width; a node is then as
        wide as the widest degree it feeds (degrees not in it use `width`).
    """
    degrees = tuple(range(1, degree + 1)) if isinstance(degree, int) else tuple(sorted(set(degree)))
    if not degrees or min(degrees) < 1:
        raise ValueError(f"degrees must be >= 1, got {degree!r}")
    if width < 1 or in_dim < 1:
        raise ValueError(f"in_dim and width must be >= 1, got {in_dim}, {width}")
    degree_widths = tuple(sorted((int(j), int(w)) for j, w in (degree_widths or {}).items()))
    plan = _plan(in_dim, degrees, width, degree_widths)
    nodes = {}
    keys = _random.split(key, len(plan))
    for k, (name, node) in zip(keys, sorted(plan.items())):
        if node.kind == "tensor":
            nodes[str(name)] = tensor_srht_init(
                k, plan[node.left].width, plan[node.right].width, node.width, dtype
            )
        elif node.kind == "srht":
            nodes[str(name)] = srht_init(k, plan[node.left].width, node.width, dtype)
    return PolySketchParams(nodes, in_dim, degrees, width, degree_widths)


def poly_sketch(params: PolySketchParams, x: jax.Array) -> dict[int, jax.Array]:
    """Sketches of x^(tensor j) along the last axis, for each degree j of `params`.

    Returns:
      {j: array (..., m_j)} with E <S_j(x), S_j(y)> = <x, y>^j.
    """
    if x.shape[-1] != params.in_dim:
        raise ValueError(f"poly_sketch: input's last axis is {x.shape[-1]}, expected {params.in_dim}")
    plan = _plan(params.in_dim, params.degrees, params.width, params.degree_widths)
    levels = num_levels(max(params.degrees))
    cache: dict[tuple, jax.Array | None] = {}

    def value(key):
        if key in cache:
            return cache[key]
        node = plan[key]
        if node.kind == "one":
            out = None
        elif node.kind == "leaf":
            out = x
        elif node.kind == "identity":
            out = value(node.left)
        elif node.kind == "srht":
            out = srht(params.nodes[str(key)], value(node.left))
        else:
            out = tensor_srht(params.nodes[str(key)], value(node.left), value(node.right))
        cache[key] = out
        return out

    return {j: value((levels, 0, j)) for j in params.degrees}


__all__ = ["PolySketchParams", "poly_sketch_init", "poly_sketch", "num_levels", "TensorSRHTParams"]

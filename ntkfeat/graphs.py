"""Deep graph networks: random edge dropping, and how fast a node kernel collapses with depth.

    from ntkfeat import graphs
    edges = graphs.edges_of(g.adjacency)                       # (N, N) bool, no self-loops
    keep = graphs.critical_keep_probability(edges)             # <d> / (<d^2> - <d>), in (0, 1]
    patterns = graphs.sample_patterns(key, edges, keep, 8)     # (8, N, N) normalized adjacencies
    graphs.kernel_spread(k)                                    # std / mean of K's normalized entries
    graphs.fit_rate(depths, spreads)                           # slope of log spread against depth

Over-smoothing in kernel terms (Huang, Li, Du, Yin, Xu, Chen, Zhang, ICLR 2022, arXiv 2103.03113):
each Aggregate maps the node kernel K to A^T K A, and the normalized kernel
Kn_ij = K_ij / sqrt(K_ii K_jj) of a deep GCN tends to the all-ones matrix, every node alike, at an
exponential rate in depth. `kernel_spread` measures the distance to that limit,

    spread(K) = std(Kn) / mean(Kn) = |Kn / mean(Kn) - 1 1^T|_F / N     (entries of the N x N matrix),

and `fit_rate` its exponential rate: the least-squares slope r of log spread against depth L, so
spread ~ C exp(r L) (r < 0: collapse; exp(r) is the factor per layer).

Random edge dropping (DropEdge, Rong et al., ICLR 2020): each undirected edge is kept independently
with probability `keep`, self-loops always; each pattern is then GCN-normalized,
D^(-1/2) (A_s + I) D^(-1/2), and one pattern serves every Aggregate of the network. The kernel of
the remedy is the mean over patterns, E_s K(A_s); with features, the (scaled) concatenation of each
pattern's features. `critical_keep_probability` picks `keep` from the degrees alone: it is the bond
percolation threshold of a random graph with the same degree sequence (Molloy and Reed's criterion
<d^2> / <d> = 2 on the kept graph), the keep rate at which the sampled graph is on the edge of
falling apart into small components. This is our reading of the paper's "connectivity-aware,
graph-adaptive" Critical DropEdge; its exact rule was not available to us.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def edges_of(adjacency) -> np.ndarray:
    """The edge set (N, N) bool of an adjacency, normalized or not: its nonzero off-diagonal entries.

    Raises ValueError unless `adjacency` is square and its nonzero pattern symmetric.
    """
    a = np.asarray(adjacency)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be a square (N, N) matrix, got shape {a.shape}")
    edges = a != 0
    np.fill_diagonal(edges, False)
    if not np.array_equal(edges, edges.T):
        raise ValueError("adjacency must be symmetric (an undirected graph)")
    return edges


def gcn_normalize(a: jnp.ndarray) -> jnp.ndarray:
    """D^(-1/2) (A + I) D^(-1/2) of a symmetric 0/1 adjacency A (N, N) without self-loops; jit-able.

    The same normalization as `ntkfeat.data.graphs.normalized_adjacency`, in JAX, so that sampled
    patterns are normalized on the device where they are drawn.
    """
    a = a + jnp.eye(a.shape[-1], dtype=a.dtype)
    d = jax.lax.rsqrt(a.sum(axis=-1))  # >= 1: the self-loop
    return a * d[..., :, None] * d[..., None, :]


def drop_edges(key, edges, keep) -> jnp.ndarray:
    """One DropEdge pattern: each undirected edge kept independently with probability `keep`.

    Args:
      key: a jax.random key; the same key gives the same pattern.
      edges: (N, N) bool or 0/1, symmetric, no self-loops (`edges_of`).
      keep: probability in [0, 1] of keeping an edge.

    Returns:
      (N, N) float32 0/1 symmetric adjacency, a subset of `edges`, without self-loops.
    """
    edges = jnp.asarray(edges, bool)
    n = edges.shape[-1]
    # One coin per unordered pair (the upper triangle), mirrored: the graph stays undirected.
    coins = jax.random.bernoulli(key, keep, (n, n))
    upper = jnp.triu(coins & edges, k=1)
    return (upper | upper.T).astype(jnp.float32)


def sample_patterns(key, edges, keep, num: int) -> jnp.ndarray:
    """`num` GCN-normalized DropEdge patterns (num, N, N) float32, from `jax.random.split(key, num)`.

    Pattern s is gcn_normalize(drop_edges(keys[s], edges, keep)); keep = 1 gives num copies of the
    graph's own normalized adjacency.
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if not 0.0 <= float(keep) <= 1.0:
        raise ValueError(f"keep must be a probability in [0, 1], got {keep!r}")
    keys = jax.random.split(key, num)
    return jax.vmap(lambda k: gcn_normalize(drop_edges(k, edges, keep)))(keys)


def critical_keep_probability(edges) -> float:
    """The keep probability at the bond percolation threshold of the graph's degree sequence.

    p_c = <d> / (<d^2> - <d>), with d the node degrees (Molloy-Reed: a random graph with these
    degrees, each edge kept with probability p, has a giant component for p > p_c), clipped to
    (0, 1]. For an Erdos-Renyi graph of mean degree c this is 1 / c. A graph without a node of
    degree 2 or more (no path of length 2) gives 1: nothing to drop.
    """
    d = np.asarray(edges, bool).sum(axis=1).astype(np.float64)
    mean, second = d.mean(), (d**2).mean()
    if second - mean <= 0:
        return 1.0
    return float(min(1.0, mean / (second - mean)))


def kernel_spread(k) -> float:
    """std / mean of the entries of the normalized kernel Kn_ij = K_ij / sqrt(K_ii K_jj) (module
    docstring): 0 exactly when every node has the same normalized kernel row (the collapsed limit).

    Args:
      k: (N, N) kernel matrix with a positive diagonal.
    """
    k = np.asarray(k, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"k must be a square (N, N) matrix, got shape {k.shape}")
    diag = np.diag(k)
    if not np.all(diag > 0):
        raise ValueError("k must have a positive diagonal")
    kn = k / np.sqrt(np.outer(diag, diag))
    return float(kn.std() / kn.mean())


def fit_rate(depths, spreads) -> tuple[float, float]:
    """(r, c): the least-squares fit log spread = c + r L over the given depths L.

    r is the exponential rate per layer (negative while the kernel collapses); exp(r) is the factor
    by which the spread shrinks per layer. Needs two distinct depths and positive spreads.
    """
    depths, spreads = np.asarray(depths, np.float64), np.asarray(spreads, np.float64)
    if depths.shape != spreads.shape or depths.ndim != 1 or len(np.unique(depths)) < 2:
        raise ValueError("fit_rate needs matching 1-D depths and spreads with at least two distinct depths")
    if not np.all(spreads > 0):
        raise ValueError(f"spreads must be positive to take logs, got {spreads}")
    r, c = np.polyfit(depths, np.log(spreads), 1)
    return float(r), float(c)


def second_eigenvalue(adjacency) -> float:
    """|lambda_2| of a symmetric normalized adjacency: the largest eigenvalue modulus after the top one.

    Why it matters: with A = D^(-1/2) (A + I) D^(-1/2), A^L x tends to its component on the top
    eigenvector (sqrt of the degrees plus one, eigenvalue 1) like |lambda_2|^L, so linear
    aggregation alone would shrink a kernel's spread by about lambda_2^2 per layer (rate 2 log|lambda_2|);
    on a disconnected graph |lambda_2| = 1 (no collapse across components).
    """
    w = np.linalg.eigvalsh(np.asarray(adjacency, np.float64))
    w = np.sort(np.abs(w))
    return float(w[-2])


__all__ = ["critical_keep_probability", "drop_edges", "edges_of", "fit_rate", "gcn_normalize", "kernel_spread",
           "sample_patterns", "second_eigenvalue"]

"""Graphs for node classification: a stochastic block model, generated from a seed.

    g = stochastic_block_model(nodes=600, blocks=3, p_in=0.05, p_out=0.01, channels=16, signal=0.5, seed=0)
    g.x (600, 16), g.adjacency (600, 600), g.labels (600,)

Each node belongs to one of `blocks` equal communities; an edge joins two nodes of one community
with probability p_in and of two communities with p_out. Node features are the community's mean
(a random Gaussian vector of norm `signal` sqrt(channels)) plus standard Gaussian noise, so that
the graph and the features both carry the labels. The adjacency is the symmetric normalization
of graph convolutional networks, D^(-1/2) (A + I) D^(-1/2) (Kipf and Welling, 2017): repeated
aggregation averages features over growing neighbourhoods, which is what makes deep graph
networks over-smooth (their node kernels converge to a function of the degrees alone).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Graph(NamedTuple):
    x: np.ndarray  # (nodes, channels) float32 features
    adjacency: np.ndarray  # (nodes, nodes) float32, normalized, symmetric
    labels: np.ndarray  # (nodes,) int64 communities


def normalized_adjacency(a: np.ndarray) -> np.ndarray:
    """D^(-1/2) (A + I) D^(-1/2) of a symmetric 0/1 adjacency A (self-loops added)."""
    a = np.asarray(a, np.float64) + np.eye(len(a))
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return (a * d[:, None] * d[None, :]).astype(np.float32)


def stochastic_block_model(nodes: int = 600, blocks: int = 3, p_in: float = 0.05, p_out: float = 0.01,
                           channels: int = 16, signal: float = 0.5, seed: int = 0) -> Graph:
    """A seeded stochastic block model graph with noisy community features (module docstring)."""
    for name, value in (("nodes", nodes), ("blocks", blocks), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if blocks > nodes:
        raise ValueError(f"blocks={blocks} exceeds nodes={nodes}")
    for name, value in (("p_in", p_in), ("p_out", p_out)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    if not float(signal) >= 0:
        raise ValueError(f"signal must be >= 0, got {signal!r}")
    rng = np.random.default_rng(seed)
    labels = np.arange(nodes) % blocks
    rng.shuffle(labels)
    same = labels[:, None] == labels[None, :]
    upper = np.triu(rng.random((nodes, nodes)) < np.where(same, p_in, p_out), k=1)
    a = (upper | upper.T).astype(np.float64)
    means = rng.normal(size=(blocks, channels))
    means *= signal * np.sqrt(channels) / np.linalg.norm(means, axis=1, keepdims=True)
    x = means[labels] + rng.normal(size=(nodes, channels))
    return Graph(x.astype(np.float32), normalized_adjacency(a), labels.astype(np.int64))


__all__ = ["Graph", "normalized_adjacency", "stochastic_block_model"]

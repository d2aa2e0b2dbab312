"""Zachary's karate club (1977): a real 34-node social graph, loaded offline from networkx.

    from ntkfeat.data.karate import karate_club
    g = karate_club()       # g.x (34, 34) one-hot node ids, g.adjacency (34, 34), g.labels (34,) 0/1

The 78 friendships between club members, and the two factions the club split into (label 0:
"Mr. Hi", label 1: "Officer"). networkx ships the graph in its source, so no download is needed;
it is the only real graph with classes that a package reachable here ships: the citation graphs of
the graph-network literature (Cora, Citeseer, Pubmed) are downloaded at run time by the packages
that offer them (torch-geometric, dgl, ogb, spektral). The graph has no node features; the usual
stand-in is the identity (one channel per node), so that only the graph separates the classes.
The adjacency gets the GCN normalization of `ntkfeat.data.graphs`, edge weights ignored.
"""

from __future__ import annotations

import numpy as np

from ntkfeat.data.graphs import Graph, normalized_adjacency


def karate_club() -> Graph:
    """The karate club graph (module docstring); needs networkx (`pip install networkx`)."""
    try:
        import networkx as nx
    except ImportError as e:
        raise ImportError("karate_club() reads the graph shipped with networkx: pip install networkx") from e
    g = nx.karate_club_graph()
    nodes = sorted(g.nodes())
    index = {v: i for i, v in enumerate(nodes)}
    a = np.zeros((len(nodes), len(nodes)))
    for u, v in g.edges():
        a[index[u], index[v]] = a[index[v], index[u]] = 1.0
    labels = np.array([g.nodes[v]["club"] != "Mr. Hi" for v in nodes], np.int64)
    return Graph(np.eye(len(nodes), dtype=np.float32), normalized_adjacency(a), labels)


__all__ = ["karate_club"]

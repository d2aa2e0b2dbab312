"""Over-smoothing of graph networks: node classification accuracy and kernel collapse against depth,
exact node NTK vs features, with and without remedies (residual connections, random edge dropping).

    python -m experiments.graph_depth configs/gcn_sbm.yaml                # results in runs/gcn_sbm-<time>/
    python -m experiments.graph_depth configs/gcn_karate.yaml             # a real graph (needs networkx)
    python -m experiments.graph_depth configs/gcn_sbm.yaml --out DIR --set depths=[1,2] --set dims=[1024]

One graph: a stochastic block model from `ntkfeat.data.graphs.stochastic_block_model` (communities
are the classes), or Zachary's karate club (`ntkfeat.data.karate`, the club's two factions). For
each depth L the plain network is a GCN of ntkfeat layers,

    [Aggregate, Dense(W_std=sqrt 2), Relu] x L, Aggregate, Dense(W_std=1),

with the graph's normalized adjacency as the Aggregate pattern. The whole graph is one input:
x (1, N, C), pattern (1, N, N). The exact node NTK is neural-tangents' kernel_fn(x, x, 'ntk',
pattern=(A, A))[0, 0] (N, N), computed in float64; the features are feature_fn(params, x,
pattern=A)[0] (N, m), one row per node. Classification is one-hot ridge regression (targets
e_label - 1/k) on `n_train` seeded random training nodes, lambda chosen by `selection` (exact:
`select_lambda_kernel`, then `kernel_ridge_fit`; features: `select_lambda`, then `fit_ridge`),
accuracy on every other node. kernel_rel_fro is |Phi Phi^T - K|_F / |K|_F over all nodes.

Collapse: `spread` is std / mean of the normalized kernel's entries, K_ij / sqrt(K_ii K_jj)
(`ntkfeat.graphs.kernel_spread`; 0 when every node looks alike), of the exact kernel or of
Phi Phi^T. Its rate is the least-squares slope of log spread against depth over the depths
>= `fit_from` (`ntkfeat.graphs.fit_rate`; spread ~ exp(rate L)); exact spreads below 1e-12
(float64 roundoff of entries near 1) are left out of the fit.

Remedies (`remedies`):
- plain: the GCN above.
- residual: the same Aggregates and Denses with identity shortcuts around each later block,
  Aggregate, Dense, [FanOut(2), parallel(serial(Relu, Aggregate, Dense(W_std=alpha sqrt 2)),
  Identity), FanInSum] x (L - 1), Relu, Aggregate, Dense(W_std=1): h <- h + alpha Dense(A relu(h))
  on pre-activations (neural-tangents' FanInSum needs Gaussian branches, so the shortcut carries
  the Dense outputs), and the kernels of the two branches add.
- drop_edge: the plain GCN on `drop_edge.patterns` random subgraphs (`ntkfeat.graphs.sample_patterns`:
  each undirected edge kept with probability `keep`, independently, self-loops always, each
  pattern GCN-normalized and shared by every Aggregate), drawn once from
  jax.random.PRNGKey(drop_edge.seed) and the same at every depth. keep: critical is the bond
  percolation threshold <d> / (<d^2> - <d>) of the graph's degrees
  (`ntkfeat.graphs.critical_keep_probability`). The exact kernel is the mean of the patterns'
  exact kernels; the features concatenate each pattern's features (dim // patterns each, from
  independent keys) divided by sqrt(patterns), so their Gram is the mean of the patterns' Grams
  at the same total dim.

Config (every key optional, defaults shown; unknown keys are refused with the allowed ones):

    name: gcn_sbm                   # names the output folder (default: the file stem)
    seed: 0                         # training nodes and feature keys (jax.random.PRNGKey(seed))
    graph: {source: sbm, nodes: 600, blocks: 3, p_in: 0.03, p_out: 0.01, channels: 16, signal: 0.3,
            seed: 0}                # source: karate takes no other key
    n_train: 120                    # training nodes (the rest are test nodes)
    depths: [1, 2, 4, 8, 16]        # L, the number of Aggregate + Dense blocks before the readout's
    dims: [8192]                    # feature dims of the feature methods
    methods: [exact, ntk_sketch, ntk_random_features]
    selection: loo                  # loo | gcv | kfold | holdout (ntkfeat.solvers)
    remedies: [plain]               # plain | residual | drop_edge
    residual: {alpha: 1.0}          # branch scale
    drop_edge: {keep: critical, patterns: 8, seed: 0}   # keep: critical or a probability in (0, 1]
    fit_from: 4                     # smallest depth in the rate fit

Outputs in --out (default runs/<name>-<YYYYmmdd-HHMMSS>): results.json (config, records, rates,
graph facts, versions, git commit), results.csv, rates.csv, config.yaml (resolved),
accuracy_vs_depth.png (one line per remedy, method and dim) and spread_vs_depth.png (log-y, fitted
rates in the legend); the tables are printed.
"""

from __future__ import annotations

import pathlib
import re
import sys
import time

import numpy as np

from experiments import _script
from ntkfeat.runs import report
from ntkfeat.runs.run import _git, _now, _versions
from ntkfeat.runs.config import (ConfigError, check_keys, choice, integer, list_of, number)

METHODS = ("exact", "ntk_sketch", "ntk_random_features")
SELECTIONS = ("loo", "gcv", "kfold", "holdout")
REMEDIES = ("plain", "residual", "drop_edge")
GRAPH_SOURCES = ("sbm", "karate")
RECORD_FIELDS = ("remedy", "depth", "method", "label", "dim", "out_dim", "n_train", "n_test", "lambda",
                 "test_accuracy", "train_accuracy", "kernel_rel_fro", "spread", "seconds")
RATE_FIELDS = ("remedy", "method", "label", "dim", "rate", "factor_per_layer", "fit_depths")
# Exact spreads are std / mean of entries that all tend to 1: below this, float64 roundoff of the
# entries (about 1e-16 each) is what is measured, not the kernel.
SPREAD_FLOOR = 1e-12


def _probability(value, path):
    return number(0.0, maximum=1.0 + 1e-12)(value, path)


_GRAPH_FIELDS = {  # ntkfeat.data.graphs.stochastic_block_model's arguments, and the source
    "source": (choice(*GRAPH_SOURCES), "sbm"),
    "nodes": (integer(2), 600),
    "blocks": (integer(2), 3),
    "p_in": (_probability, 0.03),
    "p_out": (_probability, 0.01),
    "channels": (integer(1), 16),
    "signal": (number(0.0), 0.3),
    "seed": (integer(0), 0),
}
KARATE_NODES = 34


def _keep(value, path):
    if value == "critical":
        return value
    try:
        return number(0.0, exclusive=True, maximum=1.0 + 1e-12)(value, path)
    except ConfigError:
        raise ConfigError(f"{path}: expected 'critical' or a probability in (0, 1], got {value!r}") from None


_RESIDUAL_FIELDS = {"alpha": (number(0.0, exclusive=True), 1.0)}
_DROP_EDGE_FIELDS = {"keep": (_keep, "critical"), "patterns": (integer(1), 8), "seed": (integer(0), 0)}


def _unique(check_list):
    def check(value, path):
        value = check_list(value, path)
        for i, v in enumerate(value):
            if v in value[:i]:
                raise ConfigError(f"{path}[{i}]: {v!r} is listed twice")
        return value

    return check


def _name(value, path):
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise ConfigError(f"{path}: expected letters, digits, '.', '_' or '-' (it names the output folder), "
                          f"got {value!r}")
    return value


_FIELDS = {
    "name": (_name, None),
    "seed": (integer(0), 0),
    "graph": (lambda v, p: v, None),  # checked by validate()
    "n_train": (integer(2), 120),
    "depths": (_unique(list_of(integer(1), what="list of integers >= 1")), [1, 2, 4, 8, 16]),
    "dims": (_unique(list_of(integer(2), what="list of integers >= 2")), [8192]),
    "methods": (_unique(list_of(choice(*METHODS), what=f"list of methods ({', '.join(METHODS)})")), list(METHODS)),
    "selection": (choice(*SELECTIONS), "loo"),
    "remedies": (_unique(list_of(choice(*REMEDIES), what=f"list of remedies ({', '.join(REMEDIES)})")), ["plain"]),
    "residual": (lambda v, p: v, None),  # checked by validate()
    "drop_edge": (lambda v, p: v, None),  # checked by validate()
    "fit_from": (integer(1), 4),
}


def graph_nodes(graph_config: dict) -> int:
    return KARATE_NODES if graph_config["source"] == "karate" else graph_config["nodes"]


def validate(raw: dict, default_name: str = "gcn") -> dict:
    """The resolved config of a raw mapping (defaults filled in); ConfigError naming the key otherwise."""
    config = check_keys(raw, "", _FIELDS)
    config["name"] = config["name"] or default_name
    raw_graph = raw.get("graph") or {}
    config["graph"] = check_keys(raw_graph, "graph", _GRAPH_FIELDS, where=" for the graph generator")
    g = config["graph"]
    if g["source"] == "karate":
        extra = sorted(k for k in raw_graph if k != "source")
        if extra:
            raise ConfigError(f"graph.{extra[0]}: the karate club graph takes no generator settings "
                              f"(only graph.source)")
        config["graph"] = {"source": "karate"}
    elif g["blocks"] > g["nodes"]:
        raise ConfigError(f"graph.blocks: {g['blocks']} blocks exceed graph.nodes={g['nodes']}")
    nodes = graph_nodes(config["graph"])
    if config["n_train"] >= nodes:
        raise ConfigError(f"n_train: {config['n_train']} leaves no test node of graph.nodes={nodes}")
    config["residual"] = check_keys(raw.get("residual") or {}, "residual", _RESIDUAL_FIELDS)
    config["drop_edge"] = check_keys(raw.get("drop_edge") or {}, "drop_edge", _DROP_EDGE_FIELDS)
    patterns = config["drop_edge"]["patterns"]
    if "drop_edge" in config["remedies"] and any(m != "exact" for m in config["methods"]):
        small = [d for d in config["dims"] if d // patterns < 2]
        if small:
            raise ConfigError(f"dims: {small[0]} is split over drop_edge.patterns={patterns} patterns "
                              f"(dim // patterns features each): use a dim >= {2 * patterns}")
    return config


def load_config(path, overrides=()) -> dict:
    return _script.load_config(path, overrides, validate)


# --------------------------------------------------------------------------- the experiment


def gcn(depth: int, remedy: str = "plain", alpha: float = 1.0):
    """The network of a remedy at depth L (module docstring); drop_edge uses the plain network."""
    import ntkfeat as nf

    if remedy != "residual":
        layers = []
        for _ in range(depth):
            layers += [nf.Aggregate(), nf.Dense(512, W_std=2**0.5), nf.Relu()]
        return nf.serial(*layers, nf.Aggregate(), nf.Dense(1, W_std=1.0))
    # The shortcut carries pre-activations: neural-tangents adds branch kernels only when both
    # branches are Gaussian (a Dense output or a sum of them), and the branch's own Dense makes the
    # two independent. alpha -> 0 leaves the depth-1 plain GCN.
    branch = nf.serial(nf.Relu(), nf.Aggregate(), nf.Dense(512, W_std=alpha * 2**0.5))
    block = nf.serial(nf.FanOut(2), nf.parallel(branch, nf.Identity()), nf.FanInSum())
    layers = [nf.Aggregate(), nf.Dense(512, W_std=2**0.5)] + [block] * (depth - 1)
    return nf.serial(*layers, nf.Relu(), nf.Aggregate(), nf.Dense(1, W_std=1.0))


def load_graph(graph_config: dict):
    """The config's graph: an `ntkfeat.data.graphs.Graph`."""
    if graph_config["source"] == "karate":
        from ntkfeat.data.karate import karate_club

        return karate_club()
    from ntkfeat.data.graphs import stochastic_block_model

    return stochastic_block_model(**{k: v for k, v in graph_config.items() if k != "source"})


def remedy_patterns(remedy: str, adjacency, drop_edge: dict):
    """(patterns (S, N, N) float32, keep or None): the Aggregate patterns a remedy averages over."""
    import jax

    from ntkfeat import graphs

    if remedy != "drop_edge":
        return np.asarray(adjacency, np.float32)[None], None
    edges = graphs.edges_of(adjacency)
    keep = drop_edge["keep"]
    keep = graphs.critical_keep_probability(edges) if keep == "critical" else float(keep)
    patterns = graphs.sample_patterns(jax.random.PRNGKey(drop_edge["seed"]), edges, keep, drop_edge["patterns"])
    return np.asarray(patterns), keep


def split_nodes(labels: np.ndarray, n_train: int, seed: int):
    perm = np.random.default_rng(seed).permutation(len(labels))
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def _accuracy(scores, labels) -> float:
    return float(np.mean(np.argmax(np.asarray(scores), axis=1) == labels))


def exact_node_kernel(kernel_fn, x, adjacency) -> np.ndarray:
    """The exact node NTK (N, N) in float64 of a graph given as x (1, N, C), adjacency (1, N, N)."""
    import jax

    with jax.enable_x64(True):
        x64, a64 = np.asarray(x, np.float64), np.asarray(adjacency, np.float64)
        k = kernel_fn(x64, x64, "ntk", pattern=(a64, a64))
        return np.asarray(k, np.float64)[0, 0]


def node_features(init_fn, feature_fn, method, x, adjacency, seed: int) -> np.ndarray:
    import jax

    params = init_fn(jax.random.PRNGKey(seed), x.shape, method)
    return np.asarray(feature_fn(params, x, pattern=adjacency), np.float64)[0]


def averaged_exact_kernel(kernel_fn, x, patterns) -> np.ndarray:
    """The mean over patterns (S, N, N) of the exact node NTKs (N, N), float64."""
    return np.mean([exact_node_kernel(kernel_fn, x, p[None]) for p in patterns], axis=0)


def averaged_node_features(init_fn, feature_fn, make_method, dim: int, x, patterns, seed: int) -> np.ndarray:
    """Features (N, m) whose Gram is the mean over patterns of each pattern's Gram.

    One pattern: node_features at `dim` with jax.random.PRNGKey(seed). S patterns: pattern s gets
    dim // S features from the s-th key of jax.random.split(PRNGKey(seed), S) (independent maps,
    so their errors average out as one map's at the total dim), concatenated and divided by sqrt S.
    """
    import jax

    if len(patterns) == 1:
        return node_features(init_fn, feature_fn, make_method(dim), x, patterns[:1], seed)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(patterns))
    method = make_method(dim // len(patterns))
    parts = []
    for key, p in zip(keys, patterns):
        params = init_fn(key, x.shape, method)
        parts.append(np.asarray(feature_fn(params, x, pattern=p[None]), np.float64)[0])
    return np.concatenate(parts, axis=1) / np.sqrt(len(patterns))


def classify_kernel(k, labels, train, test, num_classes, selection, seed):
    from ntkfeat import solvers

    y = solvers.one_hot_targets(labels[train], num_classes)
    sel = solvers.select_lambda_kernel(k[np.ix_(train, train)], y, method=selection, seed=seed)
    alpha = solvers.kernel_ridge_fit(k[np.ix_(train, train)], y, sel.lam)
    return (sel.lam, _accuracy(solvers.kernel_ridge_predict(k[np.ix_(test, train)], alpha), labels[test]),
            _accuracy(solvers.kernel_ridge_predict(k[np.ix_(train, train)], alpha), labels[train]))


def classify_features(phi, labels, train, test, num_classes, selection, seed):
    from ntkfeat import solvers

    y = solvers.one_hot_targets(labels[train], num_classes)
    sel = solvers.select_lambda(phi[train], y, method=selection, seed=seed)
    model = solvers.fit_ridge(phi[train], y, sel.lam)
    return (sel.lam, _accuracy(solvers.predict(model, phi[test]), labels[test]),
            _accuracy(solvers.predict(model, phi[train]), labels[train]))


def _label(remedy, method, config) -> str:
    return method if config["remedies"] == ["plain"] else f"{remedy} {method}"


def run(config: dict, out: pathlib.Path | None = None, log=print) -> list:
    """Every (remedy, depth, method, dim) record; writes the outputs into `out` if given, after each depth."""
    import ntkfeat as nf
    from ntkfeat import graphs
    from ntkfeat.metrics import relative_frobenius

    g = load_graph(config["graph"])
    x = g.x[None]
    train, test = split_nodes(g.labels, config["n_train"], config["seed"])
    k_classes = int(g.labels.max()) + 1
    seed, selection = config["seed"], config["selection"]
    records, meta = [], _metadata(config, g)
    for remedy in config["remedies"]:
        patterns, keep = remedy_patterns(remedy, g.adjacency, config["drop_edge"])
        if keep is not None:
            kept = [float((graphs.edges_of(p).sum()) / graphs.edges_of(g.adjacency).sum()) for p in patterns]
            meta["drop_edge"] = {"keep": keep, "patterns": len(patterns), "kept_fraction": float(np.mean(kept))}
            log(f"drop_edge: keep {keep:.4f}, {len(patterns)} patterns, kept fraction {np.mean(kept):.4f}")
        for depth in config["depths"]:
            init_fn, feature_fn, kernel_fn = gcn(depth, remedy, config["residual"]["alpha"])
            t = time.perf_counter()
            k = averaged_exact_kernel(kernel_fn, x, patterns)
            exact_seconds = time.perf_counter() - t
            spread = graphs.kernel_spread(k)
            base = {"remedy": remedy, "depth": depth, "n_train": len(train), "n_test": len(test)}
            if "exact" in config["methods"]:
                t = time.perf_counter()
                lam, acc, train_acc = classify_kernel(k, g.labels, train, test, k_classes, selection, seed)
                records.append(dict(base, method="exact", label=_label(remedy, "exact", config), dim=None,
                                    out_dim=None, **{"lambda": lam}, test_accuracy=acc, train_accuracy=train_acc,
                                    kernel_rel_fro=None, spread=spread,
                                    seconds=exact_seconds + time.perf_counter() - t))
                log(f"{remedy:9s} depth {depth:3d}  exact                       accuracy {acc:.4f}  "
                    f"spread {spread:.3e}")
            for name in config["methods"]:
                if name == "exact":
                    continue
                make = (lambda d: nf.Sketch(dim=d)) if name == "ntk_sketch" else (lambda d: nf.RandomFeatures(dim=d))
                for dim in config["dims"]:
                    t = time.perf_counter()
                    phi = averaged_node_features(init_fn, feature_fn, make, dim, x, patterns, seed)
                    lam, acc, train_acc = classify_features(phi, g.labels, train, test, k_classes, selection, seed)
                    gram = phi @ phi.T
                    err, phi_spread = relative_frobenius(gram, k), graphs.kernel_spread(gram)
                    records.append(dict(base, method=name, label=_label(remedy, name, config), dim=dim,
                                        out_dim=phi.shape[1], **{"lambda": lam}, test_accuracy=acc,
                                        train_accuracy=train_acc, kernel_rel_fro=err, spread=phi_spread,
                                        seconds=time.perf_counter() - t))
                    log(f"{remedy:9s} depth {depth:3d}  {name:20s} {dim:6d} accuracy {acc:.4f}  "
                        f"kernel_err {err:.4f}  spread {phi_spread:.3e}")
            if out is not None:
                write_outputs(out, config, records, dict(meta, status="running"))
    if out is not None:
        write_outputs(out, config, records, dict(meta, status="finished", end=_now()))
    return records


def fitted_rates(records, fit_from: int) -> list:
    """One rate per (remedy, method, dim): `ntkfeat.graphs.fit_rate` over depths >= fit_from whose
    exact spread is above SPREAD_FLOOR (rate None with fewer than two such depths)."""
    from ntkfeat import graphs

    floor = {(r["remedy"], r["depth"]) for r in records if r["method"] == "exact" and r["spread"] <= SPREAD_FLOOR}
    series = {}
    for r in records:
        if r["depth"] >= fit_from and (r["remedy"], r["depth"]) not in floor and r["spread"] > 0:
            series.setdefault((r["remedy"], r["method"], r["label"], r["dim"]), []).append((r["depth"], r["spread"]))
    keys = list(dict.fromkeys((r["remedy"], r["method"], r["label"], r["dim"]) for r in records))
    rates = []
    for key in keys:
        points = sorted(series.get(key, []))
        rate = None
        if len(points) >= 2:
            rate, _ = graphs.fit_rate(*zip(*points))
        rates.append(dict(zip(("remedy", "method", "label", "dim"), key), rate=rate,
                          factor_per_layer=None if rate is None else float(np.exp(rate)),
                          fit_depths=[d for d, _ in points]))
    return rates


def _metadata(config, g) -> dict:
    import jax

    from ntkfeat import graphs

    edges = graphs.edges_of(g.adjacency)
    facts = {"nodes": int(len(g.labels)), "edges": int(edges.sum() // 2), "classes": int(g.labels.max()) + 1,
             "mean_degree": float(edges.sum(axis=1).mean()),
             "lambda2": graphs.second_eigenvalue(g.adjacency),
             "critical_keep": graphs.critical_keep_probability(edges)}
    generator = ("ntkfeat.data.karate.karate_club" if config["graph"]["source"] == "karate"
                 else "ntkfeat.data.graphs.stochastic_block_model")
    return {"command": " ".join(sys.argv), "start": _now(), "versions": _versions(), "git": _git(),
            "device": str(jax.devices()[0]), "graph_generator": generator, "graph_facts": facts}


def _series(records, field="test_accuracy"):
    """{(label, method, dim): [(depth, value), ...]} in first-seen order."""
    out = {}
    for r in records:
        out.setdefault((r["label"], r["method"], r["dim"]), []).append((r["depth"], r[field]))
    return out


_LINESTYLES = {"exact": "-", "ntk_sketch": "--", "ntk_random_features": ":"}
_MARKERS = {"exact": "*", "ntk_sketch": "o", "ntk_random_features": "s"}


def _style(remedy, method, i, config):
    import matplotlib.pyplot as plt

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if config["remedies"] == ["plain"]:
        if method == "exact":
            return {"color": "black", "marker": "*", "markersize": 10}
        return {"marker": "o", "color": colours[i % len(colours)]}
    colour = colours[config["remedies"].index(remedy) % len(colours)]
    return {"color": colour, "linestyle": _LINESTYLES[method], "marker": _MARKERS[method],
            "markersize": 8 if method == "exact" else 4}


def _title(config, g_nodes):
    g = config["graph"]
    graph = (f"karate club ({g_nodes} nodes)" if g["source"] == "karate"
             else f"SBM {g['nodes']} nodes / {g['blocks']} blocks")
    return f"GCN node NTK, {graph}, {config['n_train']} train nodes"


def plot(records, config, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    remedy_of = {r["label"]: r["remedy"] for r in records}
    for i, ((label, method, dim), points) in enumerate(_series(records).items()):
        depths, accs = zip(*sorted(points))
        ax.plot(depths, accs, label=label if dim is None else f"{label} {dim}",
                **_style(remedy_of[label], method, i, config))
    ax.set_xscale("log", base=2)
    ax.set_xticks(config["depths"], [str(d) for d in config["depths"]])
    ax.set_xlabel("depth L (Aggregate + Dense blocks)")
    ax.set_ylabel("test accuracy")
    ax.set_title(_title(config, records[0]["n_train"] + records[0]["n_test"]), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    report._save(fig, path)
    plt.close(fig)


def plot_spread(records, rates, config, path) -> None:
    """Spread against depth on log-y axes, one line per remedy, method and dim, rates in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate_of = {(r["label"], r["dim"]): r["rate"] for r in rates}
    remedy_of = {r["label"]: r["remedy"] for r in records}
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, ((label, method, dim), points) in enumerate(_series(records, "spread").items()):
        points = [(d, s) for d, s in sorted(points) if s > 0]
        if not points:
            continue
        rate = rate_of.get((label, dim))
        name = label if dim is None else f"{label} {dim}"
        name += "" if rate is None else f" (rate {rate:+.3f}/layer)"
        ax.plot(*zip(*points), label=name, **_style(remedy_of[label], method, i, config))
    ax.set_yscale("log")
    ax.set_xlabel("depth L (Aggregate + Dense blocks)")
    ax.set_ylabel("spread: std / mean of K_ij / sqrt(K_ii K_jj)")
    ax.set_title(_title(config, records[0]["n_train"] + records[0]["n_test"])
                 + f"\nrates: slope of log spread, depths >= {config['fit_from']}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    report._save(fig, path)
    plt.close(fig)


def write_outputs(out: pathlib.Path, config, records, meta) -> None:
    rates = fitted_rates(records, config["fit_from"])
    report.write_json(out / "results.json", dict(meta, config=config, records=records, rates=rates))
    report.write_csv(out / "results.csv", records, fields=RECORD_FIELDS)
    report.write_csv(out / "rates.csv", rates, fields=RATE_FIELDS)
    if records:
        plot(records, config, out / "accuracy_vs_depth.png")
        plot_spread(records, rates, config, out / "spread_vs_depth.png")


def _table(rows) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(records, field: str = "test_accuracy", fmt: str = "{:.3f}") -> str:
    """One row per remedy, method and dim, one column per depth (accuracy by default)."""
    series = _series(records, field)
    depths = sorted({r["depth"] for r in records})
    rows = [["method", "dim"] + [f"L={d}" for d in depths]]
    for (label, method, dim), points in series.items():
        value = dict(points)
        rows.append([label, "-" if dim is None else str(dim)]
                    + [fmt.format(value[d]) if d in value else "-" for d in depths])
    return _table(rows)


def format_rates(rates) -> str:
    rows = [["method", "dim", "rate/layer", "factor/layer", "fit depths"]]
    for r in rates:
        rows.append([r["label"], "-" if r["dim"] is None else str(r["dim"]),
                     "-" if r["rate"] is None else f"{r['rate']:+.4f}",
                     "-" if r["rate"] is None else f"{r['factor_per_layer']:.4f}",
                     ",".join(str(d) for d in r["fit_depths"]) or "-"])
    return _table(rows)


def describe(config) -> str:
    """The plan: the graph (built), the split, the networks and the runs."""
    from ntkfeat import graphs

    g = load_graph(config["graph"])
    edges = graphs.edges_of(g.adjacency)
    features = [m for m in config["methods"] if m != "exact"]
    per_remedy = len(config["depths"]) * (("exact" in config["methods"]) + len(features) * len(config["dims"]))
    runs = len(config["remedies"]) * per_remedy
    nodes = len(g.labels)
    lines = [
        f"{config['name']}: {runs} runs",
        f"  graph ({config['graph']['source']}): {nodes} nodes, {int(edges.sum() // 2)} edges, "
        f"{int(g.labels.max()) + 1} classes, {g.x.shape[1]} channels; {config['n_train']} training / "
        f"{nodes - config['n_train']} test nodes; |lambda_2| {graphs.second_eigenvalue(g.adjacency):.4f}",
        f"  depths {config['depths']}: [Aggregate, Dense(W_std=sqrt 2), Relu] x L, Aggregate, Dense",
        f"  methods {config['methods']}, dims {config['dims']} (feature methods), lambda by {config['selection']}",
        f"  remedies {config['remedies']}; rates fitted over depths >= {config['fit_from']}",
    ]
    if "residual" in config["remedies"]:
        lines.append(f"  residual: h <- h + alpha Dense(A relu(h)), alpha {config['residual']['alpha']:g}")
    if "drop_edge" in config["remedies"]:
        d = config["drop_edge"]
        keep = graphs.critical_keep_probability(edges) if d["keep"] == "critical" else d["keep"]
        lines.append(f"  drop_edge: keep {keep:.4f} ({d['keep']}), {d['patterns']} patterns from seed {d['seed']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    started = _script.start(argv, prog="python -m experiments.graph_depth", doc=__doc__, example="configs/gcn_sbm.yaml",
                            set_example="depths=[1,2]", load=load_config, describe=describe, check_help="validate the config, build the graph, print the plan, stop")
    if isinstance(started, int):
        return started
    config, out = started
    records = run(config, out, log=lambda s: print(s, flush=True))
    print("test accuracy")
    print(format_table(records))
    print("spread (std / mean of the normalized kernel's entries)")
    print(format_table(records, "spread", "{:.2e}"))
    print(f"rate: slope of log spread against depth (depths >= {config['fit_from']})")
    print(format_rates(fitted_rates(records, config["fit_from"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

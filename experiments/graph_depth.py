"""Over-smoothing of graph networks: node classification accuracy against depth, exact node NTK vs features.

    python -m experiments.graph_depth configs/gcn_sbm.yaml                # results in runs/gcn_sbm-<time>/
    python -m experiments.graph_depth configs/gcn_sbm.yaml --out DIR --set depths=[1,2] --set dims=[1024]

One graph from `ntkfeat.data.graphs.stochastic_block_model` (communities are the classes). For each
depth L the network is a GCN of ntkfeat layers,

    [Aggregate, Dense(W_std=sqrt 2), Relu] x L, Aggregate, Dense(W_std=1),

with the graph's normalized adjacency as the Aggregate pattern. The whole graph is one input:
x (1, N, C), pattern (1, N, N). The exact node NTK is neural-tangents' kernel_fn(x, x, 'ntk',
pattern=(A, A))[0, 0] (N, N), computed in float64; the features are feature_fn(params, x,
pattern=A)[0] (N, m), one row per node. Classification is one-hot ridge regression (targets
e_label - 1/k) on `n_train` seeded random training nodes, lambda chosen by `selection` (exact:
`select_lambda_kernel`, then `kernel_ridge_fit`; features: `select_lambda`, then `fit_ridge`),
accuracy on every other node. kernel_rel_fro is |Phi Phi^T - K|_F / |K|_F over all nodes.

Repeated aggregation averages node features over ever larger neighbourhoods, so the node kernel
of a deep GCN tends to a function of the degrees alone: accuracy first rises with depth (more of
the graph is seen), then falls (over-smoothing).

Config (every key optional, defaults shown; unknown keys are refused with the allowed ones):

    name: gcn_sbm                   # names the output folder (default: the file stem)
    seed: 0                         # training nodes and feature keys (jax.random.PRNGKey(seed))
    graph: {nodes: 600, blocks: 3, p_in: 0.03, p_out: 0.01, channels: 16, signal: 0.3, seed: 0}
    n_train: 120                    # training nodes (the rest are test nodes)
    depths: [1, 2, 4, 8, 16]        # L, the number of [Aggregate, Dense, Relu] blocks
    dims: [8192]                    # feature dims of the feature methods
    methods: [exact, ntk_sketch, ntk_random_features]
    selection: loo                  # loo | gcv | kfold | holdout (ntkfeat.solvers)

Outputs in --out (default runs/<name>-<YYYYmmdd-HHMMSS>): results.json (config, records, versions,
git commit), results.csv, config.yaml (resolved) and accuracy_vs_depth.png (one line per method and
dim, exact included); the table is printed.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import time

import numpy as np

from experiments import report
from experiments.run import _git, _now, _versions, make_output_dir
from experiments.config import ConfigError, apply_override, check_keys, choice, integer, list_of, number, read_yaml

METHODS = ("exact", "ntk_sketch", "ntk_random_features")
SELECTIONS = ("loo", "gcv", "kfold", "holdout")
RECORD_FIELDS = ("depth", "method", "label", "dim", "out_dim", "n_train", "n_test", "lambda", "test_accuracy",
                 "train_accuracy", "kernel_rel_fro", "seconds")


def _probability(value, path):
    return number(0.0, maximum=1.0 + 1e-12)(value, path)


_GRAPH_FIELDS = {  # ntkfeat.data.graphs.stochastic_block_model's arguments
    "nodes": (integer(2), 600),
    "blocks": (integer(2), 3),
    "p_in": (_probability, 0.03),
    "p_out": (_probability, 0.01),
    "channels": (integer(1), 16),
    "signal": (number(0.0), 0.3),
    "seed": (integer(0), 0),
}


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
}


def validate(raw: dict, default_name: str = "gcn") -> dict:
    """The resolved config of a raw mapping (defaults filled in); ConfigError naming the key otherwise."""
    config = check_keys(raw, "", _FIELDS)
    config["name"] = config["name"] or default_name
    config["graph"] = check_keys(raw.get("graph") or {}, "graph", _GRAPH_FIELDS, where=" for the graph generator")
    g = config["graph"]
    if g["blocks"] > g["nodes"]:
        raise ConfigError(f"graph.blocks: {g['blocks']} blocks exceed graph.nodes={g['nodes']}")
    if config["n_train"] >= g["nodes"]:
        raise ConfigError(f"n_train: {config['n_train']} leaves no test node of graph.nodes={g['nodes']}")
    return config


def load_config(path, overrides=()) -> dict:
    raw = read_yaml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate(raw, default_name=pathlib.Path(path).stem)


# --------------------------------------------------------------------------- the experiment


def gcn(depth: int):
    import ntkfeat as nf

    layers = []
    for _ in range(depth):
        layers += [nf.Aggregate(), nf.Dense(512, W_std=2**0.5), nf.Relu()]
    return nf.serial(*layers, nf.Aggregate(), nf.Dense(1, W_std=1.0))


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


def run(config: dict, out: pathlib.Path | None = None, log=print) -> list:
    """Every (depth, method, dim) record; writes the outputs into `out` if given, after each depth."""
    import ntkfeat as nf
    from ntkfeat.data.graphs import stochastic_block_model
    from ntkfeat.metrics import relative_frobenius

    g = stochastic_block_model(**config["graph"])
    x, adjacency = g.x[None], g.adjacency[None]
    train, test = split_nodes(g.labels, config["n_train"], config["seed"])
    k_classes = config["graph"]["blocks"]
    seed, selection = config["seed"], config["selection"]
    records, meta = [], _metadata(config)
    for depth in config["depths"]:
        init_fn, feature_fn, kernel_fn = gcn(depth)
        t = time.perf_counter()
        k = exact_node_kernel(kernel_fn, x, adjacency)
        exact_seconds = time.perf_counter() - t
        base = {"depth": depth, "n_train": len(train), "n_test": len(test)}
        if "exact" in config["methods"]:
            t = time.perf_counter()
            lam, acc, train_acc = classify_kernel(k, g.labels, train, test, k_classes, selection, seed)
            records.append(dict(base, method="exact", label="exact", dim=None, out_dim=None, **{"lambda": lam},
                                test_accuracy=acc, train_accuracy=train_acc, kernel_rel_fro=None,
                                seconds=exact_seconds + time.perf_counter() - t))
            log(f"depth {depth:3d}  exact                       accuracy {acc:.4f}")
        for name in config["methods"]:
            if name == "exact":
                continue
            for dim in config["dims"]:
                method = nf.Sketch(dim=dim) if name == "ntk_sketch" else nf.RandomFeatures(dim=dim)
                t = time.perf_counter()
                phi = node_features(init_fn, feature_fn, method, x, adjacency, seed)
                lam, acc, train_acc = classify_features(phi, g.labels, train, test, k_classes, selection, seed)
                err = relative_frobenius(phi @ phi.T, k)
                records.append(dict(base, method=name, label=name, dim=dim, out_dim=phi.shape[1], **{"lambda": lam},
                                    test_accuracy=acc, train_accuracy=train_acc, kernel_rel_fro=err,
                                    seconds=time.perf_counter() - t))
                log(f"depth {depth:3d}  {name:20s} {dim:6d} accuracy {acc:.4f}  kernel_err {err:.4f}")
        if out is not None:
            write_outputs(out, config, records, dict(meta, status="running"))
    if out is not None:
        write_outputs(out, config, records, dict(meta, status="finished", end=_now()))
    return records


def _metadata(config) -> dict:
    import jax

    return {"command": " ".join(sys.argv), "start": _now(), "versions": _versions(), "git": _git(),
            "device": str(jax.devices()[0]), "graph_generator": "ntkfeat.data.graphs.stochastic_block_model"}


def _series(records):
    """{(method, dim): [(depth, accuracy), ...]} in first-seen order."""
    out = {}
    for r in records:
        out.setdefault((r["method"], r["dim"]), []).append((r["depth"], r["test_accuracy"]))
    return out


def plot(records, config, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, ((method, dim), points) in enumerate(_series(records).items()):
        depths, accs = zip(*sorted(points))
        style = {"color": "black", "marker": "*", "markersize": 10} if method == "exact" else {"marker": "o"}
        ax.plot(depths, accs, label=method if dim is None else f"{method} {dim}", **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(config["depths"], [str(d) for d in config["depths"]])
    ax.set_xlabel("depth L ([Aggregate, Dense, Relu] blocks)")
    ax.set_ylabel("test accuracy")
    g = config["graph"]
    ax.set_title(f"GCN node NTK, SBM {g['nodes']} nodes / {g['blocks']} blocks, {config['n_train']} train nodes",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    report._save(fig, path)
    plt.close(fig)


def write_outputs(out: pathlib.Path, config, records, meta) -> None:
    report.write_json(out / "results.json", dict(meta, config=config, records=records))
    report.write_csv(out / "results.csv", records, fields=RECORD_FIELDS)
    if records:
        plot(records, config, out / "accuracy_vs_depth.png")


def format_table(records) -> str:
    """Accuracy, one row per method and dim, one column per depth."""
    series = _series(records)
    depths = sorted({r["depth"] for r in records})
    rows = [["method", "dim"] + [f"L={d}" for d in depths]]
    for (method, dim), points in series.items():
        acc = dict(points)
        rows.append([method, "-" if dim is None else str(dim)] + [f"{acc[d]:.3f}" if d in acc else "-" for d in depths])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe(config) -> str:
    """The plan: the graph (built), the split, the networks and the runs."""
    from ntkfeat.data.graphs import stochastic_block_model

    g = stochastic_block_model(**config["graph"])
    edges = int((np.count_nonzero(g.adjacency) - len(g.labels)) // 2)
    features = [m for m in config["methods"] if m != "exact"]
    runs = len(config["depths"]) * (("exact" in config["methods"]) + len(features) * len(config["dims"]))
    return "\n".join([
        f"{config['name']}: {runs} runs",
        f"  graph: {len(g.labels)} nodes, {edges} edges, {config['graph']['blocks']} classes, "
        f"{g.x.shape[1]} channels; {config['n_train']} training / {len(g.labels) - config['n_train']} test nodes",
        f"  depths {config['depths']}: [Aggregate, Dense(W_std=sqrt 2), Relu] x L, Aggregate, Dense",
        f"  methods {config['methods']}, dims {config['dims']} (feature methods), lambda by {config['selection']}",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.graph_depth", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="YAML config (see configs/gcn_sbm.yaml)")
    parser.add_argument("--out", help="output folder (default runs/<name>-<YYYYmmdd-HHMMSS>); must not hold files")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a config value, e.g. --set depths=[1,2] (repeatable)")
    parser.add_argument("--check", action="store_true",
                        help="validate the config, build the graph, print the plan, stop")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(describe(config))
        return 0
    try:
        out = make_output_dir(args.out, config["name"])
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report.write_yaml(out / "config.yaml", config)
    print(f"writing to {out}", flush=True)
    records = run(config, out, log=lambda s: print(s, flush=True))
    print(format_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fully-connected NTK feature maps: throughput, parameter time, memory, and error vs the oracle.

    python -m experiments.bench_fc                      # throughput on all of protein (45,730 x 9)
    python -m experiments.bench_fc --errors             # + error vs neural-tangents, depth 1-3, dims 1024-8192
    python -m experiments.bench_fc --errors --datasets protein,kin8nm,power,naval --keys 3
    python -m experiments.bench_fc --interleaved --rows 8000 --methods "sketch q=8,sketch,rf,rf leverage"
    python -m experiments.bench_fc --interleaved --rows 8000 --methods "sketch q=8,rf" --budgets 16,64
    python -m experiments.bench_fc --interleaved --rows 8000 --methods "sketch,rf" --workers 1
    python -m experiments.bench_fc --interleaved --rows 10000 --methods "rf,rf leverage" \
        --public ~/ntk-sketch-rf --public-python ~/torch-venv/bin/python

Network: [Dense(W_std=sqrt 2), Relu] x depth, Dense(W_std=1). Throughput: each method in a fresh
process (so that its peak memory is its own), rows per second after compilation over every row
of the dataset, and the time to draw the parameters. Errors: relative Frobenius error
|Phi Phi^T - K|_F / |K|_F against neural-tangents' `kernel_fn(x, x, 'ntk')` on 500 standardized
rows, averaged over --keys keys. Reference figures of the public PyTorch code on this kind of
2-core machine (ALGORITHMS.md section 9) are printed beside ours as ratios.

--public DIR (with --interleaved) times the public random features themselves on the same rows,
before and after this library's passes: DIR is a checkout of the public repository (its
ntk_random_features.py), run by --public-python (a Python with PyTorch; default this one) in
its own process, with m1 = m0 = ms = dim / 2 (output width dim) and batches of
--public-batch rows; the leverage sampler's time is reported apart and left out of rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

# Public code, rows/s after its parameters are drawn: q=2, q=8 sketch; random features (the
# leverage sampler's time apart: 1,470 rows/s once it is done, measured beside this library).
PUBLIC_ROWS_PER_S = {("sketch", 2): 2572.0, ("sketch", 8): 400.0, ("rf", False): 1470.0, ("rf", True): 1470.0}
PUBLIC_ERRORS = {  # dim 8192, depth 1 / 2 / 3 (ALGORITHMS.md section 9)
    "sketch q=2": (0.045, 0.091, 0.127), "sketch q=8": (0.037, 0.029, 0.028),
    "rf": (0.028, 0.058, 0.059), "rf leverage": (0.021, 0.037, 0.047),
}
METHODS = {
    "sketch": lambda nf, d: nf.Sketch(dim=d),  # the default: degree 'auto', one-shot
    "sketch q=2": lambda nf, d: nf.Sketch(dim=d, degree=2),
    "sketch q=8": lambda nf, d: nf.Sketch(dim=d, degree=8),
    "sketch q=16": lambda nf, d: nf.Sketch(dim=d, degree=16),
    "sketch q=32": lambda nf, d: nf.Sketch(dim=d, degree=32),
    "sketch q=2 layerwise": lambda nf, d: nf.Sketch(dim=d, degree=2, mode="layerwise"),
    "sketch q=8 layerwise": lambda nf, d: nf.Sketch(dim=d, degree=8, mode="layerwise"),
    "rf": lambda nf, d: nf.RandomFeatures(dim=d),
    "rf leverage": lambda nf, d: nf.RandomFeatures(dim=d, leverage=True),
    # Dense Gaussian weights: one (width x columns) matmul per layer, the public code's kind of
    # projection (it draws two such matrices per layer), as a same-run reference point.
    "rf dense": lambda nf, d: nf.RandomFeatures(dim=d, projection="dense"),
    "rf leverage dense": lambda nf, d: nf.RandomFeatures(dim=d, leverage=True, projection="dense"),
}


def layers(nf, depth):
    out = []
    for _ in range(depth):
        out += [nf.Dense(W_std=2**0.5), nf.Relu()]
    return out + [nf.Dense(W_std=1.0)]


def load(name, rows=None, seed=0):
    from ntkfeat.data import load_dataset

    ds = load_dataset(name, split=0)
    x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float32)
    if rows:
        x = x[np.random.default_rng(seed).permutation(len(x))[:rows]]
    return x


def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_single(args):
    import jax
    import ntkfeat as nf

    x = load(args.dataset)
    init_fn, feature_fn, _ = nf.serial(*layers(nf, args.depth))
    base = _rss_bytes()
    t = time.perf_counter()
    params = init_fn(jax.random.PRNGKey(0), x.shape, METHODS[args.single](nf, args.dim))
    jax.block_until_ready(params)
    init_s = time.perf_counter() - t
    bs = nf.network.default_batch_size(params)
    jax.block_until_ready(feature_fn(params, x[:bs], batch_size=bs))  # compile
    rows = min(len(x), args.rows) if args.rows else len(x)
    # Streamed, as a solver consumes them: memory is set by the batch, not by the row count.
    t = time.perf_counter()
    for _, phi in nf.iterate_features(params, x[:rows], batch_size=bs):
        jax.block_until_ready(phi)
    run_s = time.perf_counter() - t
    leverage_s = None
    if "leverage" in args.single:
        from ntkfeat.features.random_features import gaussian_weights

        method = METHODS[args.single](nf, args.dim)
        t = time.perf_counter()  # the first layer's tilted draw alone, at the full width
        jax.block_until_ready(gaussian_weights(jax.random.PRNGKey(1), x.shape[1], args.dim, method, np.float32))
        leverage_s = time.perf_counter() - t
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps({
        "method": args.single, "dim": args.dim, "out_dim": int(phi.shape[1]), "mode": params.mode,
        "rows": rows, "batch": bs, "init_s": init_s, "leverage_draw_s": leverage_s, "rows_per_s": rows / run_s,
        "peak_bytes": int(peak), "base_bytes": int(base), "device": jax.devices()[0].device_kind,
    }), flush=True)


# Run in a subprocess with a PyTorch Python: times the public NtkFeatureMapOps on the saved rows.
_PUBLIC_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["dir"])
from ntk_random_features import NtkFeatureMapOps
torch.set_num_threads(cfg["threads"])
x = torch.from_numpy(np.load(cfg["rows"]))
half = cfg["dim"] // 2
for leverage in cfg["leverage"]:
    torch.manual_seed(0); np.random.seed(0)
    t = time.perf_counter()
    maps = NtkFeatureMapOps(cfg["depth"], x.shape[1], m1=half, m0=half, ms=half, do_leverage=leverage)
    init_s = time.perf_counter() - t
    best = float("inf")
    with torch.no_grad():
        for _ in range(cfg["passes"]):
            t = time.perf_counter()
            for i in range(0, len(x), cfg["batch"]):
                _, z = maps(x[i : i + cfg["batch"]])
            best = min(best, time.perf_counter() - t)
    print("RESULT " + json.dumps({"leverage": leverage, "rows_per_s": len(x) / best, "init_s": init_s,
                                  "out_dim": int(z.shape[1])}), flush=True)
"""


def time_public(args, x, leverage):
    """{leverage flag: rows/s} of the public random features on rows x (see --public)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.npy")
        np.save(path, np.asarray(x, np.float32))
        cfg = {"dir": os.path.expanduser(args.public), "rows": path, "depth": args.depth, "dim": args.dim,
               "batch": args.public_batch, "passes": 2, "threads": os.cpu_count(), "leverage": sorted(leverage)}
        proc = subprocess.run([os.path.expanduser(args.public_python), "-c", _PUBLIC_SCRIPT, json.dumps(cfg)],
                              capture_output=True, text=True)
    found = [json.loads(l[7:]) for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not found:
        raise SystemExit(f"--public: the public code failed (exit code {proc.returncode}):\n{proc.stderr[-2000:]}")
    for r in found:
        print(f"  public RF (leverage={r['leverage']}, m1 = m0 = ms = {args.dim // 2}, batch {args.public_batch}): "
              f"{r['rows_per_s']:,.0f} rows/s (parameters {r['init_s']:.1f} s)", flush=True)
    return {r["leverage"]: r["rows_per_s"] for r in found}


def interleaved(args):
    """Rows/s of every method in one process, compiled first, then `--passes` passes each in turn
    (best kept): on a busy machine their ratios stay comparable where separate runs are not.
    With --budgets, each method also runs at the batch sizes those batch budgets give (MB),
    labelled 'name @<MB>MB'; with --workers, with that many batches computed at once on a CPU
    (`ntkfeat.batching.CPU_WORKERS`), labelled 'name xN'; the unlabelled row is the library's
    defaults."""
    import jax
    import ntkfeat as nf
    from ntkfeat import batching

    x = load(args.dataset)
    x = x[: args.rows] if args.rows else x
    init_fn, feature_fn, _ = nf.serial(*layers(nf, args.depth))
    names = args.methods.split(",")
    budgets = [None] + [float(b) for b in args.budgets.split(",")] if args.budgets else [None]
    default_workers = batching.CPU_WORKERS
    workers = [int(w) for w in args.workers.split(",")] if args.workers else []
    maps = {}
    for name in names:
        params = init_fn(jax.random.PRNGKey(0), x.shape, METHODS[name](nf, args.dim))
        for mb in budgets:
            bs = nf.network.default_batch_size(params, None if mb is None else int(mb * 2**20))
            jax.block_until_ready(feature_fn(params, x[:bs], batch_size=bs))  # compile
            maps[(name, mb, None)] = (params, bs)
        for w in workers:  # the batch follows: the batches computed at once share the cache
            batching.CPU_WORKERS = w
            bs = nf.network.default_batch_size(params)
            jax.block_until_ready(feature_fn(params, x[:bs], batch_size=bs))
            maps[(name, None, w)] = (params, bs)
        batching.CPU_WORKERS = default_workers
    rf_leverage = {("leverage" in n) for n in names if n.startswith("rf")}
    public = []
    if args.public and rf_leverage:
        print("public code, before this library's passes:", flush=True)
        public.append(time_public(args, x, rf_leverage))
    best = dict.fromkeys(maps, float("inf"))
    for _ in range(args.passes):
        for key, (params, bs) in maps.items():
            batching.CPU_WORKERS = default_workers if key[2] is None else key[2]
            t = time.perf_counter()
            for _, phi in nf.iterate_features(params, x, batch_size=bs):
                jax.block_until_ready(phi)
            best[key] = min(best[key], time.perf_counter() - t)
    batching.CPU_WORKERS = default_workers
    if public:
        print("public code, after:", flush=True)
        public.append(time_public(args, x, rf_leverage))
    # The faster of its two timings (the ratio to it is the conservative one).
    public_best = {lev: max(p[lev] for p in public) for lev in rf_leverage} if public else {}
    budget = nf.network._batch_budget() / 2**20
    print(f"\n{args.dataset}, {len(x)} rows, depth {args.depth}, dim {args.dim}, interleaved, best of {args.passes}"
          f" (default batch budget {budget:g} MB, {batching.concurrent_batches()} batches at once)")
    first = (names[0], None, None)

    def label(key):
        name, mb, w = key
        return name + ("" if mb is None else f" @{mb:g}MB") + ("" if w is None else f" x{w}")

    for key, (_, bs) in maps.items():
        name = key[0]
        vs = public_best.get("leverage" in name) if name.startswith("rf") else None
        print(f"{label(key):>22}  batch {bs:5d}  {len(x) / best[key]:9.0f} rows/s  x {names[0]}: "
              f"{best[first] / best[key]:.3f}"
              + ("" if vs is None else f"  x public RF: {len(x) / best[key] / vs:.2f}"))
    out = {label(key): len(x) / best[key] for key in maps}
    if public:
        out["public"] = [{str(k): v for k, v in p.items()} for p in public]
    return out


def throughput(args):
    out = []
    for name in args.methods.split(","):
        cmd = [sys.executable, "-m", "experiments.bench_fc", "--single", name, "--dim", str(args.dim),
               "--depth", str(args.depth), "--dataset", args.dataset]
        if args.rows:
            cmd += ["--rows", str(args.rows)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if not lines:
            print(proc.stderr[-3000:], file=sys.stderr)
            out.append({"method": name, "error": f"exit code {proc.returncode}"})
        else:
            out.append(json.loads(lines[0][7:]))
        print(json.dumps(out[-1]), flush=True)
    return out


def errors(args):
    import jax
    import ntkfeat as nf

    dims = [int(d) for d in args.dims.split(",")]
    table = {}
    for dataset in args.datasets.split(","):
        x = load(dataset, rows=500)
        for depth in (1, 2, 3):
            init_fn, feature_fn, kernel_fn = nf.serial(*layers(nf, depth))
            k = np.asarray(kernel_fn(x, x, "ntk"), np.float64)
            for name in args.error_methods.split(","):
                for dim in dims:
                    errs = []
                    for key in range(args.keys):
                        phi = np.asarray(feature_fn(init_fn(jax.random.PRNGKey(key), x.shape, METHODS[name](nf, dim)), x), np.float64)
                        errs.append(np.linalg.norm(phi @ phi.T - k) / np.linalg.norm(k))
                    table[(dataset, name, depth, dim)] = float(np.mean(errs))
            print(f"{dataset} depth {depth} done", flush=True)
    return table, dims


def fmt_table(rows, columns):
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(str(r.get(c, "")).rjust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="fully-connected NTK feature benchmark")
    ap.add_argument("--dataset", default="protein")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--dim", type=int, default=8192)
    ap.add_argument("--rows", type=int, default=None, help="time only this many rows (default: all)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--errors", action="store_true", help="also measure the error against neural-tangents")
    ap.add_argument("--interleaved", action="store_true",
                    help="time the methods in one process, in turns (ratios to the first method)")
    ap.add_argument("--passes", type=int, default=3, help="passes per method with --interleaved")
    ap.add_argument("--budgets", default=None,
                    help="with --interleaved: also time each method at these batch budgets (MB, comma-separated)")
    ap.add_argument("--workers", default=None,
                    help="with --interleaved: also time each method with this many batches at once on a CPU "
                         "(comma-separated; the library's default is ntkfeat.batching.CPU_WORKERS)")
    ap.add_argument("--public", default=None,
                    help="with --interleaved: a checkout of the public code, timed beside this library")
    ap.add_argument("--public-python", default=sys.executable, help="a Python with PyTorch for --public")
    ap.add_argument("--public-batch", type=int, default=1000, help="rows per call of the public code")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--datasets", default="protein")
    ap.add_argument("--error-methods", default="sketch q=2,sketch q=8,rf,rf leverage")
    ap.add_argument("--dims", default="1024,2048,4096,8192")
    ap.add_argument("--keys", type=int, default=3)
    ap.add_argument("--out", default=None, help="write the results to this JSON file")
    ap.add_argument("--single", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.single:
        return run_single(args)
    results = {"config": vars(args)}
    if args.interleaved:
        results["interleaved"] = interleaved(args)
    elif not args.no_throughput:
        runs = throughput(args)
        results["throughput"] = runs
        rows = []
        for r in runs:
            if "error" in r:
                rows.append({"method": r["method"], "rows/s": r["error"]})
                continue
            name = r["method"]
            key = (("rf", name == "rf leverage") if name.startswith("rf")
                   else ("sketch", int(name[9])) if name.startswith("sketch q=") else None)
            ref = PUBLIC_ROWS_PER_S.get(key)
            rows.append({
                "method": name, "mode": r["mode"], "out dim": r["out_dim"], "param draw s": f"{r['init_s']:.3f}",
                "leverage draw s": f"{r['leverage_draw_s']:.4f}" if r.get("leverage_draw_s") else "-",
                "rows/s": f"{r['rows_per_s']:.0f}",
                "x public": f"{r['rows_per_s'] / ref:.1f}" if ref else "-",
                "peak MB": f"{r['peak_bytes'] / 2**20:.0f}",
                "peak - base MB": f"{(r['peak_bytes'] - r['base_bytes']) / 2**20:.0f}",
            })
        print(f"\n{args.dataset}, depth {args.depth}, dim {args.dim}, device {runs[0].get('device', '?')}; "
              "public PyTorch reference (same kind of machine): 2572 rows/s (q=2), 400 (q=8), 1470 (rf, after its sampler)")
        print(fmt_table(rows, ["method", "mode", "out dim", "param draw s", "leverage draw s", "rows/s", "x public",
                               "peak MB", "peak - base MB"]))
    if args.errors:
        table, dims = errors(args)
        results["errors"] = [{"dataset": d, "method": m, "depth": L, "dim": k, "rel_fro": v} for (d, m, L, k), v in table.items()]
        for dataset in args.datasets.split(","):
            rows = []
            for name in args.error_methods.split(","):
                row = {"method": name}
                for depth in (1, 2, 3):
                    row[f"depth {depth}"] = " -> ".join(f"{table[(dataset, name, depth, k)]:.4f}" for k in (dims[0], dims[-1]))
                pub = PUBLIC_ERRORS.get(name)
                row["public @8192"] = " / ".join(f"{v:.3f}" for v in pub) if pub and dataset == "protein" else "-"
                rows.append(row)
            print(f"\n{dataset}: relative Frobenius error vs neural-tangents, dim {dims[0]} -> {dims[-1]}, "
                  f"mean of {args.keys} keys, 500 rows")
            print(fmt_table(rows, ["method", "depth 1", "depth 2", "depth 3", "public @8192"]))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()

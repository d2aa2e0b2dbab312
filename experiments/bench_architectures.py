"""General activations and architectures against neural-tangents: kernel error and feature cost.

    python -m experiments.bench_architectures                          # both parts
    python -m experiments.bench_architectures --parts activations      # or combinators
    python -m experiments.bench_architectures --parts activations --activations Relu,Erf --keys 1

Figures only: targets are printed beside the numbers, nothing is asserted.

activations: [Dense(W_std=sqrt 2), act] x 2, Dense(W_std=1) on 500 standardized protein rows
  (`load_dataset('protein', n_train=500)`; scikit-learn's diabetes when the data folder is absent,
  and the table says so). Relative Frobenius error |Phi Phi^T - K|_F / |K|_F against
  neural-tangents' exact NTK (float64), mean of --keys keys, for `Sketch(dim)` and
  `RandomFeatures(dim)` at --dim (8192). Throughput: feature rows per second on --rows-timed
  (4000) rows after compilation, every map timed in turn, best of --rounds (3) rounds, and the cost ratio to Relu's at the same dim and
  method (time per row / Relu's; issue target <= 1.5). Every Sketch is the default map (mode
  'auto'): the one-shot fit for homogeneous activations, the one-shot series for general ones;
  the table also shows the ratio to Relu's layerwise map. RectifiedMonomial's exact kernel is NaN where two rows are
  perfectly correlated (neural-tangents divides by sin theta): those entries are left out.

combinators: the Wide-ResNet of configs/wide_resnet.yaml and Myrtle-5 (the layers of
  configs/cifar10_myrtle.yaml) on 12 CIFAR-10 test images (per-channel standardization, no ZCA;
  scikit-learn's digits upsampled 4x to 32 x 32 when CIFAR-10 is absent, and the table says so)
  at --dim-images (16384), `Sketch(dim)` and `RandomFeatures(dim)` with the library's defaults
  (the Sketch is layerwise here, degree 8, inner width dim / 2 in the Conv stacks); and a 3-layer GCN ([Aggregate, Dense(sqrt 2), Relu] x 2, Aggregate,
  Dense) on 4 stochastic block model graphs of 20 nodes (`ntkfeat.data.graphs`, node features
  (4, 20, 8), every pair of nodes of every pair of graphs) at --dim-graph (8192). Error as above,
  mean and range over --keys keys; target <= 0.05. Seconds: features of the 12 images (or the
  graphs) per key, after the first key's compilation. Exact kernels in float64 for the GCN and in
  float32 (full-precision matmuls) for the image networks: neural-tangents' jitted float64 CNTK of
  Myrtle-5 on 32 x 32 images segfaults inside XLA on CPU (jax 0.10.2).
"""

from __future__ import annotations

import argparse
import re
import pathlib
import time
import warnings

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
TARGET_COST = 1.5
TARGET_ERROR = 0.05


def activations(nf) -> dict:
    return {
        "Relu": nf.Relu(), "Erf": nf.Erf(), "Gelu": nf.Gelu(), "LeakyRelu(0.1)": nf.LeakyRelu(0.1),
        "ABRelu(-0.5, 1)": nf.ABRelu(-0.5, 1.0), "Sin": nf.Sin(), "Gaussian": nf.Gaussian(),
        "ExpNormalized": nf.ExpNormalized(), "Sigmoid_like": nf.Sigmoid_like(), "Abs": nf.Abs(),
        "RectifiedMonomial(2)": nf.RectifiedMonomial(2),
    }


def _exact(kernel_fn, x, float64: bool = True, **kwargs) -> np.ndarray:
    import jax

    dtype = np.float64 if float64 else np.float32
    with jax.enable_x64(float64), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = np.asarray(x, dtype)
        if "pattern" in kwargs:
            kwargs = {"pattern": tuple(np.asarray(p, dtype) for p in kwargs["pattern"])}
        return np.asarray(kernel_fn(x, x, "ntk", **kwargs), np.float64)


def _rel_error(g, k) -> float:
    mask = np.isfinite(k)  # RectifiedMonomial: NaN at perfectly correlated pairs (module docstring)
    return float(np.linalg.norm((g - k)[mask]) / np.linalg.norm(k[mask]))


def _gram(phi) -> np.ndarray:
    phi = np.asarray(phi, np.float64)
    if phi.ndim == 2:
        return phi @ phi.T
    return np.einsum("aim,bjm->abij", phi, phi)  # graphs: (G, N, m) -> (G, G, N, N)


def _errors(net, method, x, k, keys, **kwargs):
    """Relative errors over keys, and the feature seconds of each key."""
    import jax

    init_fn, feature_fn, _ = net
    errs, secs = [], []
    for key in range(keys):
        t = time.perf_counter()
        params = init_fn(jax.random.PRNGKey(key), x.shape, method)
        phi = jax.block_until_ready(feature_fn(params, x, **kwargs))
        secs.append(time.perf_counter() - t)
        errs.append(_rel_error(_gram(phi), k))
    return errs, secs


def _interleaved_rates(maps: dict, x, rounds: int) -> dict:
    """{key: rows per second} of each (network, method) in `maps`, timed in turns, best of rounds."""
    import jax

    compiled = {}
    for key, ((init_fn, feature_fn, _), method) in maps.items():
        params = init_fn(jax.random.PRNGKey(0), x.shape, method)
        jax.block_until_ready(feature_fn(params, x))  # compiles (every batch has one shape)
        compiled[key] = (feature_fn, params)
    best = {key: float("inf") for key in compiled}
    for _ in range(rounds):
        for key, (feature_fn, params) in compiled.items():
            t = time.perf_counter()
            jax.block_until_ready(feature_fn(params, x))
            best[key] = min(best[key], time.perf_counter() - t)
    return {key: len(x) / b for key, b in best.items()}


def _table(header, rows) -> str:
    cells = [header] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def _fmt(v, spec="{:.4f}"):
    return None if v is None else spec.format(v)


# --------------------------------------------------------------------------- activations


def load_rows(n: int, n_timed: int):
    from ntkfeat.data import load_dataset

    try:
        ds = load_dataset("protein", n_train=max(n, n_timed))
        name = "protein"
    except FileNotFoundError as e:
        print(f"protein not found ({e}); using scikit-learn's diabetes instead")
        ds = load_dataset("diabetes")
        name = "diabetes (protein absent)"
    x = ds.x_train.astype(np.float32)
    timed = x if len(x) >= n_timed else np.resize(x, (n_timed, x.shape[1]))  # diabetes: rows repeated
    return name, x[:n], timed[:n_timed]


def bench_activations(args) -> str:
    import ntkfeat as nf

    name, x, timed = load_rows(args.rows, args.rows_timed)
    acts = activations(nf)
    if args.activations:
        wanted = [a.strip() for a in re.split(r",(?![^()]*\))", args.activations)]  # "ABRelu(-0.5, 1)" stays whole
        unknown = [a for a in wanted if a not in acts]
        if unknown:
            raise SystemExit(f"unknown activation(s) {unknown}; choose from {', '.join(acts)}")
        acts = {a: acts[a] for a in (["Relu"] if "Relu" not in wanted else []) + wanted}
    methods = {"Sketch": lambda: nf.Sketch(dim=args.dim), "RF": lambda: nf.RandomFeatures(dim=args.dim)}

    def net(act):
        return nf.serial(nf.Dense(512, W_std=2**0.5), act, nf.Dense(512, W_std=2**0.5), act, nf.Dense(1, W_std=1.0))

    results = {}
    for act_name, act in acts.items():
        network = net(act)
        t = time.perf_counter()
        k = _exact(network[2], x)
        exact_s = time.perf_counter() - t
        for m_name, make in methods.items():
            try:
                errs, _ = _errors(network, make(), x, k, args.keys)
            except NotImplementedError as e:
                results[act_name, m_name] = None
                print(f"{act_name:22s} {m_name:7s} not supported: {str(e).splitlines()[0][:90]}", flush=True)
                continue
            results[act_name, m_name] = (float(np.mean(errs)), None)
            print(f"{act_name:22s} {m_name:7s} error {np.mean(errs):.4f} (keys {', '.join(f'{e:.4f}' for e in errs)})"
                  f"  [exact {exact_s:.1f} s]", flush=True)
    layerwise = None
    if not args.no_timing:
        # Every map timed in turn, round after round, best round kept: the machine's load drifts
        # by 30% and more over minutes, and this keeps the ratios within one stretch of it.
        maps = {key: (net(acts[key[0]]), methods[key[1]]()) for key, r in results.items() if r is not None}
        maps["Relu", "layerwise"] = (net(nf.Relu()), nf.Sketch(dim=args.dim, mode="layerwise"))
        rates = _interleaved_rates(maps, timed, args.rounds)
        for key, rate in rates.items():
            if key in results:
                results[key] = (results[key][0], rate)
            print(f"{key[0]:22s} {key[1]:9s} {rate:,.0f} rows/s", flush=True)
        layerwise = rates["Relu", "layerwise"]

    def cost(m_name, act_name, base=None):
        r, relu = results.get((act_name, m_name)), results.get(("Relu", m_name))
        base = base if base is not None else (relu[1] if relu else None)
        if r is None or r[1] is None or base is None:
            return None
        return f"{base / r[1]:.2f}"

    rows = []
    for act_name in acts:
        s, f = results.get((act_name, "Sketch")), results.get((act_name, "RF"))
        rows.append([act_name, _fmt(s and s[0]), _fmt(f and f[0]),
                     _fmt(s and s[1], "{:,.0f}"), cost("Sketch", act_name), cost("Sketch", act_name, layerwise),
                     _fmt(f and f[1], "{:,.0f}"), cost("RF", act_name)])
    if layerwise is not None:
        rows.append(["Relu (Sketch layerwise)", None, None, f"{layerwise:,.0f}",
                     cost("Sketch", "Relu", None) and f"{results['Relu', 'Sketch'][1] / layerwise:.2f}", "1.00",
                     None, None])
    title = (f"activations: {name}, {len(x)} rows x {x.shape[1]}, [Dense(sqrt 2), act] x 2, Dense; dim {args.dim}; "
             f"error: mean of {args.keys} keys; rows/s on {len(timed)} rows after compilation, every map in turn, "
             f"best of {args.rounds} rounds; "
             f"cost = time per row / Relu's (target <= {TARGET_COST})")
    header = ["activation", "Sketch error", "RF error", "Sketch rows/s", "Sketch cost / Relu",
              "Sketch cost / Relu layerwise", "RF rows/s", "RF cost / Relu"]
    return title + "\n\n" + _table(header, rows)


# --------------------------------------------------------------------------- combinators


def config_layers(nf, path):
    from ntkfeat.runs.config import build_layers, load_config

    return nf.serial(*build_layers(load_config(REPO / path)["architecture"]))


def load_images(n: int):
    from ntkfeat.data import load_dataset

    try:
        ds = load_dataset("cifar10", n_train=n, n_test=n, images=True)
        return "CIFAR-10 test", ds.x_test[:n].astype(np.float32)
    except FileNotFoundError as e:
        print(f"CIFAR-10 not found ({e}); using scikit-learn's digits upsampled to 32 x 32 instead")
        ds = load_dataset("digits", images=True, n_test=n)
        x = np.repeat(np.repeat(ds.x_test[:n], 4, axis=1), 4, axis=2)
        return "digits x4 (CIFAR-10 absent)", x.astype(np.float32)


def graphs(count=4, nodes=20, channels=8):
    from ntkfeat.data.graphs import stochastic_block_model

    gs = [stochastic_block_model(nodes=nodes, blocks=2, p_in=0.3, p_out=0.05, channels=channels, signal=0.5, seed=s)
          for s in range(count)]
    return np.stack([g.x for g in gs]), np.stack([g.adjacency for g in gs])


def bench_combinators(args) -> str:
    import ntkfeat as nf

    data_name, images = load_images(args.images)
    gx, ga = graphs()
    gcn = nf.serial(nf.Aggregate(), nf.Dense(512, W_std=2**0.5), nf.Relu(), nf.Aggregate(), nf.Dense(512, W_std=2**0.5),
                    nf.Relu(), nf.Aggregate(), nf.Dense(1))
    cases = [
        ("Wide-ResNet (configs/wide_resnet.yaml)", config_layers(nf, "configs/wide_resnet.yaml"), images, {},
         args.dim_images, f"{len(images)} {data_name}"),
        ("Myrtle-5 (configs/cifar10_myrtle.yaml)", config_layers(nf, "configs/cifar10_myrtle.yaml"), images, {},
         args.dim_images, f"{len(images)} {data_name}"),
        ("GCN, 3 Aggregate", gcn, gx, {"pattern": ga}, args.dim_graph,
         f"{gx.shape[0]} SBM graphs x {gx.shape[1]} nodes"),
    ]
    if args.networks:
        wanted = [w.lower() for w in args.networks.split(",")]
        cases = [c for c in cases if any(c[0].lower().startswith(w) for w in wanted)]
    rows = []
    for label, net, x, kwargs, dim, data in cases:
        t = time.perf_counter()
        # Image networks: float32 exact kernels. neural-tangents' jitted float64 CNTK segfaults inside
        # XLA on CPU (jax 0.10.2) for 32 x 32 inputs with AvgPool (Myrtle-5) and for a SAME Conv
        # feeding a pool; float32 rounding (~1e-7) is far below the errors measured here.
        k = _exact(net[2], x, float64=bool(kwargs), **({"pattern": (kwargs["pattern"],) * 2} if kwargs else {}))
        exact_s = time.perf_counter() - t
        for m_name, method in (("Sketch", nf.Sketch(dim=dim)), ("RF", nf.RandomFeatures(dim=dim))):
            errs, secs = _errors(net, method, x, k, args.keys, **kwargs)
            steady = float(np.mean(secs[1:])) if len(secs) > 1 else secs[0]
            mean = float(np.mean(errs))
            rows.append([label, data, m_name, dim, f"{mean:.4f}", f"{min(errs):.4f}-{max(errs):.4f}",
                         "yes" if mean <= TARGET_ERROR else "MISSED", f"{steady:.1f}", f"{exact_s:.1f}"])
            print(" | ".join(map(str, rows[-1])), flush=True)
    title = (f"combinators: relative Frobenius error vs neural-tangents (float64 GCN, float32 images), "
             f"mean and range over {args.keys} keys; "
             f"target <= {TARGET_ERROR}; feature seconds per key after the first key's compilation")
    header = ["network", "data", "method", "dim", "error", "range", "<= 0.05", "feature s", "exact s"]
    return title + "\n\n" + _table(header, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_architectures",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="activations,combinators", help="activations, combinators or both")
    parser.add_argument("--keys", type=int, default=3, help="keys per error (mean)")
    parser.add_argument("--dim", type=int, default=8192, help="activations: feature dim")
    parser.add_argument("--rows", type=int, default=500, help="activations: rows of the error")
    parser.add_argument("--rows-timed", type=int, default=4000, help="activations: rows of the throughput")
    parser.add_argument("--no-timing", action="store_true", help="activations: errors only")
    parser.add_argument("--rounds", type=int, default=3, help="activations: timing rounds (every map in turn)")
    parser.add_argument("--activations", help="activations: a comma-separated subset (names as printed)")
    parser.add_argument("--dim-images", type=int, default=16384, help="combinators: dim for the image networks")
    parser.add_argument("--dim-graph", type=int, default=8192, help="combinators: dim for the GCN")
    parser.add_argument("--images", type=int, default=12, help="combinators: test images")
    parser.add_argument("--networks", help="combinators: a subset by name prefix (wide, myrtle, gcn)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"activations", "combinators"}
    if unknown or not parts:
        parser.error(f"--parts: expected activations and/or combinators, got {args.parts!r}")

    import jax

    print(f"device: {jax.devices()[0]}, jax {jax.__version__}", flush=True)
    tables = []
    for part in parts:
        t = time.perf_counter()
        tables.append((bench_activations if part == "activations" else bench_combinators)(args))
        tables[-1] += f"\n\n({part}: {time.perf_counter() - t:.0f} s)"
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

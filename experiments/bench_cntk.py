"""CNTK Sketch benchmark: throughput, peak memory and kernel error, one command.

    python -m experiments.bench_cntk --data .device/cifar_subset.npz            # GPU defaults
    python -m experiments.bench_cntk --data ... --dims 256 --images 16 --exact 4  # CPU smoke

Network: [Conv(4x4, VALID, W_std=sqrt 2), Relu] x 3, GlobalAvgPool, Dense(W_std=1) on NHWC
images. For each (method, dim), in a fresh process (so that peak memory is its own): the time
to draw the parameters, images per second after compilation, peak device memory (GPU) or peak
resident memory (CPU), and the relative Frobenius error |Phi Phi^T - K|_F / |K|_F against
neural-tangents' exact CNTK on the first --exact test images (mean over --error-keys draws;
--methods compares variants, e.g. sketch,sketch-full,sketch-plain). The exact kernel's own cost per
entry is timed in the same run as the baseline (the whole n x n kernel through features vs
exact). With --sizes, the same network on images resized to each side length times the
feature map per image: work linear in the pixels means about 4x per doubling of the side.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

PUBLIC_H200 = {  # public PyTorch CNTK Sketch, L=3, 4x4, degree 2, on one H200 (ALGORITHMS.md, section 9)
    4096: {"images_per_s": 650.0, "peak_gb": 74.0},
    16384: {"images_per_s": 144.0, "peak_gb": 91.0},
}


def build(nf, depth=3, filt=4):
    layers = []
    for _ in range(depth):
        layers += [nf.Conv(filter_shape=(filt, filt), W_std=2**0.5), nf.Relu()]
    layers += [nf.GlobalAvgPool(), nf.Dense(W_std=1.0)]
    return nf.serial(*layers)


def load_images(path, count, size=None):
    from ntkfeat.data import load_dataset

    ds = load_dataset("npz", path=path, task="classification", images=True)
    x = np.concatenate([ds.x_test, ds.x_train])  # test images first: the error subset
    if count > len(x):
        reps = -(-count // len(x))
        x = np.concatenate([x] * reps)
    x = x[:count]
    if size and size != x.shape[1]:
        import jax

        x = np.asarray(jax.image.resize(x, (len(x), size, size, x.shape[-1]), "linear"))
    return x.astype(np.float32)


def peak_memory_bytes():
    import jax

    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "host RSS"


METHODS = {
    "sketch": "Sketch(dim, degree), the defaults: renormalized, inner width dim / 2",
    "sketch-full": "the same with inner width dim",
    "sketch-plain": "Sketch(renormalize=False, width=dim): every step unbiased (the previous default)",
    "rf": "RandomFeatures(dim)",
}


def method_of(nf, name, dim, degree):
    if name == "sketch":
        return nf.Sketch(dim=dim, degree=degree)
    if name == "sketch-full":
        return nf.Sketch(dim=dim, degree=degree, width=dim)
    if name == "sketch-plain":
        return nf.Sketch(dim=dim, degree=degree, renormalize=False, width=dim)
    if name == "rf":
        return nf.RandomFeatures(dim=dim)
    raise ValueError(f"unknown method {name!r}; one of {sorted(METHODS)}")


def run_single(args):
    """One (method, dim[, size]) measurement in this process; prints one JSON line."""
    import jax
    import ntkfeat as nf

    method, dim = args.single.split(":")
    dim = int(dim)
    init_fn, feature_fn, _ = build(nf)
    x = load_images(args.data, args.images, args.size)
    t = time.perf_counter()
    params = init_fn(jax.random.PRNGKey(0), x.shape, method_of(nf, method, dim, args.degree))
    jax.block_until_ready(params)
    init_s = time.perf_counter() - t
    bs = int(args.batch) if args.batch else nf.network.default_batch_size(params)
    bs = min(bs, len(x))
    t = time.perf_counter()
    jax.block_until_ready(feature_fn(params, x[:bs], batch_size=bs))  # compile
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    phi = feature_fn(params, x, batch_size=bs)
    jax.block_until_ready(phi)
    run_s = time.perf_counter() - t
    out = {
        "method": method, "dim": dim, "out_dim": int(phi.shape[1]), "size": int(x.shape[1]),
        "images": len(x), "batch": bs, "init_s": init_s, "compile_s": compile_s, "run_s": run_s,
        "images_per_s": len(x) / run_s, "device": str(jax.devices()[0].device_kind),
    }
    if args.exact_kernel and os.path.exists(args.exact_kernel) and not args.size:
        # The error of one draw varies a lot (0.02-0.06 at dim 4096): report the mean over
        # --error-keys independent draws, each on the error images only.
        k = np.load(args.exact_kernel)
        errs = []
        for key in range(args.error_keys):
            p = params if key == 0 else init_fn(jax.random.PRNGKey(key), x.shape, method_of(nf, method, dim, args.degree))
            f = np.asarray(feature_fn(p, x[: len(k)], batch_size=min(bs, len(k))), np.float64)
            errs.append(float(np.linalg.norm(f @ f.T - k) / np.linalg.norm(k)))
        out["rel_fro"], out["rel_fro_keys"] = float(np.mean(errs)), errs
    out["peak_bytes"], out["memory_kind"] = peak_memory_bytes()
    print("RESULT " + json.dumps(out), flush=True)


def exact_kernel(args, path):
    import jax
    import ntkfeat as nf

    _, _, kernel_fn = build(nf)
    x = load_images(args.data, args.exact)
    # The reference runs at full float32 matmul precision (the default of kernel_fn); the timing at
    # JAX's default precision (TF32 on recent GPUs), as neural-tangents runs out of the box.
    k = np.asarray(kernel_fn(x, x, "ntk", batch_size=args.exact_batch), np.float64)
    np.save(path, k)
    timed = functools.partial(kernel_fn, get="ntk", batch_size=args.exact_batch, precision=None)
    jax.block_until_ready(timed(x, x))  # compile
    t = time.perf_counter()
    jax.block_until_ready(timed(x, x))
    return (time.perf_counter() - t) / k.size


def child(args, single, size=None, images=None):
    cmd = [sys.executable, "-m", "experiments.bench_cntk", "--data", args.data, "--single", single,
           "--images", str(images or args.images), "--degree", str(args.degree),
           "--exact-kernel", args.exact_kernel_path, "--error-keys", str(args.error_keys)]
    batch = _batch_for(args.batch, int(single.split(":")[1]))
    if batch:
        cmd += ["--batch", str(batch)]
    if size:
        cmd += ["--size", str(size)]
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
    return {"method": single, "error": f"exit code {proc.returncode}"}


def _batch_for(spec, dim):
    """--batch is one number or 'dim:batch,...' pairs."""
    if not spec:
        return None
    if ":" not in spec:
        return int(spec)
    pairs = dict(item.split(":") for item in spec.split(","))
    return int(pairs[str(dim)]) if str(dim) in pairs else None


def table(rows, columns):
    widths = [max(len(c), *(len(r.get(c, "")) for r in rows)) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(r.get(c, "").rjust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="CNTK Sketch benchmark")
    ap.add_argument("--data", required=True, help="npz with uint8 images x (N, 32, 32, 3) and labels y")
    ap.add_argument("--methods", default="sketch",
                    help="comma-separated: " + "; ".join(f"{k}: {v}" for k, v in METHODS.items()))
    ap.add_argument("--dims", default="4096,16384")
    ap.add_argument("--degree", type=int, default=2)
    ap.add_argument("--images", type=int, default=4096, help="images timed per configuration")
    ap.add_argument("--batch", default=None,
                    help="images per batch: one number or dim:batch pairs, e.g. 4096:256,16384:64 "
                         "(default: from device memory)")
    ap.add_argument("--exact", type=int, default=12, help="images for the error against the exact CNTK")
    ap.add_argument("--exact-batch", type=int, default=4)
    ap.add_argument("--error-keys", type=int, default=4, help="draws averaged in the error column")
    ap.add_argument("--sizes", default="", help="side lengths for the pixel-scaling check, e.g. 16,32,64")
    ap.add_argument("--size-dim", type=int, default=4096)
    ap.add_argument("--size-images", type=int, default=256)
    ap.add_argument("--out", default=None, help="write all results to this JSON file")
    ap.add_argument("--single", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--exact-kernel", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.single:
        return run_single(args)

    import tempfile

    tmp = tempfile.mkdtemp(prefix="bench_cntk_")
    args.exact_kernel_path = os.path.join(tmp, "exact.npy")
    results = {"config": vars(args).copy()}
    sec_per_entry = exact_kernel(args, args.exact_kernel_path) if args.exact else None
    results["exact_seconds_per_entry"] = sec_per_entry
    runs = []
    for method in args.methods.split(","):
        for dim in [int(d) for d in args.dims.split(",")]:
            r = child(args, f"{method}:{dim}")
            runs.append(r)
            print(json.dumps(r), flush=True)
    results["runs"] = runs
    scaling = []
    if args.sizes:
        for size in [int(s) for s in args.sizes.split(",")]:
            r = child(args, f"sketch:{args.size_dim}", size=size, images=args.size_images)
            scaling.append(r)
            print(json.dumps(r), flush=True)
    results["pixel_scaling"] = scaling

    rows = []
    for r in runs:
        if "error" in r:
            rows.append({"method": r["method"], "dim": "-", "images/s": r["error"]})
            continue
        public = PUBLIC_H200.get(r["dim"]) if "H200" in r["device"] and r["method"].startswith("sketch") else None
        entries_s = r["images_per_s"]  # features for n images give all n^2 kernel entries
        row = {
            "method": r["method"], "dim": str(r["dim"]), "out": str(r["out_dim"]), "batch": str(r["batch"]),
            "init s": f"{r['init_s']:.2f}", "compile s": f"{r['compile_s']:.1f}",
            "images/s": f"{r['images_per_s']:.1f}",
            "peak GB": f"{r['peak_bytes'] / 1e9:.2f} ({r['memory_kind']})",
            "rel fro (mean)": f"{r['rel_fro']:.4f}" if "rel_fro" in r else "-",
            "range": f"{min(r['rel_fro_keys']):.3f}-{max(r['rel_fro_keys']):.3f}" if "rel_fro" in r else "-",
        }
        if sec_per_entry:
            # time for an n x n kernel at n = 10,000: exact n^2 entries vs n feature rows (+ the
            # product, ignored: it is a fast matrix product)
            n = 10_000
            row["x exact (n=1e4)"] = f"{(sec_per_entry * n * n) / (n / entries_s):.0f}"
        if public:
            row["x public img/s"] = f"{r['images_per_s'] / public['images_per_s']:.1f}"
            row["mem / public"] = f"{r['peak_bytes'] / 1e9 / public['peak_gb']:.2f}"
        rows.append(row)
    columns = ["method", "dim", "out", "batch", "init s", "compile s", "images/s", "peak GB", "rel fro (mean)", "range"]
    if sec_per_entry:
        columns.append("x exact (n=1e4)")
    if any("x public img/s" in r for r in rows):
        columns += ["x public img/s", "mem / public"]
    print()
    print(f"device: {runs[0].get('device', '?')}; exact CNTK: "
          + (f"{sec_per_entry:.3g} s per kernel entry" if sec_per_entry else "not timed"))
    print(table(rows, columns))
    if scaling:
        srows, prev = [], None
        for r in scaling:
            if "error" in r:
                continue
            per = r["run_s"] / r["images"]
            srows.append({"side": str(r["size"]), "ms/image": f"{per * 1e3:.2f}",
                          "x previous": f"{per / prev:.2f}" if prev else "-"})
            prev = per
        print()
        print(f"pixel scaling at dim {args.size_dim} (linear in pixels: about 4x per doubling)")
        print(table(srows, ["side", "ms/image", "x previous"]))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()

"""Cost per pixel of the CNTK Sketch, whole images against row streaming (issue: CNTK cost linear
in pixels).

    python -m experiments.bench_rows                                  # sides 32,64,128, dim 1024
    python -m experiments.bench_rows --sides 64,128 --dims 1024,4096 --chunks off,auto,4,8,16
    python -m experiments.bench_rows --sides 32 --dims 1024,4096 --chunks auto --workers 1,2 --images 24

Network: [Conv(4x4, VALID, W_std=sqrt 2), Relu] x 3, GlobalAvgPool, Dense on random NHWC images
(3 channels), `Sketch(dim, degree=2)`. For each side, dim and chunk setting ('off': whole images,
'auto': the library's rule, a number: that many output rows per step), batches of the default
size are timed after compilation, in interleaved rounds (best of --rounds kept), and reported as
microseconds per convolution output position (summed over the three layers; linear in pixels
means a flat column) and as a ratio of times to 'off' at the same side.

--workers W1,W2: the chunk setting 'auto' timed the library's way instead, through
`ntkfeat.batching.iterate` with W batches computed at once (`batching.CPU_WORKERS`; the batch
size and streaming step follow, as the cache is shared), rows labelled 'xW', ratios to x1.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np


def build(nf):
    layers = []
    for _ in range(3):
        layers += [nf.Conv(filter_shape=(4, 4), W_std=2**0.5), nf.Relu()]
    return nf.serial(*layers, nf.GlobalAvgPool(), nf.Dense(W_std=1.0))


@contextlib.contextmanager
def chunk_setting(setting):
    """Traces under a fixed chunk ('off': no streaming; 'auto': the library's rule)."""
    from ntkfeat.features import rows

    real = rows.chunk_rows
    if setting != "auto":
        rows.chunk_rows = lambda *a, **k: None if setting == "off" else int(setting)
    try:
        yield
    finally:
        rows.chunk_rows = real


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", default="32,64,128")
    ap.add_argument("--dims", default="1024")
    ap.add_argument("--chunks", default="off,auto", help="off, auto, or output rows per step")
    ap.add_argument("--images", type=int, default=4, help="images timed per configuration and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default=None,
                    help="time 'auto' through the library's batch iteration with these many batches at once")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    import ntkfeat as nf
    from ntkfeat import batching, network
    from ntkfeat.features import rows

    init_fn, _, _ = build(nf)
    rng = np.random.default_rng(0)
    runs = {}
    for side in [int(s) for s in args.sides.split(",")]:
        for dim in [int(d) for d in args.dims.split(",")]:
            params = init_fn(jax.random.PRNGKey(0), (-1, side, side, 3), nf.Sketch(dim=dim, degree=2))
            bs = network.default_batch_size(params)
            n = max(args.images, bs)
            x = jnp.asarray(rng.standard_normal((n, side, side, 3)).astype(np.float32))
            settings = args.chunks.split(",")
            if args.workers:
                settings = [s for s in settings if s != "auto"] + [f"x{w}" for w in args.workers.split(",")]
            for setting in settings:
                if setting.startswith("x"):
                    runs[(side, dim, setting)] = timed_workers(params, rng, side, args.images, int(setting[1:]))
                    continue
                with chunk_setting(setting):
                    fn = jax.jit(lambda p, x: network.apply_feature_map(p, x))
                    t = time.perf_counter()
                    jax.block_until_ready(fn(params, x[:bs]))
                    compile_s = time.perf_counter() - t
                    specs = params.params.specs
                    chunk = rows.chunk_rows(specs[:7], bs, network._batch_budget() // rows.STEP_FRACTION, 4)
                label = setting if setting != "auto" else f"auto ({chunk or 'off'})"

                def run(fn=fn, params=params, x=x, bs=bs):
                    out = None
                    for i in range(0, len(x) - bs + 1, bs):
                        out = fn(params, x[i : i + bs])
                    jax.block_until_ready(out)

                positions = sum((side - 3 * i) ** 2 for i in (1, 2, 3))
                runs[(side, dim, setting)] = dict(run=run, label=label, batch=bs, images=n - n % bs,
                                                  positions=positions, compile_s=compile_s, times=[])
    default_workers = batching.CPU_WORKERS
    for _ in range(args.rounds):
        for r in runs.values():
            batching.CPU_WORKERS = r.get("workers", default_workers)
            t = time.perf_counter()
            r["run"]()
            r["times"].append((time.perf_counter() - t) / r["images"])
    batching.CPU_WORKERS = default_workers
    print(f"{'side':>5} {'dim':>6} {'chunk':>10} {'batch':>6} {'compile s':>10} {'ms/image':>9} {'us/position':>12} "
          f"{'ratio':>6}")
    for (side, dim, setting), r in runs.items():
        per_image = min(r["times"])  # ratio: time to 'off' at this side and dim (worker rows: to x1)
        base = runs.get((side, dim, "x1" if "workers" in r else "off"))
        ratio = f"{per_image / min(base['times']):.2f}" if base else "-"
        print(f"{side:>5} {dim:>6} {r['label']:>10} {r['batch']:>6} {r['compile_s']:>10.1f} {per_image * 1e3:>9.1f} "
              f"{per_image / r['positions'] * 1e6:>12.2f} {ratio:>6}")


def timed_workers(params, rng, side, images, workers):
    """A run of `main`'s table: the library's path (`batching.iterate`, auto chunks) with `workers`
    batches at once. A fresh jit, so that the streaming step is traced under this setting."""
    import functools

    import jax
    import jax.numpy as jnp

    from ntkfeat import batching, network
    from ntkfeat.features import rows

    default = batching.CPU_WORKERS
    batching.CPU_WORKERS = workers
    try:
        bs = network.default_batch_size(params)
        n = max(images, 2 * bs) // bs * bs
        x = jnp.asarray(rng.standard_normal((n, side, side, 3)).astype(np.float32))
        fn = functools.partial(jax.jit(lambda p, x: network.apply_feature_map(p, x)), params)
        t = time.perf_counter()
        jax.block_until_ready(fn(x[:bs]))
        compile_s = time.perf_counter() - t
        chunk = rows.chunk_rows(params.params.specs[:7], bs, network._batch_budget() // rows.STEP_FRACTION, 4)
    finally:
        batching.CPU_WORKERS = default

    def run():
        for _, out in batching.iterate(fn, x, bs):
            jax.block_until_ready(out)

    positions = sum((side - 3 * i) ** 2 for i in (1, 2, 3))
    return dict(run=run, label=f"x{workers} ({chunk or 'off'})", batch=bs, images=n, positions=positions,
                compile_s=compile_s, times=[], workers=workers)


if __name__ == "__main__":
    main()

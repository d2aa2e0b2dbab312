"""Per-layer timing of a feature map (where does the time go?).

    python -m experiments.profile_layers --dim 4096 --batch 16 [--method sketch|rf] [--side 32]

Times every layer of the paper's network, [Conv(4x4, VALID), Relu] x 3, GlobalAvgPool, Dense, as
its own jitted function (median of --repeats runs after a warm-up), and for each ReLU under
Sketch its two parts: the kappa features of the unit NNGP features and the NTK product. Prints
milliseconds per image; the whole map is timed as `feature_fn` runs it (whole images, no row
streaming), so the layers add up to about the whole.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _time(fn, *args, repeats=5):
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--degree", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--method", default="sketch", choices=("sketch", "rf"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    import jax

    import ntkfeat as nf
    from ntkfeat.features import sketch
    from ntkfeat.features.activation import normalize
    from ntkfeat.features.state import input_features
    from ntkfeat.features.table import ApplyContext, apply_layer

    layers = []
    for _ in range(3):
        layers += [nf.Conv(filter_shape=(4, 4), W_std=2**0.5), nf.Relu()]
    layers += [nf.GlobalAvgPool(), nf.Dense(W_std=1.0)]
    init_fn, _, _ = nf.serial(*layers)
    method = nf.Sketch(dim=args.dim, degree=args.degree) if args.method == "sketch" else nf.RandomFeatures(dim=args.dim)
    fmap = init_fn(jax.random.PRNGKey(0), (-1, args.side, args.side, 3), method)
    x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.side, args.side, 3))
    ctx = ApplyContext(method, {})

    def whole(x):
        f = apply_layer(fmap.layer, fmap.params, fmap.spec, input_features(x), ctx)
        return f.ntk

    total = _time(jax.jit(whole), x, repeats=args.repeats)
    rows = []
    f = input_features(x)
    for layer, p, spec in zip(fmap.layer.layers, fmap.params.children, fmap.params.specs):
        step = jax.jit(lambda p, f, layer=layer, spec=spec: apply_layer(layer, p, spec, f, ctx))
        rows.append((f"{type(layer).__name__} {spec.spatial} in {spec.nngp_dim}/{spec.ntk_dim}",
                     _time(step, p, f, repeats=args.repeats)))
        if isinstance(layer, nf.Relu) and args.method == "sketch" and f.ntk is not None and p.product is not None:
            u, _, norm = normalize(f.nngp, f.diag)
            heads = jax.jit(lambda p, u: sketch.kappa_features(p.kappa, u, spec.renormalize))
            rows.append(("  kappa features", _time(heads, p, u, repeats=args.repeats)))
            t = heads(p, u)[1] if p.kappa.heads > 1 else None
            product = jax.jit(sketch.ntk_product)
            rows.append(("  ntk product", _time(product, p, f.ntk, u, norm, t, repeats=args.repeats)))
        f = step(p, f)
    print(f"device {jax.devices()[0].device_kind}, dim {args.dim}, batch {args.batch}, {args.side}x{args.side}: "
          f"whole map {total / args.batch * 1e3:.1f} ms/image ({args.batch / total:.1f} images/s)")
    for name, seconds in rows:
        print(f"{name:56s} {seconds / args.batch * 1e3:9.2f} ms/image")


if __name__ == "__main__":
    main()

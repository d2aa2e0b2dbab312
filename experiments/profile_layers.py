"""Per-layer timing of a feature map (where does the time go?).

    python -m experiments.profile_layers --dim 4096 --batch 128 [--method sketch|rf] [--images PATH]

Times every layer of [Conv(4x4), Relu] x 3, GlobalAvgPool, Dense as its own jitted function
(median of --repeats runs after a warm-up), and for each ReLU its parts: the kappa features and
the NTK product. Prints a table in milliseconds per image.
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
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--method", default="sketch", choices=("sketch", "rf"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    import ntkfeat as nf
    from ntkfeat.features import linear, ntk_random_features, ntk_sketch
    from ntkfeat.features.state import Features
    from ntkfeat.network import apply_feature_map
    from ntkfeat.sketches.dot_product import dot_product_features

    layers = []
    for _ in range(3):
        layers += [nf.Conv(filter_shape=(4, 4), W_std=2**0.5), nf.Relu()]
    layers += [nf.GlobalAvgPool(), nf.Dense(W_std=1.0)]
    init_fn, _, _ = nf.serial(*layers)
    method = nf.Sketch(dim=args.dim, degree=args.degree) if args.method == "sketch" else nf.RandomFeatures(dim=args.dim)
    params = init_fn(jax.random.PRNGKey(0), (-1, 32, 32, 3), method)
    x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, 32, 32, 3))
    relu = ntk_sketch.relu_apply if args.method == "sketch" else ntk_random_features.relu_apply
    f = Features(x / 3**0.5, None, jnp.sum(x * x, -1) / 3)
    rows = []
    total = _time(jax.jit(apply_feature_map), params, x, repeats=args.repeats)
    for layer, p, spec in zip(params.layers, params.layer_params, params.specs):
        fn = relu if isinstance(layer, nf.Relu) else linear.RULES[type(layer)][1]
        step = jax.jit(lambda p, f, layer=layer, spec=spec, fn=fn: fn(layer, p, spec, f))
        seconds = _time(step, p, f, repeats=args.repeats)
        rows.append((f"{type(layer).__name__} {spec.spatial} in {spec.nngp_dim}/{spec.ntk_dim}", seconds))
        if isinstance(layer, nf.Relu) and args.method == "sketch" and f.ntk is not None:
            u, _, norm = ntk_sketch.normalize(f.nngp, f.diag, with_norm=True)
            heads = jax.jit(lambda p, u: dot_product_features(p, u, heads=True))
            rows.append(("  kappa features", _time(heads, p["kappa"], u, repeats=args.repeats)))
            k0 = heads(p["kappa"], u)[1]
            # (Timed alone, a borrowed transform is paid here; inside the ReLU it is shared.)
            product = jax.jit(ntk_sketch.ntk_product)
            rows.append(("  ntk product", _time(product, p, f.ntk, u, norm, k0, repeats=args.repeats)))
        f = step(p, f)
    print(f"device {jax.devices()[0].device_kind}, dim {args.dim}, batch {args.batch}: "
          f"whole map {total / args.batch * 1e3:.3f} ms/image ({args.batch / total:.0f} images/s)")
    for name, seconds in rows:
        print(f"{name:48s} {seconds / args.batch * 1e3:8.3f} ms/image")


if __name__ == "__main__":
    main()

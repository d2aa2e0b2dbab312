"""Accuracy envelope of the one-shot Sketch of general activations: error by input scale, W_std and b_std.

For each activation (Erf, Gelu, Sin, Cos, Gaussian, Rbf, Sigmoid_like), a depth-2 stack
[Dense(W_std, b_std), act] x 2, Dense(1), on standardized rows of scikit-learn's diabetes data
scaled by 0.1, 1, 3 and 10: the relative Frobenius error of Sketch(dim) features (planned with
init_fn(..., x=x)) against neural-tangents' NTK in float64, and whether init warned
(SketchAccuracyWarning). Prints the table and writes it as markdown.

    nice -n 5 .venv/bin/python experiments/activation_scales.py --rows 40 --dim 8192 --out docs/activation_scales_table.md
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = ("Erf", "Gelu", "Sin", "Cos", "Gaussian", "Rbf", "Sigmoid_like")
SCALES = (0.1, 1.0, 3.0, 10.0)
B_STDS = (0.0, 1.0, 10.0)
W_STDS = (1.0, 2.0, 3.0)
TARGET = 0.05


def rows(n: int) -> np.ndarray:
    from sklearn.datasets import load_diabetes

    x = load_diabetes().data
    x = (x - x.mean(0)) / x.std(0)
    return x[np.random.RandomState(0).permutation(len(x))[:n]]


def cell(nf, act: str, scale: float, b_std: float, w_std: float, x: np.ndarray, dim: int, key: int):
    b = b_std or None
    layers = []
    for _ in range(2):
        layers += [nf.Dense(512, W_std=w_std, b_std=b), getattr(nf, act)()]
    init_fn, feature_fn, kernel_fn = nf.serial(*layers, nf.Dense(1))
    xs = scale * x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with jax.enable_x64(True):
            k = np.asarray(kernel_fn(jnp.asarray(xs, jnp.float64), jnp.asarray(xs, jnp.float64), "ntk"), np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params = init_fn(jax.random.PRNGKey(key), xs.shape, nf.Sketch(dim=dim), x=xs)
    warned = any(issubclass(w.category, nf.SketchAccuracyWarning) for w in caught)
    phi = np.asarray(feature_fn(params, jnp.asarray(xs, jnp.float32)), np.float64)
    error = float(np.linalg.norm(phi @ phi.T - k) / np.linalg.norm(k))
    return error, warned, params.mode


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--key", type=int, default=0)
    parser.add_argument("--activations", default=",".join(ACTIVATIONS))
    parser.add_argument("--scales", default=",".join(f"{v:g}" for v in SCALES),
                        help="x scales (a subset splits the sweep across processes)")
    parser.add_argument("--out", default=None, help="markdown file for the table")
    args = parser.parse_args()
    import ntkfeat as nf

    x = rows(args.rows)
    lines = [f"| activation | x scale | b_std | W_std=1 | W_std=2 | W_std=3 |", "| --- | --- | --- | --- | --- | --- |"]
    failures, start = 0, time.time()
    for act in args.activations.split(","):
        for scale, b_std in itertools.product([float(v) for v in args.scales.split(",")], B_STDS):
            entries = []
            for w_std in W_STDS:
                error, warned, mode = cell(nf, act, scale, b_std, w_std, x, args.dim, args.key)
                ok = error <= TARGET or warned
                failures += not ok
                entries.append(f"{error:.3f}{' (warns)' if warned else ''}{'' if ok else ' FAIL'}"
                               f"{'' if mode == 'oneshot' else ' [' + mode + ']'}")
            lines.append(f"| {act} | {scale:g} | {b_std:g} | " + " | ".join(entries) + " |")
            print(lines[-1], f"({time.time() - start:.0f} s)", flush=True)
    summary = (f"{failures} cells above {TARGET} without a warning; rows={args.rows}, dim={args.dim}, "
               f"key={args.key}, {time.time() - start:.0f} s")
    print(summary)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n\n" + summary + "\n")


if __name__ == "__main__":
    main()

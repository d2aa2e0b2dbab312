"""How close can any sketch of this size get? Kernel ridge with NTK Sketch features against an ideal sketch.

    python -m experiments.sketch_floor [--datasets wine_white,wine_red] [--dim 16384] [--keys 0,1]

For each regression set (depth-2 ReLU NTK, the network of configs/uci_fidelity.yaml, at most
4,000 training rows, LOO lambda for every row of the table), prints the test RMSE over exact
kernel ridge's on the same rows for:

- the polynomial the one-shot Sketch fits (no sketch: its bias alone);
- `Sketch(dim)` with its LOO lambda, and at the lambda that is best on the test rows (an oracle
  no selection rule can beat: what is left is not a lambda choice);
- an ideal Gaussian sketch of the same plan: the exact monomial degrees kept, each sketched degree
  j replaced by K_j^(1/2) G with G Gaussian of the plan's m_j columns (x1, x2, x4; the mean of
  --draws draws): an i.i.d. Gaussian projection of degree j's feature space. Where the Sketch's
  ratios fall inside the ideal's range, the TensorSRHT tree costs nothing over a Gaussian
  projection, and a target the ideal misses needs more dimensions, not a better-tuned sketch.

The gap on sets whose kernel ridge nearly interpolates (lambda far below the mean eigenvalue) is
the variance of the high-degree blocks: on n rows their Gram is close to a multiple of the
identity, of rank n, and m_j ~ n random directions represent it with Marchenko-Pastur spread.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

LARGE = ("kin8nm", "naval", "power", "protein", "wine_white")


def _rmse(p, y) -> float:
    return float(np.sqrt(np.mean((np.asarray(p).reshape(y.shape) - y) ** 2)))


def floor_rows(name: str, dim: int, keys, scales, max_train: int = 4000, repeats: int = 3, seed: int = 0) -> list[tuple[str, float, float]]:
    import jax

    import ntkfeat as nf
    from ntkfeat.data import load_dataset
    from ntkfeat.features.oneshot import COST_FACTOR, choose_polynomial, oneshot_kernel_fn, reference_cost
    from ntkfeat.solvers import (
        fit_ridge, kernel_ridge_fit, kernel_ridge_predict, predict, select_lambda, select_lambda_kernel,
    )
    from ntkfeat.sketches.dot_product import plan_dot_product_features

    layers = [nf.Dense(W_std=math.sqrt(2.0)), nf.Relu(), nf.Dense(W_std=math.sqrt(2.0)), nf.Relu(), nf.Dense(W_std=1.0)]
    ds = load_dataset(name, n_train=max_train if name in LARGE or max_train < 4000 else None)
    x, y, xt, yt = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    n, d = x.shape
    init_fn, feature_fn, kernel_fn = nf.serial(*layers)
    both = np.concatenate([x, xt]).astype(np.float64)
    with jax.enable_x64(True):
        k_all = np.asarray(kernel_fn(both, None, "ntk"))

    def kernel_ridge(k):
        sel = select_lambda_kernel(k[:n, :n], y, method="loo")
        return _rmse(kernel_ridge_predict(k[n:, :n], kernel_ridge_fit(k[:n, :n], y, sel.lam)), yt), sel.lam

    exact, lam = kernel_ridge(k_all)
    rows = [("exact kernel ridge", exact / exact, lam)]

    # The one-shot map's polynomial of the input correlation, and the plan that sketches it.
    w0, _, theta, _, _ = oneshot_kernel_fn(layers)
    coeffs = choose_polynomial(theta, d, dim, COST_FACTOR * reference_cost(2, d, dim))
    exact_degrees, sketch_dims = plan_dot_product_features(d, coeffs, dim)
    z = w0 * both / math.sqrt(d)
    norms = np.linalg.norm(z, axis=1)
    rho = np.clip((z / norms[:, None]) @ (z / norms[:, None]).T, -1.0, 1.0)
    outer = np.outer(norms, norms)
    low = np.where(np.isin(np.arange(len(coeffs)), exact_degrees), coeffs, 0.0)
    r, lam = kernel_ridge(outer * np.polyval(coeffs[::-1], rho))
    rows.append((f"fitted polynomial, degree {len(coeffs) - 1} (no sketch)", r / exact, lam))

    grid = np.trace(k_all[:n, :n]) / n * np.logspace(-3, 0, 13)
    for key in keys:
        params = init_fn(jax.random.PRNGKey(key), (-1, d), nf.Sketch(dim=dim))
        f, ft = np.asarray(feature_fn(params, x)), np.asarray(feature_fn(params, xt))
        sel = select_lambda(f, y, method="loo")
        rows.append((f"Sketch(dim={dim}), key {key}, LOO lambda", _rmse(predict(fit_ridge(f, y, sel.lam), ft), yt) / exact,
                     sel.lam))
        best = min((_rmse(predict(fit_ridge(f, y, g), ft), yt), g) for g in grid)
        rows.append((f"Sketch(dim={dim}), key {key}, best test lambda", best[0] / exact, best[1]))

    roots = {}
    for j in sketch_dims:
        w, v = np.linalg.eigh(coeffs[j] * outer * rho**j)
        roots[j] = v * np.sqrt(np.clip(w, 0.0, None))
    rng = np.random.default_rng(seed)
    for scale in scales:
        draws = []
        for _ in range(repeats):
            k = outer * np.polyval(low[::-1], rho)
            for j, m in sketch_dims.items():
                g = roots[j] @ rng.standard_normal((len(rho), m * scale)) / math.sqrt(m * scale)
                k += g @ g.T
            draws.append(kernel_ridge(k))
        ratios = [r / exact for r, _ in draws]
        label = f"ideal Gaussian sketch of the plan, x{scale} dims"
        if repeats > 1:
            label += f", mean of {repeats} draws ({min(ratios):.3f}-{max(ratios):.3f})"
        rows.append((label, float(np.mean(ratios)), float(np.median([lam for _, lam in draws]))))
    plan = f"exact degrees {list(exact_degrees)}, sketched {dict(sketch_dims)}"
    print(f"\n{name}: {n} training / {len(xt)} test rows; exact RMSE {exact:.4f}; plan at dim {dim}: {plan}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="wine_white,wine_red")
    ap.add_argument("--dim", type=int, default=16384)
    ap.add_argument("--keys", default="0,1")
    ap.add_argument("--scales", default="1,2,4", help="ideal sketches with these multiples of the plan's dims")
    ap.add_argument("--max-train", type=int, default=4000, help="training rows of the larger sets")
    ap.add_argument("--draws", type=int, default=3, help="ideal sketches drawn per multiple (their mean ratio, range)")
    args = ap.parse_args(argv)
    keys = [int(k) for k in args.keys.split(",")]
    scales = [int(s) for s in args.scales.split(",")]
    for name in args.datasets.split(","):
        rows = floor_rows(name, args.dim, keys, scales, args.max_train, args.draws)
        print("| features | test RMSE / exact's | lambda (median over draws) |\n| --- | --- | --- |")
        for label, ratio, lam in rows:
            print(f"| {label} | {ratio:.4f} | {lam:.3g} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

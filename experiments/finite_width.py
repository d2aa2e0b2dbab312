"""The finite-width NTK over training: how its change and the gap to the kernel shrink with width.

    python -m experiments.finite_width configs/finite_width.yaml            # results in runs/finite_width-<time>/
    python -m experiments.finite_width configs/finite_width.yaml --out DIR --set widths=[64,256] --set steps=100

For each width m and seed, the finite network of `architecture` (ntkfeat layers, hidden widths
set to m, NTK parameterization) is trained with `ntkfeat.finite_width.train` (optax SGD on
L = (1/2n) sum (f - y)^2, full batch unless batch_size is set; the centered model
f(theta, .) - f(theta_0, .)). Recorded per run:

- drift: ||Theta_T - Theta_0||_F / ||Theta_0||_F of the empirical NTK on the first `probe_rows`
  training rows (and at record_steps, in results.json);
- gap: ||f_net - f_kernel|| / ||f_kernel|| on the test rows, f_kernel the predictions of the same
  gradient descent (eta, steps) on the infinite-width NTK (`kernel_gd_predictions`), its m -> oo limit;
- test RMSE of the network (standardized targets), beside the kernel's and kernel ridge's (lambda
  by leave-one-out) on the infinite-width NTK;
- for the first seed, in float64: the third-order kernel's prediction of the NTK's change over
  the first k steps of a small learning rate (k * eta * dTheta/dt at theta_0, a JVP of the empirical
  NTK) against the measured change (`check_first_steps`): its relative error per k.

The slopes of log(mean drift) and log(mean gap) against log(width) are fitted by least squares
(`fit_power_law`) and printed, written to summary.md and drawn on the plots: measured, not assumed.

Config (every key optional, defaults shown; unknown keys are refused with the allowed ones):

    name: finite_width              # names the output folder (default: the file stem)
    seed: 0                         # network keys: jax.random.PRNGKey(seed + i), i < seeds
    data: {name: diabetes, split: 0, n_train: null, n_test: null, root: null}   # ntkfeat.data.load_dataset
    architecture: [{Dense: {W_std: 1.4142135623730951}}, Gelu, {Dense: {W_std: 1.0}}]  # as experiments.run
    widths: [64, 128, 256, 512, 1024, 2048, 4096]
    seeds: 3
    steps: 500
    learning_rate: 1.0
    batch_size: null                # null: full-batch gradient descent; else SGD batches
    record_steps: [1, 10, 100]
    probe_rows: 64
    third_order: {learning_rate: 0.01, steps: [1, 10]}   # null: skip

Outputs in --out (default runs/<name>-<YYYYmmdd-HHMMSS>): results.json (config, records, summary,
versions, git commit), results.csv (one row per width and seed), summary.md (one row per width and
the fitted slopes), config.yaml, drift_vs_width.png, gap_vs_width.png and drift_vs_step.png.
"""

from __future__ import annotations

import pathlib
import re
import sys
import time

import numpy as np

from experiments import _script
from ntkfeat.runs import report
from ntkfeat.runs.config import (ConfigError, _expand_architecture, build_layers, check_keys, integer,
                                 list_of, number, optional, string)
from ntkfeat.runs.run import _git, _now, _versions

RECORD_FIELDS = ("width", "seed", "num_params", "drift", "train_loss", "test_rmse", "kernel_test_rmse", "gap",
                 "third_order_error", "seconds")
DEFAULT_ARCHITECTURE = [{"Dense": {"W_std": 2**0.5}}, "Gelu", {"Dense": {"W_std": 1.0}}]


def _name(value, path):
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise ConfigError(f"{path}: expected letters, digits, '.', '_' or '-' (it names the output folder), "
                          f"got {value!r}")
    return value


def _increasing(check_list):
    def check(value, path):
        value = check_list(value, path)
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ConfigError(f"{path}: expected strictly increasing values, got {value!r}")
        return value

    return check


_DATA_FIELDS = {
    "name": (string, "diabetes"),
    "split": (integer(0), 0),
    "n_train": (optional(integer(2)), None),
    "n_test": (optional(integer(1)), None),
    "root": (optional(string), None),
}
_THIRD_ORDER_FIELDS = {
    "learning_rate": (number(0.0, exclusive=True), 0.01),
    "steps": (_increasing(list_of(integer(1), what="list of integers >= 1")), [1, 10]),
}
_FIELDS = {
    "name": (_name, None),
    "seed": (integer(0), 0),
    "data": (lambda v, p: v, None),  # checked by validate()
    "architecture": (lambda v, p: v, None),
    "widths": (_increasing(list_of(integer(1), what="list of integers >= 1")), [64, 128, 256, 512, 1024, 2048, 4096]),
    "seeds": (integer(1), 3),
    "steps": (integer(1), 500),
    "learning_rate": (number(0.0, exclusive=True), 1.0),
    "batch_size": (optional(integer(1)), None),
    "record_steps": (list_of(integer(0), nonempty=False, what="list of integers >= 0"), [1, 10, 100]),
    "probe_rows": (integer(2), 64),
    "third_order": (lambda v, p: v, "default"),
}


def validate(raw: dict, default_name: str = "finite_width") -> dict:
    """The resolved config of a raw mapping (defaults filled in); ConfigError naming the key otherwise."""
    config = check_keys(raw, "", _FIELDS)
    config["name"] = config["name"] or default_name
    config["data"] = check_keys(raw.get("data") or {}, "data", _DATA_FIELDS, where=" for the data set")
    config["architecture"] = _expand_architecture(raw.get("architecture") or DEFAULT_ARCHITECTURE, "architecture")
    build_layers(config["architecture"])  # refuses bad layer arguments now, not after the first width
    third = config["third_order"]
    config["third_order"] = None if third is None else check_keys(
        {} if third == "default" else third, "third_order", _THIRD_ORDER_FIELDS)
    return config


def load_config(path, overrides=()) -> dict:
    return _script.load_config(path, overrides, validate)


# --------------------------------------------------------------------------- the experiment


def load_data(config):
    import ntkfeat as nf

    d = config["data"]
    ds = nf.data.load_dataset(d["name"], root=d["root"], split=d["split"], n_train=d["n_train"], n_test=d["n_test"],
                              seed=config["seed"], task="regression")
    return (np.asarray(ds.x_train, np.float32), np.asarray(ds.y_train, np.float32).ravel(),
            np.asarray(ds.x_test, np.float32), np.asarray(ds.y_test, np.float32).ravel())


def kernel_references(layers, x, y, x_test, y_test, config) -> dict:
    """Infinite-width NTK (float64): gradient-descent predictions, and kernel ridge with LOO lambda."""
    import jax
    import ntkfeat as nf
    from ntkfeat import finite_width as fw
    from ntkfeat import solvers

    _, _, kernel_fn = nf.serial(*layers)
    with jax.enable_x64(True):
        x64, xs64 = np.float64(x), np.float64(x_test)
        k_tt = np.asarray(kernel_fn(x64, None, "ntk"), np.float64)
        k_st = np.asarray(kernel_fn(xs64, x64, "ntk"), np.float64)
    gd = fw.kernel_gd_predictions(k_tt, k_st, y, learning_rate=config["learning_rate"], steps=config["steps"])
    lam = solvers.select_lambda_kernel(k_tt, y, method="loo").lam
    ridge = np.asarray(solvers.kernel_ridge_predict(k_st, solvers.kernel_ridge_fit(k_tt, y, lam)))
    rmse = lambda p: float(np.sqrt(np.mean((p - y_test) ** 2)))  # noqa: E731
    return {"gd": gd, "gd_test_rmse": rmse(gd), "ridge_lambda": float(lam), "ridge_test_rmse": rmse(ridge),
            "max_eig_over_n": float(np.linalg.eigvalsh(k_tt)[-1] / len(y))}


def third_order_check(layers, width, key, x, y, config) -> dict:
    """Relative error of k * eta * dTheta/dt(theta_0) against Theta_k - Theta_0, per k (float64)."""
    import jax
    from ntkfeat import finite_width as fw

    spec, probe = config["third_order"], config["probe_rows"]
    with jax.enable_x64(True):
        net = fw.finite_width_network(layers, width)
        params = fw.init_params(jax.random.split(key)[0], net, x.shape)  # train's theta_0 for this key
        x64, y64 = np.float64(x), np.float64(y)
        out = {}
        for k in spec["steps"]:
            check = fw.check_first_steps(net, params, x64, y64, x64[:probe], learning_rate=spec["learning_rate"],
                                         steps=k)
            out[k] = {"relative_error": check.relative_error, "relative_change": check.relative_change}
    return out


def run(config: dict, out: pathlib.Path | None = None, log=print) -> tuple[list, dict]:
    """Every (width, seed) record and the per-width summary; writes outputs into `out` after each width."""
    import jax
    from ntkfeat import finite_width as fw
    from jax.flatten_util import ravel_pytree

    x, y, x_test, y_test = load_data(config)
    layers = build_layers(config["architecture"])
    ref = kernel_references(layers, x, y, x_test, y_test, config)
    if ref["max_eig_over_n"] * config["learning_rate"] >= 2:
        log(f"warning: learning_rate * max eig(NTK) / n = {ref['max_eig_over_n'] * config['learning_rate']:.3g} "
            ">= 2: gradient descent on the kernel diverges")
    log(f"{len(y)} training / {len(y_test)} test rows; infinite-width NTK: GD test RMSE {ref['gd_test_rmse']:.4f}, "
        f"ridge (LOO lambda {ref['ridge_lambda']:.3g}) {ref['ridge_test_rmse']:.4f}")
    records, meta = [], _metadata(config, ref)
    probe = x[:config["probe_rows"]]
    for width in config["widths"]:
        net = fw.finite_width_network(layers, width)
        for i in range(config["seeds"]):
            seed = config["seed"] + i
            key = jax.random.PRNGKey(seed)
            t = time.perf_counter()
            r = fw.train(key, net, x, y, steps=config["steps"], learning_rate=config["learning_rate"],
                         record_steps=config["record_steps"], x_probe=probe, x_test=x_test,
                         batch_size=config["batch_size"])
            seconds = time.perf_counter() - t
            third = third_order_check(layers, width, key, x, y, config) if (i == 0 and config["third_order"]) else None
            rec = {"width": width, "seed": seed, "num_params": int(ravel_pytree(r.params_init)[0].shape[0]),
                   "drift": float(r.ntk_change[-1]), "train_loss": float(r.train_loss[-1]),
                   "test_rmse": float(np.sqrt(np.mean((r.test_predictions - y_test) ** 2))),
                   "kernel_test_rmse": ref["gd_test_rmse"], "gap": fw.relative_gap(r.test_predictions, ref["gd"]),
                   "third_order_error": None if third is None else third[min(third)]["relative_error"],
                   "seconds": seconds, "record_steps": r.steps.tolist(), "ntk_change": r.ntk_change.tolist(),
                   "train_losses": r.train_loss.tolist(), "third_order": third}
            records.append(rec)
            extra = "" if third is None else "  third-order error " + ", ".join(
                f"{k} step{'s' * (k > 1)} {v['relative_error']:.2e}" for k, v in third.items())
            log(f"width {width:5d} seed {seed}  drift {rec['drift']:.4f}  gap {rec['gap']:.4f}  "
                f"test RMSE {rec['test_rmse']:.4f}  ({seconds:.1f} s){extra}")
        if out is not None:
            write_outputs(out, config, records, dict(meta, status="running"))
    if out is not None:
        write_outputs(out, config, records, dict(meta, status="finished", end=_now()))
    return records, summarize(records)


def _metadata(config, ref) -> dict:
    import jax

    return {"command": " ".join(sys.argv), "start": _now(), "versions": _versions(), "git": _git(),
            "device": str(jax.devices()[0]), "kernel": {k: v for k, v in ref.items() if k != "gd"}}


def summarize(records) -> dict:
    """Per width: mean and std of drift and gap, mean test RMSE; fitted slopes over widths."""
    widths = sorted({r["width"] for r in records})
    rows = []
    for w in widths:
        rs = [r for r in records if r["width"] == w]
        row = {"width": w, "runs": len(rs), "num_params": rs[0]["num_params"]}
        for k in ("drift", "gap", "test_rmse"):
            v = np.array([r[k] for r in rs])
            row[k], row[k + "_std"] = float(v.mean()), float(v.std())
        row["kernel_test_rmse"] = rs[0]["kernel_test_rmse"]
        row["third_order"] = next((r["third_order"] for r in rs if r["third_order"]), None)
        rows.append(row)
    out = {"rows": rows}
    if len(widths) >= 2:
        from ntkfeat.finite_width import fit_power_law

        for k in ("drift", "gap"):
            out[k + "_slope"], out[k + "_intercept"] = fit_power_law(widths, [row[k] for row in rows])
    return out


def format_table(summary) -> str:
    """Markdown: one row per width, then the fitted slopes."""
    rows = summary["rows"]
    ks = sorted({k for row in rows if row["third_order"] for k in row["third_order"]})
    head = (["width", "params", "runs", "drift (mean +- std)", "gap to kernel", "net test RMSE", "kernel test RMSE"]
            + [f"3rd-order err, {k} step{'s' * (k > 1)}" for k in ks])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        third = row["third_order"] or {}
        cells = [str(row["width"]), str(row["num_params"]), str(row["runs"]),
                 f"{row['drift']:.4g} +- {row['drift_std']:.2g}", f"{row['gap']:.4g} +- {row['gap_std']:.2g}",
                 f"{row['test_rmse']:.4f}", f"{row['kernel_test_rmse']:.4f}"]
        cells += [f"{third[k]['relative_error']:.2e}" if k in third else "-" for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    if "drift_slope" in summary:
        lines += ["", f"fitted slope of log(mean drift) vs log(width): {summary['drift_slope']:.3f}",
                  f"fitted slope of log(mean gap) vs log(width): {summary['gap_slope']:.3f}"]
    return "\n".join(lines)


def _log_log(ax, records, summary, key, label):
    widths = [row["width"] for row in summary["rows"]]
    ax.scatter([r["width"] for r in records], [r[key] for r in records], s=10, alpha=0.4, color="gray",
               label="one network key")
    ax.plot(widths, [row[key] for row in summary["rows"]], "o", color="C0", label="mean over keys")
    if key + "_slope" in summary:
        w = np.geomspace(widths[0], widths[-1], 50)
        ax.plot(w, np.exp(summary[key + "_intercept"]) * w ** summary[key + "_slope"], "--", color="C1",
                label=f"fit: slope {summary[key + '_slope']:.3f}")
        # References through the first mean: -1/2 is the O(m^-1/2) bound on the NTK's change (Jacot et
        # al. 2018, Lee et al. 2019) and the size of Theta_0's own fluctuation; -1 is the O(1/m) rate
        # of dTheta/dt that Dyer and Gur-Ari (ICLR 2020) derive.
        for slope, style in ((-0.5, ":"), (-1.0, "-.")):
            ax.plot(w, summary["rows"][0][key] * (w / widths[0]) ** slope, style, color="black", alpha=0.5,
                    label=f"slope {slope:g} (reference)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.set_xlabel("width m")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def plot(records, summary, config, folder: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = "" if config["batch_size"] is None else f", batch {config['batch_size']}"
    title = f"{config['data']['name']}, {config['steps']} steps of eta={config['learning_rate']}{batch}"
    for key, label, name in (("drift", "||Theta_T - Theta_0||_F / ||Theta_0||_F", "drift_vs_width.png"),
                             ("gap", "||f_net - f_kernel|| / ||f_kernel|| (test)", "gap_vs_width.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        _log_log(ax, records, summary, key, label)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        report._save(fig, folder / name)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, w in enumerate(sorted({r["width"] for r in records})):
        r = next(r for r in records if r["width"] == w)
        steps, change = np.array(r["record_steps"][1:]), np.array(r["ntk_change"][1:])
        ax.plot(steps, change, "o-", color=plt.cm.viridis(i / max(1, len(summary["rows"]) - 1)), label=f"m={w}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("||Theta_t - Theta_0||_F / ||Theta_0||_F")
    ax.set_title(title + " (first key)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    report._save(fig, folder / "drift_vs_step.png")
    plt.close(fig)


def write_outputs(out: pathlib.Path, config, records, meta) -> None:
    summary = summarize(records)
    report.write_json(out / "results.json", dict(meta, config=config, records=records, summary=summary))
    report.write_csv(out / "results.csv", records, fields=RECORD_FIELDS)
    report.atomic_write(out / "summary.md", format_table(summary) + "\n")
    if records:
        plot(records, summary, config, out)


def describe(config) -> str:
    layers = build_layers(config["architecture"])
    runs = len(config["widths"]) * config["seeds"]
    third = config["third_order"]
    return "\n".join([
        f"{config['name']}: {runs} trainings ({len(config['widths'])} widths x {config['seeds']} keys)",
        f"  data: {config['data']}",
        f"  layers: {[type(layer).__name__ for layer in layers]}, widths {config['widths']}",
        f"  {config['steps']} steps of eta={config['learning_rate']}, "
        f"{'full batch' if config['batch_size'] is None else 'batch ' + str(config['batch_size'])}; NTK on "
        f"{config['probe_rows']} probe rows at steps {sorted({0, config['steps'], *config['record_steps']})}",
        "  third-order check: " + ("off" if third is None else f"eta={third['learning_rate']}, steps {third['steps']}"),
    ])


def main(argv=None) -> int:
    started = _script.start(argv, prog="python -m experiments.finite_width", doc=__doc__, example="configs/finite_width.yaml",
                            set_example="widths=[64,256]", load=load_config, describe=describe)
    if isinstance(started, int):
        return started
    config, out = started
    records, summary = run(config, out, log=lambda s: print(s, flush=True))
    print(format_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

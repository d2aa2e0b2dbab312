"""Run outputs: atomic file writes, the results table, CSV and the two plots, and reading a run back.

Every file is written to a temporary file in the same folder and moved into place with
`os.replace`, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib
import tempfile

import numpy as np
import yaml

RECORD_FIELDS = (
    "dataset", "method", "label", "dim", "out_dim", "repeat", "key_seed", "n_train", "n_test", "task", "lambda",
    "test_rmse", "test_accuracy", "test_mse", "val_score", "kernel_rel_fro", "spectral_eps", "statistical_dimension",
    "prediction_agreement", "feature_seconds", "compile_seconds", "solve_seconds", "init_seconds", "solver_path", "note",
)
PLOT_FILES = ("kernel_error_vs_dim.png", "metric_vs_time.png")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp makes 0600 files


def atomic_write(path, data: bytes | str) -> None:
    """Writes a temporary file next to `path`, then renames it over `path`."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def jsonable(value):
    """Plain JSON values from NumPy scalars and arrays, tuples and paths; NaN/inf become null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return value


def write_json(path, obj) -> None:
    atomic_write(path, json.dumps(jsonable(obj), indent=2) + "\n")


def write_yaml(path, obj, header: str = "") -> None:
    atomic_write(path, header + yaml.safe_dump(jsonable(obj), sort_keys=False, default_flow_style=None, width=100))


def write_csv(path, records, fields=RECORD_FIELDS) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in fields})
    atomic_write(path, buf.getvalue())


# --------------------------------------------------------------------------- table

_TABLE = (  # (header, key, format); "run" only in tables across runs (experiments.compare)
    ("run", "run", "{}"), ("dataset", "dataset", "{}"), ("label", "label", "{}"), ("dim", "dim", "{}"), ("out_dim", "out_dim", "{}"),
    ("rep", "repeat", "{}"), ("n_train", "n_train", "{}"), ("lambda", "lambda", "{:.3g}"),
    ("rmse", "test_rmse", "{:#.4g}"), ("accuracy", "test_accuracy", "{:.4f}"), ("kernel_err", "kernel_rel_fro", "{:.4f}"),
    ("feat_s", "feature_seconds", "{:.2f}"), ("compile_s", "compile_seconds", "{:.2f}"),
    ("solve_s", "solve_seconds", "{:.2f}"),
)


def format_table(records) -> str:
    """Aligned plain-text table, one line per record; columns that are empty everywhere are left out."""
    columns = [c for c in _TABLE if any(r.get(c[1]) is not None for r in records)]
    cells = [[h for h, _, _ in columns]]
    for r in records:
        cells.append(["-" if r.get(key) is None else fmt.format(r[key]) for _, key, fmt in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    left = [key in ("run", "dataset", "label") for _, key, _ in columns]
    lines = []
    for j, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if l else c.rjust(w) for c, w, l in zip(row, widths, left)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def _grouped(records, dataset, x_key, y_key):
    """{label: (method, [(x, mean y, min y, max y)] in the order of dim)} over repeats, for one dataset."""
    groups = {}
    for r in records:
        if r["dataset"] != dataset or r.get(y_key) is None or r.get(x_key) is None:
            continue
        groups.setdefault(r["label"], (r["method"], {}))[1].setdefault(r["dim"], []).append((r[x_key], r[y_key]))
    out = {}
    for label, (method, by_dim) in groups.items():
        points = []
        for _, values in sorted(by_dim.items(), key=lambda item: item[0] or 0):
            xs, ys = zip(*values)
            points.append((float(np.mean(xs)), float(np.mean(ys)), min(ys), max(ys)))
        out[label] = (method, points)
    return out


def _panels(n: int):
    # A Figure on its own Agg canvas: no pyplot state, so the caller's backend (a notebook's inline
    # one, say) is left as it is.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(5.2 * cols, 4.0 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


def _save(fig, path) -> None:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(path, buf.getvalue())


def plot_kernel_error(records, datasets, path) -> None:
    """kernel_rel_fro against dim, log-log, one line per label (the shaded band: min to max over repeats).

    The requested dim, not out_dim: a sketch whose exact feature count is below dim (e.g. the
    monomials of a low-degree polynomial) keeps its place, and its flat line shows the bias.
    """
    fig, axes = _panels(len(datasets))
    for ax, dataset in zip(axes, datasets):
        groups = _grouped(records, dataset, "dim", "kernel_rel_fro")
        for i, (label, (_, points)) in enumerate(groups.items()):
            x, y, lo, hi = map(np.asarray, zip(*points))
            # Styles and shrinking markers cycle, so labels with equal errors (the same features
            # on different training rows) stay visible on top of each other.
            line, = ax.plot(x, y, label=label, **_style(i))
            if np.any(hi > lo):
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        if groups:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        else:
            _empty_panel(ax, "no kernel errors recorded")
        ax.set_title(dataset)
        ax.set_xlabel("dim")
        ax.set_ylabel("|Phi Phi^T - K|_F / |K|_F")
        ax.grid(True, which="both", alpha=0.3)
    _save(fig, path)


def _style(i: int) -> dict:
    return {"linestyle": ("-", "--", ":", "-.")[i % 4], "marker": ("o", "s", "^", "D", "v")[i % 5],
            "markersize": max(7 - 1.5 * (i % 4), 2.5)}


def _empty_panel(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def steady_seconds(record) -> float | None:
    """feature_seconds - compile_seconds + solve_seconds: a run's time without compiling its feature map.

    compile_seconds is the first feature batch's time beyond the mean of the others (0 where it
    cannot be estimated, and for exact kernel ridge; absent in results written before it existed).
    """
    if record.get("feature_seconds") is None or record.get("solve_seconds") is None:
        return None
    return record["feature_seconds"] - (record.get("compile_seconds") or 0.0) + record["solve_seconds"]


def plot_metric_vs_time(records, datasets, tasks, path) -> None:
    """Test RMSE (regression) or accuracy (classification) against steady-state seconds
    (`steady_seconds`: feature + solve seconds without the feature map's compilation)."""
    timed = [dict(r, steady_seconds=steady_seconds(r)) for r in records if steady_seconds(r) is not None]
    fig, axes = _panels(len(datasets))
    for ax, dataset in zip(axes, datasets):
        key = "test_accuracy" if tasks[dataset] == "classification" else "test_rmse"
        groups = _grouped(timed, dataset, "steady_seconds", key)
        exact = 0
        for i, (label, (method, points)) in enumerate(groups.items()):
            x, y, _, _ = map(np.asarray, zip(*points))
            if method == "exact":  # a star; more than one (runs compared): other markers and colours
                ax.plot(x, y, marker=("*", "P", "X", "h", "p")[exact % 5], markersize=14 if exact % 5 == 0 else 10,
                        linestyle="none", label=label, **({"color": "k"} if exact == 0 else {}))
                exact += 1
            else:
                ax.plot(x, y, label=label, **_style(i))
        if groups:
            ax.set_xscale("log")
            ax.legend(fontsize=8)
        else:
            _empty_panel(ax, "no test results (solver: null)")
        ax.set_title(dataset)
        ax.set_xlabel("steady-state seconds: features + solve (no compile)")
        ax.set_ylabel("test accuracy" if key == "test_accuracy" else "test RMSE (original units)")
        ax.grid(True, which="both", alpha=0.3)
    _save(fig, path)


def plot_run(records, datasets, tasks, folder) -> list:
    """Both plots of a run (PLOT_FILES) into `folder`; returns their paths.

    datasets: the panel titles in order (dataset labels); tasks: {dataset: 'regression' | 'classification'}.
    """
    folder = pathlib.Path(folder)
    paths = [folder / name for name in PLOT_FILES]
    plot_kernel_error(records, datasets, paths[0])
    plot_metric_vs_time(records, datasets, tasks, paths[1])
    return paths


# --------------------------------------------------------------------------- reading runs back


def load_run(path) -> dict:
    """A run's results.json (`path`: the run folder or the file itself) as a dict."""
    path = pathlib.Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no results.json (not a run folder of experiments.run)")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON: {e}") from None


def datasets_and_tasks(result: dict) -> tuple:
    """(dataset labels in run order, {label: task}) from a results.json dict (its `datasets`
    metadata, else its records)."""
    labels, tasks = [], {}
    for info in result.get("datasets") or []:
        if info["label"] not in tasks:
            labels.append(info["label"])
            tasks[info["label"]] = info.get("task") or "regression"
    for r in result.get("records", []):
        if r["dataset"] not in tasks:
            labels.append(r["dataset"])
            tasks[r["dataset"]] = r.get("task") or "regression"
    return labels, tasks

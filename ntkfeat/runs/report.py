"""Run outputs: atomic file writes, the results table, CSV and the plots, and reading a run back.

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
from typing import NamedTuple

import numpy as np
import yaml

RECORD_FIELDS = (
    "dataset", "method", "label", "dim", "out_dim", "repeat", "key_seed", "n_train", "n_test", "task", "lambda",
    "test_rmse", "test_accuracy", "test_mse", "val_score", "kernel_rel_fro", "spectral_eps", "statistical_dimension",
    "prediction_agreement", "feature_seconds", "compile_seconds", "solve_seconds", "solve_compile_seconds",
    "init_seconds", "solver_path", "note",
)
PLOT_FILES = ("kernel_error_vs_dim.png", "metric_vs_time.png")
ROWS_PLOT = "metric_vs_rows.png"  # only for runs with a series over training rows (`plot_metric_vs_rows`)


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
    ("solve_s", "solve_seconds", "{:.2f}"), ("solve_compile_s", "solve_compile_seconds", "{:.2f}"),
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
#
# One colour per method label, one line style per run (`run` key, set by experiments.compare),
# so that equal results of two runs show as two styles of one colour. Each point is the mean
# over the record's repeats (keys); where there are several, bars or a band show their min-max.


class Point(NamedTuple):
    dim: int | None
    x: float  # mean over repeats
    x_lo: float
    x_hi: float
    y: float
    y_lo: float
    y_hi: float
    repeats: int


def _series(records, dataset, x_key, y_key) -> dict:
    """{(run, label): (method, [Point] in the order of dim)} for one dataset; run is None for a
    single run's records."""
    groups = {}
    for r in records:
        if r["dataset"] != dataset or r.get(y_key) is None or r.get(x_key) is None:
            continue
        key = (r.get("run"), r["label"])
        groups.setdefault(key, (r["method"], {}))[1].setdefault(r["dim"], []).append((r[x_key], r[y_key]))
    out = {}
    for key, (method, by_dim) in groups.items():
        points = []
        for dim, values in sorted(by_dim.items(), key=lambda item: item[0] or 0):
            xs, ys = (np.asarray(v, np.float64) for v in zip(*values))
            points.append(Point(dim, float(xs.mean()), float(xs.min()), float(xs.max()), float(ys.mean()),
                                float(ys.min()), float(ys.max()), len(values)))
        out[key] = (method, points)
    return out


class _Styles:
    """Colour by label (exact: black), line style by run, marker by label (shrinking, so that
    labels with equal values stay visible on top of each other)."""

    def __init__(self, records):
        self.runs = list(dict.fromkeys(r.get("run") for r in records))
        self.labels = list(dict.fromkeys(r["label"] for r in records if r["method"] != "exact"))

    def legend(self, run, label) -> str:
        return label if run is None else f"{run}: {label}"

    def line(self, run, label) -> dict:
        i, j = self.labels.index(label), self.runs.index(run)
        return {"color": f"C{i % 10}", "linestyle": ("-", "--", ":", "-.")[j % 4],
                "marker": ("o", "s", "^", "D", "v")[i % 5], "markersize": max(7 - 1.5 * (i % 4), 2.5)}

    def exact(self, run) -> dict:
        j = self.runs.index(run)
        return {"color": "k", "linestyle": "none", "marker": ("*", "P", "X", "h", "p")[j % 5],
                "markersize": 14 if j % 5 == 0 else 10}


def _panels(n: int):
    # A Figure on its own Agg canvas: no pyplot state, so the caller's backend (a notebook's inline
    # one, say) is left as it is.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(5.6 * cols, 4.4 * rows))
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


def _dim_ticks(ax, dims) -> None:
    """Log axis with one tick per dim used, written out (256, not 2.56x10^2)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    dims = sorted({int(d) for d in dims})
    ax.xaxis.set_major_locator(FixedLocator(dims))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(d) for d in dims], rotation=45 if len(dims) > 5 else 0, fontsize=8)


def _plain_log_ticks(axis) -> None:
    """Log axis ticks at 1, 2, 3, 5 x 10^k, written out (0.02, not 2x10^-2)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _title(ax, dataset: str, series, what: str) -> None:
    """The dataset, and how repeats are shown where a point has several."""
    counts = sorted({p.repeats for _, points in series.values() for p in points})
    if counts and counts[-1] > 1:
        keys = f"{counts[-1]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        ax.set_title(f"{dataset}\nmean over {keys} keys; {what}: min-max", fontsize=10)
    else:
        ax.set_title(dataset)


def plot_kernel_error(records, datasets, path):
    """kernel_rel_fro against dim, log-log, one line per (run, label); the band: min to max over repeats.

    The requested dim, not out_dim: a sketch whose exact feature count is below dim (e.g. the
    monomials of a low-degree polynomial) keeps its place, and its flat line shows the bias.
    Returns the Figure (also written to `path`).
    """
    styles = _Styles(records)
    fig, axes = _panels(len(datasets))
    for ax, dataset in zip(axes, datasets):
        series = _series(records, dataset, "dim", "kernel_rel_fro")
        for (run, label), (_, points) in series.items():
            x = np.asarray([p.x for p in points])
            style = styles.line(run, label)
            ax.plot(x, [p.y for p in points], label=styles.legend(run, label), **style)
            lo, hi = np.asarray([p.y_lo for p in points]), np.asarray([p.y_hi for p in points])
            if np.any(hi > lo):
                ax.fill_between(x, lo, hi, color=style["color"], alpha=0.15, linewidth=0)
        if series:
            ax.set_xscale("log")
            ax.set_yscale("log")
            _dim_ticks(ax, [p.dim for _, points in series.values() for p in points])
            _plain_log_ticks(ax.yaxis)
            ax.legend(fontsize=8)
        else:
            _empty_panel(ax, "no kernel errors recorded")
        _title(ax, dataset, series, "band")
        ax.set_xlabel("dim (features requested)")
        ax.set_ylabel("|Phi Phi^T - K|_F / |K|_F")
        ax.grid(True, which="both", alpha=0.3)
    _save(fig, path)
    return fig


def _empty_panel(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _feature_compile_included(record) -> bool:
    """Whether a record's feature_seconds still holds compilation: a single feature batch's (the
    run's note says so), or the exact kernel's in results written before it was counted."""
    if record["method"] == "exact":
        return record.get("solve_compile_seconds") is None
    return "compile_seconds 0" in (record.get("note") or "")


def steady_seconds(record) -> float | None:
    """feature_seconds - compile_seconds + solve_seconds - solve_compile_seconds: a run's time
    without compilation, as far as the record separates it.

    compile_seconds is the first feature batch's time beyond the mean of the others (0 where it
    cannot be estimated), or for the exact kernel JAX's own count of its compilation;
    solve_compile_seconds is JAX's count of the solver's compilation
    (`experiments.fitting.compile_clock`). Both are absent or 0 in results written before they
    were counted, whose times then still include them; `time_axis_label` says which is the case.
    """
    if record.get("feature_seconds") is None or record.get("solve_seconds") is None:
        return None
    return (record["feature_seconds"] - (record.get("compile_seconds") or 0.0) + record["solve_seconds"]
            - (record.get("solve_compile_seconds") or 0.0))


def time_axis_label(records) -> str:
    """What `steady_seconds` of these records measures, in words."""
    features = [r for r in records if r["method"] != "exact"]
    included = []
    if any(r.get("solve_compile_seconds") is None for r in features):
        included.append("the solver's")
    if any(_feature_compile_included(r) for r in features):
        included.append("single-batch features'")
    if any(_feature_compile_included(r) for r in records if r["method"] == "exact"):
        included.append("exact kernel ridge's")
    if not included:
        return "seconds: features + solve, compilation excluded"
    return f"seconds: features + solve, compilation excluded\nexcept {', '.join(included)} (not separated)"


def plot_metric_vs_time(records, datasets, tasks, path):
    """Test RMSE (regression) or accuracy (classification) against `steady_seconds`, one line per
    (run, label) through its dims, each point labelled with its dim; bars: min-max over repeats.
    Returns the Figure (also written to `path`)."""
    timed = [dict(r, steady_seconds=steady_seconds(r)) for r in records if steady_seconds(r) is not None]
    styles = _Styles(records)
    fig, axes = _panels(len(datasets))
    for ax, dataset in zip(axes, datasets):
        key = "test_accuracy" if tasks[dataset] == "classification" else "test_rmse"
        series = _series(timed, dataset, "steady_seconds", key)
        for (run, label), (method, points) in series.items():
            style = styles.exact(run) if method == "exact" else styles.line(run, label)
            x, y = np.asarray([p.x for p in points]), np.asarray([p.y for p in points])
            spread = any(p.repeats > 1 for p in points)
            xerr = np.asarray([[p.x - p.x_lo for p in points], [p.x_hi - p.x for p in points]]) if spread else None
            yerr = np.asarray([[p.y - p.y_lo for p in points], [p.y_hi - p.y for p in points]]) if spread else None
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, label=styles.legend(run, label), capsize=2, elinewidth=0.8,
                        **style)
            for p in points:
                if p.dim is not None:
                    ax.annotate(str(p.dim), (p.x, p.y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                                color=style["color"])
        shown = [r for r in timed if r["dataset"] == dataset and r.get(key) is not None]
        if series:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
            ax.legend(fontsize=8)
            ax.set_xlabel(time_axis_label(shown), fontsize=9)
        else:
            _empty_panel(ax, "no test results (solver: null)")
        _title(ax, dataset, series, "bars")
        ax.set_ylabel("test accuracy" if key == "test_accuracy" else "test RMSE (original units)")
        ax.grid(True, which="both", alpha=0.3)
    _save(fig, path)
    return fig


def series_label(label: str) -> str:
    """The series a method label belongs to in `plot_metric_vs_rows`: the label up to an '@' suffix
    (`ntk_sketch@2k` and `ntk_sketch` are one series over the number of training rows)."""
    return label.split("@", 1)[0]


def _row_series(records, dataset, y_key) -> dict:
    """{(run, method, series label, dim): [Point over n_train, ascending]} for one dataset, keeping
    only series with two or more training-set sizes; Point.x is n_train, Point.dim the dim."""
    groups = {}
    for r in records:
        if r["dataset"] != dataset or r.get(y_key) is None or r.get("n_train") is None:
            continue
        key = (r.get("run"), r["method"], series_label(r["label"]), r["dim"])
        groups.setdefault(key, {}).setdefault(int(r["n_train"]), []).append(r[y_key])
    out = {}
    for key, by_rows in groups.items():
        if len(by_rows) < 2:
            continue
        points = []
        for n, values in sorted(by_rows.items()):
            ys = np.asarray(values, np.float64)
            points.append(Point(key[3], float(n), float(n), float(n), float(ys.mean()), float(ys.min()),
                                float(ys.max()), len(values)))
        out[key] = points
    return out


def plot_metric_vs_rows(records, datasets, tasks, path):
    """Test accuracy (classification) or RMSE (regression) against the number of training rows, one
    line per (run, series label, dim) with two or more sizes (labels that differ only by an '@...'
    suffix are one series), exact kernel ridge in black; bars: min-max over repeats.

    Returns the Figure (also written to `path`), or None (nothing written) where no dataset has such
    a series.
    """
    keys = {d: "test_accuracy" if tasks[d] == "classification" else "test_rmse" for d in datasets}
    series = {d: _row_series(records, d, keys[d]) for d in datasets}
    shown = [d for d in datasets if series[d]]
    if not shown:
        return None
    runs = list(dict.fromkeys(r.get("run") for r in records))
    lines = list(dict.fromkeys((series_label(r["label"]), r["dim"]) for r in records if r["method"] != "exact"))
    fig, axes = _panels(len(shown))
    for ax, dataset in zip(axes, shown):
        for (run, method, name, dim), points in series[dataset].items():
            j = runs.index(run)
            if method == "exact":
                style, label = {"color": "k", "marker": "*", "markersize": 11}, name
            else:
                i = lines.index((name, dim))
                style = {"color": f"C{i % 10}", "marker": ("o", "s", "^", "D", "v")[i % 5], "markersize": 5}
                label = f"{name}, dim {dim}"
            style["linestyle"] = ("-", "--", ":", "-.")[j % 4]
            x, y = np.asarray([p.x for p in points]), np.asarray([p.y for p in points])
            yerr = (np.asarray([[p.y - p.y_lo for p in points], [p.y_hi - p.y for p in points]])
                    if any(p.repeats > 1 for p in points) else None)
            ax.errorbar(x, y, yerr=yerr, label=label if run is None else f"{run}: {label}", capsize=2,
                        elinewidth=0.8, **style)
        ax.set_xscale("log")
        _dim_ticks(ax, [p.x for points in series[dataset].values() for p in points])
        ax.legend(fontsize=8)
        _title(ax, dataset, {key: (key[1], points) for key, points in series[dataset].items()}, "bars")
        ax.set_xlabel("training rows")
        ax.set_ylabel("test accuracy" if keys[dataset] == "test_accuracy" else "test RMSE (original units)")
        ax.grid(True, which="both", alpha=0.3)
    _save(fig, path)
    return fig


def plot_run(records, datasets, tasks, folder) -> list:
    """The plots of a run into `folder`: PLOT_FILES, and ROWS_PLOT where a method series covers
    several training-set sizes (`plot_metric_vs_rows`); returns their paths.

    records: a run's records, or several runs' records each with a `run` key (one line style per run).
    datasets: the panel titles in order (dataset labels); tasks: {dataset: 'regression' | 'classification'}.
    """
    folder = pathlib.Path(folder)
    paths = [folder / name for name in PLOT_FILES]
    plot_kernel_error(records, datasets, paths[0])
    plot_metric_vs_time(records, datasets, tasks, paths[1])
    if plot_metric_vs_rows(records, datasets, tasks, folder / ROWS_PLOT) is not None:
        paths.append(folder / ROWS_PLOT)
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

"""One table and one pair of plots across several runs.

    ntkfeat compare RUN_DIR [RUN_DIR ...] [--out DIR]

Each RUN_DIR is a folder written by `ntkfeat run` (or its results.json). The
records of all runs are printed as one table with a `run` column (the run folder's name), and
written to DIR (default `runs/compare-<YYYYmmdd-HHMMSS>/`; an existing --out must be empty):

| file | contents |
| --- | --- |
| `results.csv` | every record of every run, with `run` as the first column |
| `comparison.json` | the runs compared: name, folder, config name, status, start time, records |
| `kernel_error_vs_dim.png`, `metric_vs_time.png`, `metric_vs_rows.png` | the run plots (the last where a method series covers several training-set sizes), one panel per dataset label, one line per run and method (`<run>: <label>`): colour by method, line style by run |
| `deltas.csv` | the paired deltas below |

Runs of the same dataset label share a panel. Paired deltas: for every (dataset, label, dim)
found in the first run and in another, each quantity's mean over the repeats both runs have,
other run minus first run (rmse or accuracy, kernel error, seconds without compilation), printed
after the table. Needs no JAX.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from ntkfeat.runs import report
from ntkfeat.runs.run import make_output_dir

RUN_FIELDS = ("run",) + report.RECORD_FIELDS


def _run_names(paths) -> list:
    """The run folders' names; where two are equal, the parent folder is added, then a number."""
    folders = [p if p.is_dir() else p.parent for p in paths]
    names = [f.resolve().name for f in folders]
    for i, name in enumerate(names):
        if names.count(name) > 1:
            names[i] = f"{folders[i].resolve().parent.name}/{name}"
    seen = {}
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if names.count(name) > 1:
            names[i] = f"{name}#{seen[name]}"
    return names


def load_runs(run_dirs) -> list:
    """[(name, path, results.json dict)] in the given order."""
    paths = [pathlib.Path(p) for p in run_dirs]
    results = [report.load_run(p) for p in paths]
    return list(zip(_run_names(paths), paths, results))


def merge(runs) -> tuple:
    """(records with a `run` key for the plots, the same for the table and CSV, dataset labels
    in order, {dataset: task})."""
    table, plotted, datasets, tasks = [], [], [], {}
    for name, _, result in runs:
        labels, run_tasks = report.datasets_and_tasks(result)
        for label in labels:
            if label not in tasks:
                datasets.append(label)
                tasks[label] = run_tasks[label]
        for r in result.get("records", []):
            table.append(dict(r, run=name))
            plotted.append(dict(r, run=name))
    return plotted, table, datasets, tasks


DELTA_FIELDS = ("run", "versus", "dataset", "label", "dim", "pairs", "test_rmse", "test_accuracy", "kernel_rel_fro",
                "steady_seconds")


def paired_deltas(records) -> list:
    """Other run minus the first run, per (dataset, label, dim) present in both, over the
    repeats present in both (paired by `repeat`): one dict per pair of runs and key, with the
    mean delta of each quantity (None where either run lacks it)."""
    runs = list(dict.fromkeys(r["run"] for r in records))
    by = {}
    for r in records:
        by.setdefault((r["run"], r["dataset"], r["label"], r["dim"]), {})[r.get("repeat")] = r
    deltas = []
    first = runs[0] if runs else None
    for run in runs[1:]:
        for (base_run, dataset, label, dim), base in by.items():
            if base_run != first or (run, dataset, label, dim) not in by:
                continue
            other = by[(run, dataset, label, dim)]
            repeats = [k for k in base if k in other]
            if not repeats:
                continue
            row = {"run": run, "versus": first, "dataset": dataset, "label": label, "dim": dim, "pairs": len(repeats)}
            for field in DELTA_FIELDS[6:]:
                values = [(_value(other[k], field), _value(base[k], field)) for k in repeats]
                row[field] = (None if any(a is None or b is None for a, b in values)
                              else sum(a - b for a, b in values) / len(values))
            deltas.append(row)
    return deltas


def _value(record, field):
    return report.steady_seconds(record) if field == "steady_seconds" else record.get(field)


_DELTA_COLUMNS = (("run", "run", "{}"), ("versus", "versus", "{}"), ("dataset", "dataset", "{}"),
                  ("label", "label", "{}"), ("dim", "dim", "{}"), ("pairs", "pairs", "{}"),
                  ("d_rmse", "test_rmse", "{:+.4g}"), ("d_accuracy", "test_accuracy", "{:+.4f}"),
                  ("d_kernel_err", "kernel_rel_fro", "{:+.4f}"), ("d_seconds", "steady_seconds", "{:+.2f}"))


def format_deltas(deltas) -> str:
    """Aligned text of `paired_deltas`; columns empty everywhere are left out."""
    if not deltas:
        return "paired deltas: no (dataset, label, dim) is in the first run and another"
    columns = [c for c in _DELTA_COLUMNS if any(d.get(c[1]) is not None for d in deltas)]
    cells = [[h for h, _, _ in columns]] + [["-" if d.get(k) is None else f.format(d[k]) for _, k, f in columns]
                                           for d in deltas]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    left = [k in ("run", "versus", "dataset", "label") for _, k, _ in columns]
    lines = ["paired deltas (run - versus, mean over the repeats both have; d_seconds: features + solve without "
             "compilation, as in the time plot)"]
    for j, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if l else c.rjust(w) for c, w, l in zip(row, widths, left)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def compare(run_dirs, out=None, plots: bool = True) -> tuple:
    """Merges the runs, writes results.csv, comparison.json and the plots; returns (table text, folder)."""
    runs = load_runs(run_dirs)
    plotted, table, datasets, tasks = merge(runs)
    folder = make_output_dir(out, "compare")
    report.write_csv(folder / "results.csv", table, RUN_FIELDS)
    deltas = paired_deltas(table)
    report.write_csv(folder / "deltas.csv", deltas, DELTA_FIELDS)
    report.write_json(folder / "comparison.json", {"runs": [
        {"run": name, "path": str(path), "name": result.get("name"), "status": result.get("status"),
         "started": result.get("started"), "records": len(result.get("records", []))}
        for name, path, result in runs]})
    if plots and datasets:
        report.plot_run(plotted, datasets, tasks, folder)
    lines = [f"{name}: {result.get('name')}, {len(result.get('records', []))} records, status {result.get('status')}"
             for name, _, result in runs]
    text = "\n".join(lines) + "\n\n" + report.format_table(table)
    if len(runs) > 1:
        text += "\n\n" + format_deltas(deltas)
    return text, folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ntkfeat compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders of experiments.run")
    parser.add_argument("--out", help="output folder (default runs/compare-<YYYYmmdd-HHMMSS>); must not hold files")
    parser.add_argument("--no-plots", action="store_true", help="the table and CSV only")
    args = parser.parse_args(argv)
    try:
        text, folder = compare(args.run_dirs, args.out, plots=not args.no_plots)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    print(f"\nwritten to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One table and one pair of plots across several runs.

    python -m experiments.compare RUN_DIR [RUN_DIR ...] [--out DIR]

Each RUN_DIR is a folder written by `python -m experiments.run` (or its results.json). The
records of all runs are printed as one table with a `run` column (the run folder's name), and
written to DIR (default `runs/compare-<YYYYmmdd-HHMMSS>/`; an existing --out must be empty):

| file | contents |
| --- | --- |
| `results.csv` | every record of every run, with `run` as the first column |
| `comparison.json` | the runs compared: name, folder, config name, status, start time, records |
| `kernel_error_vs_dim.png`, `metric_vs_time.png` | the run plots, one panel per dataset label, one line per run and method (`<run>: <label>`) |

Runs of the same dataset label share a panel. Needs no JAX.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from experiments import report
from experiments.run import make_output_dir

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
    """(records with a `run` key and `label` '<run>: <label>' for the plots, the same with the
    original labels for the table and CSV, dataset labels in order, {dataset: task})."""
    table, plotted, datasets, tasks = [], [], [], {}
    for name, _, result in runs:
        labels, run_tasks = report.datasets_and_tasks(result)
        for label in labels:
            if label not in tasks:
                datasets.append(label)
                tasks[label] = run_tasks[label]
        for r in result.get("records", []):
            table.append(dict(r, run=name))
            plotted.append(dict(r, run=name, label=f"{name}: {r['label']}"))
    return plotted, table, datasets, tasks


def compare(run_dirs, out=None, plots: bool = True) -> tuple:
    """Merges the runs, writes results.csv, comparison.json and the plots; returns (table text, folder)."""
    runs = load_runs(run_dirs)
    plotted, table, datasets, tasks = merge(runs)
    folder = make_output_dir(out, "compare")
    report.write_csv(folder / "results.csv", table, RUN_FIELDS)
    report.write_json(folder / "comparison.json", {"runs": [
        {"run": name, "path": str(path), "name": result.get("name"), "status": result.get("status"),
         "started": result.get("started"), "records": len(result.get("records", []))}
        for name, path, result in runs]})
    if plots and datasets:
        report.plot_run(plotted, datasets, tasks, folder)
    lines = [f"{name}: {result.get('name')}, {len(result.get('records', []))} records, status {result.get('status')}"
             for name, _, result in runs]
    return "\n".join(lines) + "\n\n" + report.format_table(table), folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__.split("\n\n")[0])
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

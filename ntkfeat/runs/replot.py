"""Redraws a run's plots from its results.json.

    ntkfeat replot RUN_DIR [--out DIR]

RUN_DIR is a folder written by `ntkfeat run` (or its results.json). The plots
(kernel_error_vs_dim.png, metric_vs_time.png, and metric_vs_rows.png where a method was run at
several training-set sizes) are drawn exactly as the run draws them, into
RUN_DIR (replacing the old ones) or --out. Useful after a run was interrupted or its plots were
switched off (`plots: false`), or after the plotting code changed. Needs no JAX.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from ntkfeat.runs import report


def replot(run_dir, out=None) -> list:
    """Draws the plots of the run in `run_dir` into `out` (default: the run folder); returns the paths."""
    run_dir = pathlib.Path(run_dir)
    result = report.load_run(run_dir)
    folder = pathlib.Path(out) if out is not None else (run_dir if run_dir.is_dir() else run_dir.parent)
    folder.mkdir(parents=True, exist_ok=True)
    datasets, tasks = report.datasets_and_tasks(result)
    if not datasets:
        raise ValueError(f"{run_dir}: the run has no datasets or records to plot")
    return report.plot_run(result.get("records", []), datasets, tasks, folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ntkfeat replot", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder of experiments.run (or its results.json)")
    parser.add_argument("--out", help="folder for the plots (default: the run folder)")
    args = parser.parse_args(argv)
    try:
        paths = replot(args.run_dir, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

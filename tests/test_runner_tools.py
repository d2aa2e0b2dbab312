"""The runner's tools: SIGTERM ends a run like Ctrl-C, compile_seconds, replot and compare."""

import csv
import json
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from experiments import compare, replot
from experiments.methods import Timer
from experiments.run import Terminated, _SigtermInterrupts, main

REPO = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
PNG = b"\x89PNG\r\n\x1a\n"
# The quickstart config made small: 80 training and 30 test rows, batches of 16 rows.
SMALL = ("--set", "data.n_train=80", "--set", "data.n_test=30", "--set", "evaluation.kernel_error_rows=40")


def small_run(out: pathlib.Path, methods: str, *extra) -> dict:
    assert main([str(QUICKSTART), "--out", str(out), "--quiet", *SMALL, "--set", f"methods={methods}", *extra]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a, b = root / "run-a", root / "run-b"
    small_run(a, "[{method: exact}, {method: ntk_sketch, dims: [64], batch_size: 16}]")
    small_run(b, "[{method: ntk_random_features, dims: [64, 128], batch_size: 16}]", "--set", "seed=1")
    return a, b


def test_timer_compile_estimate():
    timer = Timer()
    timer.add(3.0)
    assert timer.compile_seconds() is None  # one batch: compilation and work cannot be told apart
    timer.add(1.0)
    timer.add(0.5)
    assert timer.features == 4.5 and timer.batches == 3
    assert timer.compile_seconds() == pytest.approx(3.0 - 0.75)
    fast_first = Timer()
    for seconds in (0.1, 0.5, 0.3):
        fast_first.add(seconds)
    assert fast_first.compile_seconds() == 0.0  # clipped


def test_records_carry_compile_seconds(two_runs, tmp_path):
    for run in two_runs:
        for r in json.loads((run / "results.json").read_text())["records"]:
            assert 0 <= r["compile_seconds"] <= r["feature_seconds"]
            assert 0 <= r["solve_compile_seconds"] <= r["solve_seconds"]  # JAX's count (fitting.compile_clock)
            # exact: counted by JAX; features: 80 training + 30 test rows in batches of 16, a real estimate
            assert "compile_seconds" not in (r["note"] or "")
    with open(two_runs[0] / "results.csv") as f:
        assert "compile_seconds" in next(csv.reader(f))
    # Kernel errors only, all 40 rows in one batch: 0, and the note says why.
    result = small_run(tmp_path / "one", "[{method: ntk_sketch, dims: [64]}]", "--set", "solver=null",
                       "--set", "plots=false")
    (r,) = result["records"]
    assert r["compile_seconds"] == 0.0 and "compile_seconds 0: one feature batch" in r["note"]


def test_a_sigterm_whose_exception_was_dropped_is_raised_again_between_runs():
    # Python runs the handler wherever the main thread is; inside a garbage-collection callback (jax
    # has one) its exception is printed and dropped, and the run went on to the end (seen once in CI).
    before = signal.getsignal(signal.SIGTERM)
    with _SigtermInterrupts() as sigterm:
        sigterm.check()  # nothing received: no-op
        try:
            signal.raise_signal(signal.SIGTERM)
        except Terminated:
            pass  # what the gc callback did to it
        with pytest.raises(Terminated, match="SIGTERM"):
            sigterm.check()
        sigterm.check()  # raised once only
        sigterm.disarm()
        signal.raise_signal(signal.SIGTERM)  # disarmed: ignored, nothing remembered
        sigterm.check()
    assert signal.getsignal(signal.SIGTERM) == before  # restored


def test_sigterm_ends_a_run_like_ctrl_c(tmp_path):
    out = tmp_path / "out"
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run", str(QUICKSTART), "--out", str(out), "--quiet"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, records = time.monotonic() + 50, []
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "results.json").exists():  # written atomically: always whole
                records = json.loads((out / "results.json").read_text())["records"]
                if records:
                    break
            time.sleep(0.05)
        assert records, f"no record within 50 s: {(tmp_path / 'log.txt').read_text()[-2000:]}"
        assert proc.poll() is None, "the run finished before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "log.txt").read_text()
    assert rc == 128 + signal.SIGTERM, output[-2000:]
    assert "interrupted" in output
    result = json.loads((out / "results.json").read_text())
    assert result["status"] == "interrupted" and "SIGTERM" in result["error"] and result["finished"]
    assert 1 <= len(result["records"]) < 13  # the quickstart plans 13 runs
    assert result["records"][0]["method"] == "exact"
    assert len((out / "results.csv").read_text().splitlines()) == len(result["records"]) + 1
    assert (out / "metric_vs_time.png").read_bytes()[:8] == PNG  # plots of what finished


def test_replot_redraws_the_plots(two_runs, tmp_path, capsys):
    a, _ = two_runs
    for name in ("kernel_error_vs_dim.png", "metric_vs_time.png"):
        (a / name).unlink()
    assert replot.main([str(a)]) == 0
    for name in ("kernel_error_vs_dim.png", "metric_vs_time.png"):
        assert (a / name).read_bytes()[:8] == PNG
    assert replot.main([str(a / "results.json"), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "metric_vs_time.png").read_bytes()[:8] == PNG
    capsys.readouterr()
    assert replot.main([str(tmp_path / "nowhere")]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_compare_prints_one_table_and_draws_the_plots(two_runs, tmp_path, capsys, monkeypatch):
    a, b = two_runs
    out = tmp_path / "cmp"
    capsys.readouterr()
    assert compare.main([str(a), str(b), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("run "))
    assert header.split()[:4] == ["run", "dataset", "label", "dim"] and "rmse" in header and "kernel_err" in header
    rows = [line for line in text.splitlines() if line.startswith(("run-a ", "run-b "))]
    assert [row.split()[2] for row in rows] == ["exact", "ntk_sketch", "ntk_random_features", "ntk_random_features"]
    with open(out / "results.csv") as f:
        merged = list(csv.DictReader(f))
    assert [(r["run"], r["label"], r["dim"]) for r in merged] == [
        ("run-a", "exact", ""), ("run-a", "ntk_sketch", "64"), ("run-b", "ntk_random_features", "64"),
        ("run-b", "ntk_random_features", "128")]
    assert all(float(r["test_rmse"]) > 0 for r in merged)
    for name in ("kernel_error_vs_dim.png", "metric_vs_time.png"):
        assert (out / name).read_bytes()[:8] == PNG
    # No (dataset, label, dim) is in both runs: the deltas say so, and their CSV has a header only.
    assert "paired deltas: no (dataset, label, dim)" in text
    assert (out / "deltas.csv").read_text().startswith("run,versus,dataset,label,dim,pairs,")
    runs = json.loads((out / "comparison.json").read_text())["runs"]
    assert [(r["run"], r["status"], r["records"]) for r in runs] == [("run-a", "finished", 2), ("run-b", "finished", 2)]
    # A non-empty --out is refused; without --out a new runs/compare-<time> folder is made.
    assert compare.main([str(a), "--out", str(out)]) == 2
    monkeypatch.chdir(tmp_path)
    assert compare.main([str(a), str(b), "--no-plots"]) == 0
    (made,) = (tmp_path / "runs").iterdir()
    assert made.name.startswith("compare-") and (made / "results.csv").exists()

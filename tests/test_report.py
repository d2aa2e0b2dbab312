"""Plots and tables of runs (experiments.report, experiments.compare) on made-up records, and
the solver's compile clock (experiments.fitting): no run needed."""

import csv

import numpy as np
import pytest

from experiments import compare, fitting, report

PNG = b"\x89PNG\r\n\x1a\n"
DIMS = (256, 600, 1024)


def records(run=None, shift=0.0, repeats=3, solve_compile=1.0):
    """An exact record and two methods at DIMS over `repeats` keys; values are known functions of
    (method, dim, repeat) so that means, spreads and deltas can be checked."""
    out = [dict(dataset="diabetes", method="exact", label="exact", dim=None, repeat=0, test_rmse=50.0 + shift,
                kernel_rel_fro=None, feature_seconds=2.0, compile_seconds=0.0, solve_seconds=0.5,
                solve_compile_seconds=solve_compile and 0.25, note=None)]
    for i, label in enumerate(("ntk_sketch", "ntk_random_features")):
        for dim in DIMS:
            for rep in range(repeats):
                out.append(dict(dataset="diabetes", method=label, label=label, dim=dim, repeat=rep,
                                test_rmse=60.0 + i - dim / 1000 + rep + shift, kernel_rel_fro=(1 + i) / dim * (1 + rep),
                                feature_seconds=1.0 + dim / 1000, compile_seconds=0.5, solve_seconds=2.0,
                                solve_compile_seconds=solve_compile, note=None))
    if run is not None:
        out = [dict(r, run=run) for r in out]
    return out


def test_steady_seconds_leaves_out_both_compilations():
    r = records()[1]
    assert report.steady_seconds(r) == pytest.approx(1.256 - 0.5 + 2.0 - 1.0)
    older = dict(r, solve_compile_seconds=None)  # results written before the solver's clock existed
    assert report.steady_seconds(older) == pytest.approx(1.256 - 0.5 + 2.0)
    assert report.steady_seconds(dict(r, solve_seconds=None)) is None


def test_time_axis_label_says_what_is_left_in():
    features = [r for r in records() if r["method"] != "exact"]
    assert report.time_axis_label(features) == "seconds: features + solve, compilation excluded"
    assert report.time_axis_label(records()) == "seconds: features + solve, compilation excluded"
    label = report.time_axis_label(records(solve_compile=None))  # written before the compile clock
    assert "except the solver's, exact kernel ridge's" in label
    single = [dict(features[0], note="compile_seconds 0: one feature batch, compilation not separable")]
    assert "single-batch features'" in report.time_axis_label(single)


def test_series_means_and_spread_over_repeats():
    series = report._series(records(), "diabetes", "dim", "kernel_rel_fro")
    method, points = series[(None, "ntk_sketch")]
    assert method == "ntk_sketch" and [p.dim for p in points] == list(DIMS)
    first = points[0]
    assert first.repeats == 3
    assert (first.y, first.y_lo, first.y_hi) == pytest.approx((2 / 256, 1 / 256, 3 / 256))
    assert (None, "exact") not in series  # no kernel error: not plotted


def test_kernel_plot_ticks_at_the_dims_and_styles_by_method_and_run(tmp_path):
    both = records("run-a") + records("run-b", shift=1.0)
    fig = report.plot_kernel_error(both, ["diabetes"], tmp_path / "k.png")
    assert (tmp_path / "k.png").read_bytes()[:8] == PNG
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == list(DIMS)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(d) for d in DIMS]
    assert "mean over 3 keys; band: min-max" in ax.get_title()
    lines = {line.get_label(): line for line in ax.get_lines()}
    a, b = lines["run-a: ntk_sketch"], lines["run-b: ntk_sketch"]
    assert a.get_color() == b.get_color() and a.get_linestyle() != b.get_linestyle()  # colour: method; style: run
    assert lines["run-a: ntk_random_features"].get_color() != a.get_color()
    assert len(ax.collections) == 4  # one min-max band per (run, method)


def test_time_plot_labels_points_with_dims_and_shows_spread(tmp_path):
    fig = report.plot_metric_vs_time(records(), ["diabetes"], {"diabetes": "regression"}, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("seconds: features + solve, compilation excluded")
    assert ax.get_xlabel() == "seconds: features + solve, compilation excluded"
    assert sorted(t.get_text() for t in ax.texts) == sorted([str(d) for d in DIMS] * 2)
    assert "bars: min-max" in ax.get_title()
    assert all("e" not in t.get_text() and "\\times" not in t.get_text() for t in ax.get_xticklabels())
    fig = report.plot_metric_vs_time(records(repeats=1), ["diabetes"], {"diabetes": "regression"}, tmp_path / "t.png")
    assert fig.axes[0].get_title() == "diabetes"  # one key: no spread to show


def test_paired_deltas_between_runs(tmp_path):
    a, b = records("run-a"), records("run-b", shift=1.5)
    b = [r for r in b if not (r["label"] == "ntk_sketch" and r["dim"] == 1024 and r["repeat"] == 2)]
    deltas = compare.paired_deltas(a + b)
    assert len(deltas) == 1 + 2 * len(DIMS)
    by = {(d["label"], d["dim"]): d for d in deltas}
    assert by[("exact", None)]["test_rmse"] == pytest.approx(1.5)
    assert by[("ntk_sketch", 256)]["test_rmse"] == pytest.approx(1.5) and by[("ntk_sketch", 256)]["pairs"] == 3
    assert by[("ntk_sketch", 1024)]["pairs"] == 2  # the repeat run-b lacks is not paired
    assert by[("ntk_sketch", 256)]["kernel_rel_fro"] == pytest.approx(0.0)
    assert by[("ntk_sketch", 256)]["steady_seconds"] == pytest.approx(0.0)
    text = compare.format_deltas(deltas)
    assert text.startswith("paired deltas") and "d_rmse" in text and "+1.5" in text
    assert compare.format_deltas([]).startswith("paired deltas: no")
    path = tmp_path / "deltas.csv"
    report.write_csv(path, deltas, compare.DELTA_FIELDS)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["run"] == "run-b" and rows[0]["versus"] == "run-a"


def test_compile_clock_counts_solver_compilation_not_the_stream():
    import jax
    import jax.numpy as jnp

    def f(x):
        return jnp.linalg.cholesky(x @ x.T + jnp.eye(x.shape[0]))

    x = np.random.RandomState(0).randn(7, 5).astype(np.float32)  # a shape no other test compiles
    with fitting.compile_clock() as clock:
        jax.jit(f)(x).block_until_ready()
    assert clock.seconds > 0
    fast = jax.jit(f)
    fast(x).block_until_ready()
    with fitting.compile_clock() as clock:
        fast(x).block_until_ready()  # cached: nothing compiled
    assert clock.seconds == 0

    def stream():
        yield 0, jax.jit(lambda v: v * 3.0)(jnp.ones(11))  # compiled inside the stream: not counted

    with fitting.compile_clock() as clock:
        assert len(list(fitting._paused_while_streaming(stream, clock)())) == 1
    assert clock.seconds == 0

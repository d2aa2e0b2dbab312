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


def row_records(run=None):
    """Exact ridge and a sketch at two dims over three training-set sizes (labels `name@n`, the
    largest without a suffix), two keys for the sketch; accuracy = known function of (n, dim, key)."""
    out = []
    for n in (500, 1000, 2000):
        suffix = "" if n == 2000 else f"@{n}"
        out.append(dict(dataset="cifar", method="exact", label=f"exact{suffix}", dim=None, repeat=0, n_train=n,
                        test_accuracy=0.3 + n / 10000))
        for dim in (1024, 4096):
            for rep in range(2):
                out.append(dict(dataset="cifar", method="ntk_sketch", label=f"sketch{suffix}", dim=dim, repeat=rep,
                                n_train=n, test_accuracy=0.29 + n / 10000 + dim / 1e6 + rep / 100))
    return out if run is None else [dict(r, run=run) for r in out]


def test_rows_plot_draws_one_line_per_series_and_dim_over_training_sizes(tmp_path):
    series = report._row_series(row_records(), "cifar", "test_accuracy")
    assert sorted(series, key=str) == sorted([(None, "exact", "exact", None), (None, "ntk_sketch", "sketch", 1024),
                                              (None, "ntk_sketch", "sketch", 4096)], key=str)
    points = series[(None, "ntk_sketch", "sketch", 4096)]
    assert [p.x for p in points] == [500, 1000, 2000] and points[0].repeats == 2
    assert (points[0].y, points[0].y_lo, points[0].y_hi) == pytest.approx((0.349096, 0.344096, 0.354096))
    fig = report.plot_metric_vs_rows(row_records(), ["cifar"], {"cifar": "classification"}, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == PNG
    ax = fig.axes[0]
    lines = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar: (data line, caps, bars)
    assert set(lines) == {"exact", "sketch, dim 1024", "sketch, dim 4096"}
    assert lines["exact"].get_color() == "k"
    assert lines["sketch, dim 1024"].get_color() != lines["sketch, dim 4096"].get_color()
    assert list(lines["exact"].get_xdata()) == [500, 1000, 2000]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["500", "1000", "2000"]
    assert ax.get_xlabel() == "training rows" and ax.get_ylabel() == "test accuracy"
    assert "bars: min-max" in ax.get_title()
    two = report.plot_metric_vs_rows(row_records("a") + row_records("b"), ["cifar"], {"cifar": "classification"},
                                     tmp_path / "r2.png")
    by = {c.get_label(): c.lines[0] for c in two.axes[0].containers}
    assert by["a: sketch, dim 1024"].get_color() == by["b: sketch, dim 1024"].get_color()
    assert by["a: sketch, dim 1024"].get_linestyle() != by["b: sketch, dim 1024"].get_linestyle()


def test_rows_plot_only_where_a_series_has_several_training_sizes(tmp_path):
    one_size = [r for r in row_records() if r["n_train"] == 2000]
    assert report.plot_metric_vs_rows(one_size, ["cifar"], {"cifar": "classification"}, tmp_path / "r.png") is None
    assert not (tmp_path / "r.png").exists()
    assert report.plot_run(one_size, ["cifar"], {"cifar": "classification"}, tmp_path) == [
        tmp_path / name for name in report.PLOT_FILES]
    paths = report.plot_run(row_records(), ["cifar"], {"cifar": "classification"}, tmp_path)
    assert paths[-1] == tmp_path / report.ROWS_PLOT and paths[-1].read_bytes()[:8] == PNG


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

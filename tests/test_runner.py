"""The YAML experiment runner: configs end to end, npz data through config alone, clear errors, outputs."""

import csv
import dataclasses
import importlib
import inspect
import json
import math
import pathlib

import numpy as np
import pytest
import yaml

import ntkfeat as nf
from experiments import config as cfg
from experiments import report
from experiments.methods import Network, exact_kernel
from experiments.run import main, make_output_dir

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
REQUIRED = ("dataset", "method", "label", "dim", "out_dim", "repeat", "n_train", "n_test", "task", "lambda",
            "test_rmse", "test_accuracy", "test_mse", "kernel_rel_fro", "feature_seconds", "solve_seconds",
            "init_seconds")
FC2 = [{"repeat": {"times": 2, "layers": [{"Dense": {"W_std": 2**0.5}}, "Relu"]}}, {"Dense": {"W_std": 1.0}}]


def write_config(path: pathlib.Path, raw: dict) -> pathlib.Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_ok(config_path, out, *extra):
    assert main([str(config_path), "--out", str(out), "--quiet", *extra]) == 0
    return json.loads((out / "results.json").read_text())


def run_error(capsys, config_path, out, *extra) -> str:
    """Runs a config that must fail validation: exit code 2, no output folder."""
    capsys.readouterr()
    assert main([str(config_path), "--out", str(out), "--quiet", *extra]) == 2
    assert not out.exists(), "an output folder was created although validation failed"
    return capsys.readouterr().err


def finite_numbers(record):
    return all(math.isfinite(v) for v in record.values() if isinstance(v, float))


# --------------------------------------------------------------------------- end to end


def test_quickstart_end_to_end(tmp_path, capsys):
    raw = yaml.safe_load((CONFIGS / "quickstart.yaml").read_text())
    raw["data"].update(n_train=120, n_test=40)
    raw["methods"] = [
        {"method": "exact"},
        {"method": "ntk_sketch", "dims": [64, 1024], "degree": 8},
        {"method": "ntk_random_features", "dims": [128], "leverage": True},
        {"method": "random_fourier", "dims": [64]},
        {"method": "nystrom", "dims": [32, 500]},  # 500 > 120 rows: clamped to 120 landmarks
    ]
    raw["evaluation"] = {"kernel_error_rows": 100}
    out = tmp_path / "out"
    result = run_ok(write_config(tmp_path / "quick.yaml", raw), out)

    for name in ("results.json", "results.csv", "config.yaml", "kernel_error_vs_dim.png", "metric_vs_time.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "kernel_error_vs_dim.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    assert result["status"] == "finished" and result["finished"]
    assert result["versions"]["jax"] and result["versions"]["ntkfeat"] == nf.__version__
    assert result["config"]["name"] == "quickstart" and result["config"]["data"][0]["n_train"] == 120
    records = result["records"]
    assert [(r["label"], r["dim"]) for r in records] == [
        ("exact", None), ("ntk_sketch", 64), ("ntk_sketch", 1024), ("ntk_random_features", 128),
        ("random_fourier", 64), ("nystrom", 32), ("nystrom", 120)]
    for r in records:
        assert set(REQUIRED) <= set(r)
        assert r["task"] == "regression" and r["n_train"] == 120 and r["n_test"] == 40
        assert r["test_rmse"] > 0 and r["test_accuracy"] is None and r["lambda"] > 0
        assert r["feature_seconds"] >= 0 and r["solve_seconds"] >= 0
        assert finite_numbers(r)
    by = {(r["label"], r["dim"]): r for r in records}
    assert by[("exact", None)]["kernel_rel_fro"] is None and by[("random_fourier", 64)]["kernel_rel_fro"] is None
    assert by[("ntk_sketch", 1024)]["kernel_rel_fro"] < 0.6 * by[("ntk_sketch", 64)]["kernel_rel_fro"]
    assert by[("nystrom", 120)]["kernel_rel_fro"] < 1e-3  # every row a landmark: the exact kernel
    assert "landmarks" in by[("nystrom", 120)]["note"]
    # Test RMSE is in the original units of diabetes (tens), not standardized (~0.7).
    assert 20 < by[("exact", None)]["test_rmse"] < 150

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records) and tuple(rows[0]) == report.RECORD_FIELDS
    # The resolved config reruns the experiment: it validates and equals itself resolved again.
    resolved = cfg.load_config(out / "config.yaml")
    assert resolved == cfg.load_config(out / "config.yaml") and resolved["methods"][1]["mode"] == "auto"
    assert resolved["architecture"][0] == {"Dense": {"W_std": 2**0.5, "b_std": None, "out_dim": None}}
    table = capsys.readouterr().out
    assert "ntk_sketch" in table and "kernel_err" in table


def _synthetic_npz(tmp_path, kind: str) -> pathlib.Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    if kind == "regression":
        y = (np.sin(x[:, 0]) + 0.1 * rng.normal(size=120)) * 50 + 300
        mask = np.zeros((120, 2), bool)
        mask[90:, 0], mask[:30, 1] = True, True  # split 0: the last 30 rows; split 1: the first 30
        path = tmp_path / "reg.npz"
        np.savez(path, x=x, y=y, test_mask=mask)
    else:
        y = np.digitize(x[:, 0], [-0.5, 0.5]) + 1  # classes 1, 2, 3 (mapped to 0..2)
        order = rng.permutation(120)
        path = tmp_path / "cls.npz"
        np.savez(path, x=x, y=y, train_idx=order[None, :90], test_idx=order[None, 90:])
    return path


def test_npz_datasets_through_config_alone(tmp_path):
    reg, cls = _synthetic_npz(tmp_path, "regression"), _synthetic_npz(tmp_path, "classification")
    raw = {
        "name": "npz-check",
        "data": [{"name": "npz", "path": str(reg)}, {"name": "npz", "path": str(reg), "split": 1},
                 {"name": "npz", "path": str(cls)}],
        "architecture": FC2,
        "methods": [{"method": "exact"}, {"method": "ntk_sketch", "dims": [64]}],
        "solver": {"val_fraction": 0.2},
        "evaluation": {"kernel_error_rows": 30},
        "plots": False,
    }
    out = tmp_path / "out"
    result = run_ok(write_config(tmp_path / "npz.yaml", raw), out)
    assert not (out / "metric_vs_time.png").exists()  # plots: false
    info = {d["label"]: d for d in result["datasets"]}
    assert set(info) == {"reg", "reg-split1", "cls"}
    assert "test_mask column 0" in info["reg"]["split_rule"] and "test_mask column 1" in info["reg-split1"]["split_rule"]
    assert "train_idx/test_idx" in info["cls"]["split_rule"]
    assert info["cls"]["task"] == "classification" and info["cls"]["num_classes"] == 3
    records = result["records"]
    assert len(records) == 6
    for r in records:
        assert r["n_train"] == 90 and r["n_test"] == 30 and finite_numbers(r)
        if r["dataset"] == "cls":
            assert r["task"] == "classification" and 0 <= r["test_accuracy"] <= 1 and r["test_rmse"] is None
            assert r["test_accuracy"] > 0.6  # the classes are thresholds of x[:, 0]; chance ~0.4
        else:
            assert r["task"] == "regression" and r["test_accuracy"] is None
            assert r["test_rmse"] < 0.8 * 50 * 0.68  # below predicting the mean (y's std is ~34)
        if r["method"] == "ntk_sketch":
            assert 0 < r["kernel_rel_fro"] < 0.5


def test_kernel_error_only_iterative_and_kfold(tmp_path):
    base = {"data": {"name": "diabetes", "n_train": 80, "n_test": 20}, "architecture": FC2, "plots": False}
    # solver: null computes kernel errors only, on the first kernel_error_rows training rows.
    raw = dict(base, name="errors", solver=None, evaluation={"kernel_error_rows": 50},
               methods=[{"method": "ntk_random_features", "dims": [64, 256], "repeats": 2}])
    records = run_ok(write_config(tmp_path / "errors.yaml", raw), tmp_path / "errors")["records"]
    assert [(r["dim"], r["repeat"]) for r in records] == [(64, 0), (64, 1), (256, 0), (256, 1)]
    assert all(r["test_rmse"] is None and r["lambda"] is None and r["n_test"] is None for r in records)
    assert all(0 < r["kernel_rel_fro"] < 1 for r in records)
    assert records[0]["kernel_rel_fro"] != records[1]["kernel_rel_fro"]  # repeats draw new features

    # iterative: optax on streamed batches, lambda chosen among the given ones on a hold-out part.
    raw = dict(base, name="iterative", methods=[{"method": "ntk_sketch", "dims": [64], "batch_size": 32}],
               solver={"iterative": True, "lambdas": [0.1, 10.0], "steps": 30, "learning_rate": 0.05},
               evaluation={"kernel_error_rows": 0})
    (r,) = run_ok(write_config(tmp_path / "iterative.yaml", raw), tmp_path / "iterative")["records"]
    assert r["solver_path"] == "iterative" and r["lambda"] in (0.1, 10.0) and r["kernel_rel_fro"] is None
    assert 20 < r["test_rmse"] < 150

    # k-fold selection on in-memory features.
    raw = dict(base, name="kfold", methods=[{"method": "ntk_sketch", "dims": [64]}],
               solver={"selection": "kfold", "folds": 3, "lambdas": [0.01, 1.0, 100.0]},
               evaluation={"kernel_error_rows": 0})
    (r,) = run_ok(write_config(tmp_path / "kfold.yaml", raw), tmp_path / "kfold")["records"]
    assert r["solver_path"] == "dual" and r["lambda"] in (0.01, 1.0, 100.0) and 20 < r["test_rmse"] < 150


def test_images_blocked_kernels_and_gradient_features(tmp_path):
    # digits as 8 x 8 images with a small CNTK: cheap enough to exercise every image path.
    raw = {
        "name": "digits-cntk",
        "data": {"name": "digits", "images": True, "n_train": 60, "n_test": 30},
        "architecture": [{"Conv": {"filter_shape": 3, "W_std": 2**0.5}}, "Relu", "GlobalAvgPool", "Dense"],
        "methods": [{"method": "exact", "n_train": 20}, {"method": "ntk_sketch", "dims": [128], "degree": 2},
                    {"method": "nystrom", "dims": [10]}, {"method": "gradient", "dims": [64], "width": 16}],
        "evaluation": {"kernel_error_rows": 12, "kernel_batch_size": 5},  # blocks of 5 rows: 12 = 5 + 5 + 2
        "plots": False,
    }
    result = run_ok(write_config(tmp_path / "digits.yaml", raw), tmp_path / "out")
    exact, sketch, nystrom, gradient = result["records"]
    assert exact["n_train"] == 20 and nystrom["out_dim"] == 10 and gradient["out_dim"] == 64
    for r in result["records"]:
        assert r["task"] == "classification" and 0 <= r["test_accuracy"] <= 1 and finite_numbers(r)
    assert sketch["kernel_rel_fro"] < 0.3 and nystrom["kernel_rel_fro"] < 1 and gradient["kernel_rel_fro"] < 1
    assert result["datasets"][0]["reference_kernel_seconds"] == 0.0  # exact's 20 rows cover the 12

    x = nf.data.load_dataset("digits", images=True, n_train=13).x_train
    network = Network.from_layers(cfg.build_layers(cfg.load_config(tmp_path / "digits.yaml")["architecture"]))
    direct = np.asarray(network.kernel_fn(x, x[:7], "ntk"), np.float64)
    np.testing.assert_allclose(exact_kernel(network, x, x[:7], batch_size=5), direct, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- errors


def _minimal(**changes):
    raw = {"name": "bad", "data": {"name": "diabetes"}, "architecture": FC2,
           "methods": [{"method": "exact"}, {"method": "ntk_sketch", "dims": [64]}]}
    raw.update(changes)
    return raw


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return {"name": "npz", "path": str(path)}


@pytest.mark.parametrize("case, expected", [
    ("missing_file", "npz file not found at"),
    ("missing_key", "missing key 'y'"),
    ("shape_mismatch", "x has 10 rows but y has 9"),
    ("unknown_key", "data.nmae: unknown key (did you mean 'name'?)"),
    ("bad_dim", "methods[1].dims[0]: expected an integer >= 2, got -5"),
    ("wrong_type", "solver.val_fraction: expected a finite number > 0 and < 1, got 'ten percent'"),
    ("wrong_bool", "methods[1].leverage: expected true or false, got 'yes please'"),
    ("bad_degree", "methods[1].degree: expected a positive integer or 'auto', got 'high'"),
    ("unknown_method", "methods[1].method: unknown method 'ntk_skech' (did you mean 'ntk_sketch'?)"),
    ("foreign_key", "methods[1].degree: unknown key for method 'ntk_random_features' (it belongs to method ntk_sketch)"),
    ("unknown_layer", "architecture[1]: unknown layer 'Relux' (did you mean 'Relu'?)"),
    ("layer_argument", "architecture[0].Dense.W_sd: unknown key for Dense (did you mean 'W_std'?)"),
    ("exact_without_solver", "methods[0]: method 'exact' is kernel ridge and needs a solver"),
    ("conv_on_tabular", "architecture: layer 0 (Conv) needs images (n, H, W, C), but diabetes is tabular"),
    ("duplicate_label", "methods[1].label: 'exact' is used by methods[0] too"),
    ("sketch_dim_too_small", "methods[1].dims[1]: ntk_sketch at dim 16 on diabetes: dim=16 is too small"),
])
def test_clear_errors_and_no_output(tmp_path, capsys, monkeypatch, case, expected):
    monkeypatch.chdir(tmp_path)  # the default output folder would be ./runs/...
    x = np.zeros((10, 3), np.float32)
    raw = {
        "missing_file": lambda: _minimal(data={"name": "npz", "path": str(tmp_path / "nowhere.npz")}),
        "missing_key": lambda: _minimal(data=_npz(tmp_path, x=x)),
        "shape_mismatch": lambda: _minimal(data=_npz(tmp_path, x=x, y=np.zeros(9))),
        "unknown_key": lambda: _minimal(data={"nmae": "diabetes"}),
        "bad_dim": lambda: _minimal(methods=[{"method": "exact"}, {"method": "ntk_sketch", "dims": [-5]}]),
        "wrong_type": lambda: _minimal(solver={"val_fraction": "ten percent"}),
        "wrong_bool": lambda: _minimal(methods=[{"method": "exact"},
                                                {"method": "ntk_random_features", "dims": [8], "leverage": "yes please"}]),
        "bad_degree": lambda: _minimal(methods=[{"method": "exact"}, {"method": "ntk_sketch", "dims": [8], "degree": "high"}]),
        "unknown_method": lambda: _minimal(methods=[{"method": "exact"}, {"method": "ntk_skech", "dims": [8]}]),
        "foreign_key": lambda: _minimal(methods=[{"method": "exact"},
                                                 {"method": "ntk_random_features", "dims": [8], "degree": 4}]),
        "unknown_layer": lambda: _minimal(architecture=[{"Dense": {"W_std": 1.0}}, "Relux", "Dense"]),
        "layer_argument": lambda: _minimal(architecture=[{"Dense": {"W_sd": 1.0}}]),
        "exact_without_solver": lambda: _minimal(solver=None),
        "conv_on_tabular": lambda: _minimal(architecture=[{"Conv": {"filter_shape": 3}}, "Relu", "GlobalAvgPool",
                                                          "Dense"]),
        "duplicate_label": lambda: _minimal(methods=[{"method": "exact"}, {"method": "exact"}]),
        "sketch_dim_too_small": lambda: _minimal(methods=[{"method": "exact"}, {"method": "ntk_sketch", "dims": [64, 16]}]),
    }[case]()
    path = write_config(tmp_path / "bad.yaml", raw)
    message = run_error(capsys, path, tmp_path / "out")
    assert expected in message
    assert main([str(path), "--quiet"]) == 2
    assert not (tmp_path / "runs").exists()


def test_config_details(tmp_path):
    # The layer table follows ntkfeat's layers: their signatures (neural-tangents' order), less
    # the fields that take one value only (axes, parameterization).
    for name, fields in cfg.layer_defaults().items():
        params = list(inspect.signature(getattr(nf, name)).parameters)
        assert list(fields) == [p for p in params if p not in cfg._HIDDEN_FIELDS], name
    # Positional arguments in neural-tangents' order, nested blocks, functions by name.
    arch = cfg._expand_architecture([{"Conv": [8, [3, 3], None, "SAME"]}, {"FanOut": 2},
                                     {"parallel": [["Relu", {"Conv": [8, 3, 1, "SAME"]}], "Identity"]}, "FanInSum",
                                     {"ElementwiseNumerical": {"fn": "tanh", "deg": 10}}, "GlobalAvgPool", "Dense"],
                                    "architecture")
    built = cfg.build_layers(arch)
    assert built[0] == nf.Conv(8, (3, 3), None, "SAME") and isinstance(built[2], nf.layers.Parallel)
    assert built[4].fn(0.5) == pytest.approx(np.tanh(0.5))
    for bad, message in [([{"Dense": {"W_std": -1}}], r"architecture\[0\].Dense: Dense.W_std must be"),
                         ([{"Dense": [1, 2, 3, 4]}], "at most 3 positional"),
                         (["Relux"], "did you mean 'Relu'"),
                         ([{"LeakyRelu": {}}], "alpha: missing"),
                         ([{"ElementwiseNumerical": {"fn": "os.system", "deg": 3}}], "name of a function|no function")]:
        with pytest.raises(cfg.ConfigError, match=message):
            cfg.build_layers(cfg._expand_architecture(bad, "architecture"))
    # Duplicate keys, YAML 1.1's string '1e-3', repeat blocks, --set overrides.
    (tmp_path / "dup.yaml").write_text("name: a\nname: b\n")
    with pytest.raises(cfg.ConfigError, match="duplicate key 'name'"):
        cfg.read_yaml(tmp_path / "dup.yaml")
    text = yaml.safe_dump(_minimal(solver={"lambdas": [1, 0.5]}))
    path = tmp_path / "ok.yaml"
    path.write_text(text.replace("- 1\n", "- 1e-3\n"))
    resolved = cfg.load_config(path, ["methods[1].dims=[16, 32]", "seed=3", "data.n_train=50"])
    assert resolved["solver"]["lambdas"] == [1e-3, 0.5] and resolved["seed"] == 3
    assert resolved["methods"][1]["dims"] == [16, 32] and resolved["data"][0]["n_train"] == 50
    assert resolved["name"] == "bad" and len(resolved["architecture"]) == 5
    for bad, message in [("methods[7].dims=[8]", "has no item"), ("nodots", "expected PATH=VALUE"),
                         ("methods.dims=[8]", "is a list")]:
        with pytest.raises(cfg.ConfigError, match=message):
            cfg.load_config(path, [bad])
    with pytest.raises(cfg.ConfigError, match=r"^seed: expected an integer >= 0 and <= 4294967295, got True"):
        cfg.load_config(path, ["seed=true"])
    # Aligned table.
    table = report.format_table([{"dataset": "d", "label": "a", "dim": 8, "test_rmse": 1.5},
                                 {"dataset": "d", "label": "long name", "dim": 1024, "test_rmse": None}])
    lines = table.splitlines()
    assert len({len(line) for line in lines[:2]}) == 1 and lines[2].index("8") == lines[3].index("4")


# --------------------------------------------------------------------------- outputs


def test_existing_output_folder_is_refused(tmp_path, capsys, monkeypatch):
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "results.json").write_text("earlier results")
    path = write_config(tmp_path / "c.yaml", _minimal())
    assert main([str(path), "--out", str(out), "--quiet"]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["results.json"]
    assert (out / "results.json").read_text() == "earlier results"
    # Default folders never collide: the second one in the same second gets a suffix.
    monkeypatch.chdir(tmp_path)
    first, second = make_output_dir(None, "x"), make_output_dir(None, "x")
    assert first != second and first.is_dir() and second.is_dir()


def test_a_crash_keeps_the_finished_runs(tmp_path, monkeypatch):
    import experiments.run as runner

    calls, real = [], runner.execute_run

    def crash_on_second(plan, run, references, *args):
        calls.append(run)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(plan, run, references, *args)

    monkeypatch.setattr(runner, "execute_run", crash_on_second)
    path = write_config(tmp_path / "c.yaml", _minimal(data={"name": "diabetes", "n_train": 60, "n_test": 20}))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main([str(path), "--out", str(out), "--quiet"])
    result = json.loads((out / "results.json").read_text())
    assert result["status"] == "failed" and "simulated crash" in result["error"] and result["finished"]
    assert [r["method"] for r in result["records"]] == ["exact"]
    assert len((out / "results.csv").read_text().splitlines()) == 2
    assert (out / "metric_vs_time.png").exists()  # plots of what finished


def test_every_config_validates():
    others = {  # configs of other scripts, with their own schema
        "gcn_sbm.yaml": "experiments.graph_depth", "gcn_sbm_remedies.yaml": "experiments.graph_depth",
        "gcn_karate.yaml": "experiments.graph_depth", "finite_width.yaml": "experiments.finite_width",
    }
    for path in sorted(CONFIGS.glob("*.yaml")):
        if path.name in others:
            assert importlib.import_module(others[path.name]).load_config(path)["name"] == path.stem
            continue
        resolved = cfg.load_config(path)
        assert resolved["name"] == path.stem
        cfg.build_layers(resolved["architecture"])


def test_cifar10_config_smoke(tmp_path):
    try:
        nf.data.load_dataset("cifar10", n_train=1, n_test=1)
    except FileNotFoundError as e:
        pytest.skip(f"CIFAR-10 not available: {e}")
    # The default config shrunk: exact on 4 x (4 + 4) pairs (~0.4 s each on a CPU), sketches at dim 256.
    overrides = ["data.n_train=40", "data.n_test=8", "methods[0].n_train=4", "methods[0].n_test=4",
                 "methods[1].n_train=4", "methods[1].n_test=4", "methods[1].dims=[256]", "methods[2].dims=[256]",
                 "evaluation.kernel_error_rows=4", "plots=false"]
    args = [x for o in overrides for x in ("--set", o)]
    result = run_ok(CONFIGS / "cifar10.yaml", tmp_path / "out", *args)
    exact, subset, full = result["records"]
    assert exact["method"] == "exact" and exact["n_train"] == 4 and exact["n_test"] == 4
    assert subset["label"] == "ntk_sketch@subset" and subset["n_train"] == 4 and subset["out_dim"] == 256
    assert full["n_train"] == 40 and full["n_test"] == 8
    for r in (exact, subset, full):
        assert r["task"] == "classification" and 0 <= r["test_accuracy"] <= 1 and finite_numbers(r)
    assert 0 < subset["kernel_rel_fro"] < 0.5 and 0 < full["kernel_rel_fro"] < 0.5
    assert result["datasets"][0]["reference_kernel_seconds"] == 0.0  # reused from exact's kernel


def test_sketch_defaults_are_the_library_defaults():
    # A config's ntk_sketch without degree/mode/... must mean nf.Sketch() with the same dim, so
    # runner results describe the library's defaults (the runner once fixed degree 8).
    import ntkfeat as nf

    defaults = cfg.method_defaults("ntk_sketch")
    library = nf.Sketch()
    for key in ("degree", "mode", "fit", "width", "renormalize"):
        assert defaults[key] == getattr(library, key), key


def test_flip_augmented_rows_are_split_with_their_mirrors():
    # Lambda selection keeps each image and its mirror (rows 2i, 2i + 1) on one side of the split.
    from ntkfeat.data import load_dataset
    from experiments.run import _split_groups

    aug = load_dataset("digits", images=True, n_train=30, n_test=10, seed=3, flip="augment")
    groups = _split_groups(aug, 60)
    np.testing.assert_array_equal(groups, np.arange(60) // 2)
    assert aug.info["train_flipped"][groups == 4].tolist() == [False, True]
    assert _split_groups(load_dataset("digits", images=True, n_train=30, n_test=10, seed=3), 30) is None

"""The experiment scripts the docs name still run: every one answers --help, and the two
diagnostics without a config run end to end on tiny inputs."""

import importlib
import math
import pathlib
import sys

import pytest

SCRIPTS = sorted(
    p.stem for p in (pathlib.Path(__file__).parents[1] / "experiments").glob("*.py")
    if not p.stem.startswith("_") and "def main(" in p.read_text()
)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_answers_help(name, capsys, monkeypatch):
    module = importlib.import_module(f"experiments.{name}")
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_profile_layers_times_every_layer(capsys):
    from experiments import profile_layers

    profile_layers.main(["--dim", "256", "--batch", "1", "--side", "12", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "whole map" in out
    layers = [line.split()[0] for line in out.splitlines()[1:]]
    # 3 x (Conv, Relu and its two parts), GlobalAvgPool, Dense
    assert layers.count("Conv") == 3 and layers.count("Relu") == 3 and layers.count("kappa") == 3 and layers.count("ntk") == 3
    assert layers[-2:] == ["GlobalAvgPool", "Dense"]


def test_sketch_floor_rows():
    from experiments import sketch_floor

    rows = sketch_floor.floor_rows("diabetes", 256, keys=[0], scales=[1], max_train=200, repeats=2)
    labels = [label for label, _, _ in rows]
    assert labels[0] == "exact kernel ridge" and rows[0][1] == 1.0
    assert any("ideal Gaussian sketch" in label for label in labels)
    assert all(math.isfinite(r) and r > 0 and lam >= 0 for _, r, lam in rows)
    # The fitted polynomial alone (no sketch) is within 1e-2 of the NTK in relative Frobenius
    # error on such rows, so its ridge predictions are within a few percent of exact ridge's.
    assert abs(rows[1][1] - 1.0) < 0.05

"""experiments.graph_depth: GCN node classification against depth, on a tiny block model graph."""

import json

import pytest
import yaml

from experiments import graph_depth
from experiments.config import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"
TINY = {
    "name": "tiny", "seed": 0, "n_train": 30, "depths": [1, 2], "dims": [1024],
    "graph": {"nodes": 90, "blocks": 3, "p_in": 0.15, "p_out": 0.02, "channels": 8, "signal": 0.4, "seed": 0},
}


def test_graph_depth_writes_its_outputs_and_sketch_follows_exact(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    assert graph_depth.main([str(config), "--out", str(out)]) == 0
    for name in ("results.json", "results.csv", "config.yaml", "accuracy_vs_depth.png"):
        assert (out / name).is_file(), name
    assert (out / "accuracy_vs_depth.png").read_bytes()[:8] == PNG
    result = json.loads((out / "results.json").read_text())
    assert result["status"] == "finished"
    records = result["records"]
    assert len(records) == 2 * 3  # depths x (exact, ntk_sketch, ntk_random_features)
    assert len((out / "results.csv").read_text().splitlines()) == 1 + len(records)
    exact = {r["depth"]: r["test_accuracy"] for r in records if r["method"] == "exact"}
    for r in records:
        assert r["n_test"] == 60 and 0.0 <= r["test_accuracy"] <= 1.0
        if r["method"] == "ntk_sketch":
            # Graph seeds 0-2 x keys 0-2 at dim 1024: |sketch - exact| <= 0.017 (one of the 60 test
            # nodes), kernel error 0.012-0.032. Tolerances: 3 nodes and 3x the worst error.
            assert abs(r["test_accuracy"] - exact[r["depth"]]) <= 0.05 + 1e-9, (r, exact)
            assert r["kernel_rel_fro"] < 0.1, r
        if r["method"] == "ntk_random_features":
            assert r["kernel_rel_fro"] < 0.3, r  # measured 0.028-0.094
    # the resolved config reruns as is
    assert graph_depth.load_config(out / "config.yaml") == dict(graph_depth.validate(TINY), name="tiny")


@pytest.mark.parametrize("raw, message", [
    ({"grpah": {}}, r"grpah: unknown key \(did you mean 'graph'\?\)"),
    ({"graph": {"nodez": 50}}, r"graph\.nodez: unknown key for the graph generator \(did you mean 'nodes'\?\)"),
    ({"graph": {"p_in": 1.5}}, r"graph\.p_in: expected"),
    ({"methods": ["exact", "sketch"]}, r"methods\[1\]: expected one of"),
    ({"depths": [1, 0]}, r"depths\[1\]: expected a positive integer"),
    ({"dims": [1024, 1024]}, r"dims\[1\]: 1024 is listed twice"),
    ({"n_train": 600}, r"n_train: 600 leaves no test node"),
    ({"selection": "cv"}, r"selection: expected one of"),
    ({"output": "x"}, r"output: unknown key \(allowed: name, seed, graph"),
])
def test_graph_depth_rejects_bad_configs(raw, message):
    with pytest.raises(ConfigError, match=message):
        graph_depth.validate(raw)


def test_graph_depth_cli_reports_config_errors(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("graph: {nodes: 50, colours: 3}\n")
    assert graph_depth.main([str(config), "--out", str(tmp_path / "out")]) == 2
    assert "graph.colours: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_graph_depth_check_prints_the_plan(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert graph_depth.main([str(config), "--check", "--out", str(tmp_path / "out")]) == 0
    plan = capsys.readouterr().out
    assert "tiny: 6 runs" in plan and "90 nodes" in plan and "30 training / 60 test nodes" in plan
    assert not (tmp_path / "out").exists()

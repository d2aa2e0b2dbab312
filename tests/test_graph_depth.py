"""experiments.graph_depth and ntkfeat.graphs: GCN node classification and kernel collapse against depth,
with residual and edge-dropping remedies, on tiny block model graphs."""

import json

import numpy as np
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


# --------------------------------------------------------------------------- collapse and remedies

REMEDIES = dict(TINY, name="remedies", depths=[1, 2, 4], methods=["exact"], remedies=["plain", "residual", "drop_edge"],
                drop_edge={"keep": "critical", "patterns": 4, "seed": 0}, fit_from=1)


@pytest.fixture(scope="module")
def remedy_run(tmp_path_factory):
    """The exact kernels of the three remedies at depths 1, 2, 4 on the 90-node block model graph,
    through the command line (outputs in a temporary folder)."""
    folder = tmp_path_factory.mktemp("remedies")
    (folder / "remedies.yaml").write_text(yaml.safe_dump(REMEDIES))
    assert graph_depth.main([str(folder / "remedies.yaml"), "--out", str(folder / "out")]) == 0
    return json.loads((folder / "out" / "results.json").read_text()), folder / "out"


def test_remedy_run_writes_spreads_rates_and_both_plots(remedy_run):
    result, out = remedy_run
    for name in ("rates.csv", "spread_vs_depth.png", "accuracy_vs_depth.png"):
        assert (out / name).is_file(), name
    assert (out / "spread_vs_depth.png").read_bytes()[:8] == PNG
    assert len(result["records"]) == 3 * 3  # remedies x depths, exact only
    assert [r["remedy"] for r in result["rates"]] == ["plain", "residual", "drop_edge"]
    assert all(r["fit_depths"] == [1, 2, 4] for r in result["rates"])
    assert len((out / "rates.csv").read_text().splitlines()) == 1 + 3
    drop = result["drop_edge"]
    assert drop["patterns"] == 4 and drop["keep"] == pytest.approx(result["graph_facts"]["critical_keep"])


def test_plain_gcn_kernel_spread_falls_with_depth(remedy_run):
    spread = {r["depth"]: r["spread"] for r in remedy_run[0]["records"] if r["remedy"] == "plain"}
    # Measured 0.282, 0.166, 0.094 (ratios 0.59, 0.57): each doubling of depth must cut the spread
    # by at least a fifth.
    assert spread[2] < 0.8 * spread[1] and spread[4] < 0.8 * spread[2], spread


def test_residual_connections_slow_the_collapse(remedy_run):
    rate = {r["remedy"]: r["rate"] for r in remedy_run[0]["rates"]}
    # Measured on this graph (depths 1, 2, 4): plain -0.354 per layer, residual (alpha 1) -0.206,
    # a gap of 0.15; asserted with a third of it. Both still collapse.
    assert rate["plain"] < rate["residual"] - 0.05 and rate["residual"] < 0, rate


def test_edge_sampling_is_deterministic_per_key_and_keeps_the_expected_fraction():
    import jax

    from ntkfeat import graphs
    from ntkfeat.data.graphs import stochastic_block_model

    g = stochastic_block_model(nodes=200, blocks=2, p_in=0.2, p_out=0.05, seed=1)
    edges = graphs.edges_of(g.adjacency)
    key = jax.random.PRNGKey(3)
    a, b = graphs.drop_edges(key, edges, 0.3), graphs.drop_edges(key, edges, 0.3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, graphs.drop_edges(jax.random.PRNGKey(4), edges, 0.3))
    a = np.asarray(a)
    assert np.array_equal(a, a.T) and not np.any(np.diag(a)) and not np.any(a[~edges])
    patterns = np.asarray(graphs.sample_patterns(key, edges, 0.3, 10))
    np.testing.assert_array_equal(patterns, graphs.sample_patterns(key, edges, 0.3, 10))
    kept = np.mean([graphs.edges_of(p).sum() for p in patterns]) / edges.sum()
    # 10 patterns x E edges (E about 2,500) Bernoulli(0.3) draws: the kept fraction's standard
    # deviation is sqrt(0.3 * 0.7 / (10 E)) < 0.003; tolerance 0.015 (5 sigma).
    assert abs(kept - 0.3) < 0.015, kept
    # Each pattern is GCN-normalized: symmetric, D^-1/2 (A_s + I) D^-1/2 has eigenvalue 1 on sqrt(d + 1).
    d = np.asarray(graphs.edges_of(patterns[0]).sum(axis=1) + 1, np.float64)
    np.testing.assert_allclose(patterns[0] @ np.sqrt(d), np.sqrt(d), rtol=1e-5)
    np.testing.assert_allclose(graphs.sample_patterns(key, edges, 1.0, 2)[1], g.adjacency, rtol=1e-6, atol=1e-7)


def test_critical_keep_probability_and_spread_on_known_graphs():
    from ntkfeat import graphs

    n = 12
    complete = ~np.eye(n, dtype=bool)
    assert graphs.critical_keep_probability(complete) == pytest.approx(1 / (n - 2))  # regular: 1 / (d - 1)
    cycle = np.roll(np.eye(n, dtype=bool), 1, axis=1)
    assert graphs.critical_keep_probability(cycle | cycle.T) == 1.0  # d = 2: a path never percolates
    v = np.arange(1.0, 6.0)
    assert graphs.kernel_spread(np.outer(v, v)) < 1e-12  # rank one: every normalized entry is 1
    assert graphs.kernel_spread(np.eye(5)) == pytest.approx(2.0)  # entries 1/5 ones: std 0.4, mean 0.2
    depths = np.array([2, 4, 8, 16])
    assert graphs.fit_rate(depths, 3.0 * np.exp(-0.4 * depths)) == pytest.approx((-0.4, np.log(3.0)))
    with pytest.raises(ValueError, match="positive"):
        graphs.fit_rate([1, 2], [0.1, 0.0])


def test_drop_edge_averaged_kernel_is_psd_and_its_features_follow_it():
    import jax

    import ntkfeat as nf
    from ntkfeat import graphs
    from ntkfeat.data.graphs import stochastic_block_model
    from ntkfeat.metrics import relative_frobenius

    g = stochastic_block_model(nodes=40, blocks=2, p_in=0.3, p_out=0.05, channels=4, seed=2)
    edges = graphs.edges_of(g.adjacency)
    patterns = np.asarray(graphs.sample_patterns(jax.random.PRNGKey(0), edges, 0.5, 4))
    init_fn, feature_fn, kernel_fn = graph_depth.gcn(2)
    k = graph_depth.averaged_exact_kernel(kernel_fn, g.x[None], patterns)
    w = np.linalg.eigvalsh(k)
    assert w.min() > -1e-10 * w.max(), w.min()
    assert not np.allclose(k, graph_depth.exact_node_kernel(kernel_fn, g.x[None], g.adjacency[None]), rtol=0.05)
    phi = graph_depth.averaged_node_features(init_fn, feature_fn, lambda d: nf.Sketch(dim=d), 2048, g.x[None],
                                             patterns, seed=0)
    assert phi.shape == (40, 2048)
    # 4 patterns x 512 features: error measured 0.012 (keys 0-2: 0.008-0.012; RandomFeatures
    # 0.019-0.049); tolerance 5x. Without the 1 / sqrt(patterns) scale the Gram would be 4 K (error 3).
    assert relative_frobenius(phi @ phi.T, k) < 0.06


def test_karate_club_graph():
    pytest.importorskip("networkx")
    from ntkfeat import graphs
    from ntkfeat.data.karate import karate_club

    g = karate_club()
    assert g.x.shape == (34, 34) and g.adjacency.shape == (34, 34)
    assert graphs.edges_of(g.adjacency).sum() == 2 * 78
    assert np.bincount(g.labels).tolist() == [17, 17]  # the two factions
    np.testing.assert_allclose(g.adjacency, g.adjacency.T)


@pytest.mark.parametrize("raw, message", [
    ({"graph": {"source": "karate", "nodes": 34}}, r"graph\.nodes: the karate club graph takes no generator"),
    ({"graph": {"source": "cora"}}, r"graph\.source: expected one of"),
    ({"graph": {"source": "karate"}, "n_train": 34}, r"n_train: 34 leaves no test node of graph\.nodes=34"),
    ({"remedies": ["plain", "dropedge"]}, r"remedies\[1\]: expected one of"),
    ({"drop_edge": {"keep": 0.0}}, r"drop_edge\.keep: expected 'critical' or a probability"),
    ({"drop_edge": {"keep": "half"}}, r"drop_edge\.keep: expected 'critical' or a probability"),
    ({"residual": {"alfa": 1}}, r"residual\.alfa: unknown key \(did you mean 'alpha'\?\)"),
    ({"remedies": ["drop_edge"], "dims": [8], "drop_edge": {"patterns": 8}}, r"dims: 8 is split over"),
])
def test_graph_depth_rejects_bad_remedy_configs(raw, message):
    with pytest.raises(ConfigError, match=message):
        graph_depth.validate(raw)

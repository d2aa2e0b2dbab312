"""Several local devices and several processes: the runner's results do not depend on either.

Each runner here is a subprocess: XLA_FLAGS (the forced CPU device count) and
jax.distributed must be set before JAX starts. All run on CPUs (gloo between processes).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ntkfeat import batching, distributed

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds for one runner (about 30 s on 2 CPU cores)
# The quickstart reduced to one dimension per method, still on diabetes' 354 training rows (holdout
# fits on 319): ntk_sketch at 1024 features takes the 'dual' path (features in memory, gathered
# by rows), the others at 256 or 32 the 'gram' path (statistics summed over processes); the exact
# kernel, Nystrom's landmark kernel and the kernel-error reference are computed by rows too.
REDUCED = [
    "configs/quickstart.yaml", "--quiet", "--set", "plots=false", "--set", "evaluation.kernel_error_rows=100",
    "--set", "methods=[{method: exact}, {method: ntk_sketch, dims: [1024], degree: 8}, "
             "{method: ntk_random_features, dims: [256], leverage: true}, {method: random_fourier, dims: [256]}, "
             "{method: nystrom, dims: [32]}]",
]


def _env(devices: int = 1, **extra) -> dict:
    """The environment of a CPU runner with `devices` local devices and no multi-process variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **extra)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _start(args, env, log: pathlib.Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)


def _finish(processes: list, logs: list, code: int = 0) -> None:
    """Waits for every process and checks each exited with `code`; on a timeout or an unexpected
    exit of one (the others would wait for it in a collective) all are killed."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            if any(p.poll() not in (None, code) for p in processes):
                break
            time.sleep(0.2)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(processes, logs):
        assert p.returncode == code, f"{log.name} exited {p.returncode}:\n{log.read_text()[-4000:]}"


def _run(tmp_path: pathlib.Path, name: str, devices: int = 1) -> dict:
    out, log = tmp_path / name, tmp_path / f"{name}.log"
    _finish([_start(["-m", "experiments.run", *REDUCED, "--out", str(out)], _env(devices), log)], [log])
    return json.loads((out / "results.json").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(tmp_path: pathlib.Path, args_of, count: int = 2, code: int = 0) -> list:
    """Runs `count` processes of one run on localhost, each to exit with `code`; args_of(i, port)
    -> (argv, extra environment variables)."""
    port, processes, logs = _free_port(), [], []
    for i in range(count):
        args, extra = args_of(i, port)
        logs.append(tmp_path / f"process{i}.log")
        processes.append(_start(args, _env(**extra), logs[-1]))
    _finish(processes, logs, code)
    return logs


def _flags(i: int, port: int, count: int = 2) -> list:
    return ["--coordinator", f"localhost:{port}", "--num-processes", str(count), "--process-id", str(i)]


def _assert_same_results(records: list, reference: list) -> None:
    assert [(r["label"], r["solver_path"]) for r in records] == [(r["label"], r["solver_path"]) for r in reference]
    for r, ref in zip(records, reference):
        for key in ("test_rmse", "kernel_rel_fro"):
            if ref[key] is not None:
                assert r[key] == pytest.approx(ref[key], rel=1e-4), (r["label"], key)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    results = _run(tmp_path_factory.mktemp("one_device"), "run")
    paths = {r["solver_path"] for r in results["records"]}
    assert paths == {"kernel", "dual", "gram"}, paths  # every path the processes treat differently
    return results


def test_helpers_are_identities_in_one_process(monkeypatch):
    for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    x = np.arange(12.0).reshape(6, 2)
    assert (distributed.process_count(), distributed.process_index()) == (1, 0)
    assert distributed.split_rows(6) == slice(0, 6)
    assert distributed.allgather_rows(x) is x and distributed.allreduce_sum(x) is x
    assert distributed.map_split(lambda a: 2 * a, x).tolist() == (2 * x).tolist()
    assert distributed.initialize() is False  # nothing to join
    with pytest.raises(ValueError, match="coordinator"):
        distributed.initialize(num_processes=2, process_id=0)
    with pytest.raises(ValueError, match="not in 0..1"):
        distributed.initialize("localhost:1", num_processes=2, process_id=2)


def test_helpers_across_two_processes(tmp_path):
    """Unequal shares gathered in order, float64 sums exact and identical, a row-wise map split."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        from ntkfeat import distributed
        from ntkfeat.solvers import GramState
        assert distributed.initialize(f"localhost:{sys.argv[1]}", 2, int(sys.argv[2]))
        i = distributed.process_index()
        share = distributed.split_rows(5)
        assert share == [slice(0, 2), slice(2, 5)][i], share
        x = np.arange(10.0).reshape(5, 2)
        assert np.array_equal(distributed.allgather_rows(x[share]), x)
        assert np.array_equal(distributed.allgather_rows(x[share], counts=[2, 3]), x)
        big = 1.0 + (i + 1) * 2.0 ** -40  # float32 would round both to 1
        state = distributed.allreduce_sum(GramState(np.full((2, 2), big), np.zeros(2), np.ones(()), 3 + i))
        assert state.ztz.dtype == np.float64 and state.ztz[0, 0] == 2.0 + 3 * 2.0 ** -40, state.ztz[0, 0]
        assert type(state.n) is int and state.n == 7 and state.yty == 2.0
        assert np.array_equal(distributed.map_split(lambda a: a * a, x[:1]), x[:1] ** 2)  # one row, one share empty
        assert np.array_equal(distributed.map_split(lambda a: a.sum(1), x), x.sum(1))
        assert int(distributed.broadcast(np.int32(7 * (1 - i)))) == 7
        print("ok", i)
    """)
    logs = _processes(tmp_path, lambda i, port: (["-c", script, str(port), str(i)], {}))
    assert all(log.read_text().strip().endswith(f"ok {i}") for i, log in enumerate(logs))


FIT_SCRIPT = textwrap.dedent("""
    # fitting.fit_features' paths that the runner test leaves out, in one process or as one of two.
    import json, sys
    import jax.numpy as jnp
    import numpy as np
    from ntkfeat import distributed
    if len(sys.argv) > 1:
        distributed.initialize(f"localhost:{sys.argv[1]}", 2, int(sys.argv[2]))
    from experiments import fitting
    from experiments.methods import FeatureMethod, feature_batches
    rng = np.random.default_rng(0)
    x = rng.standard_normal((203, 5)).astype(np.float32)
    w = rng.standard_normal((5, 40)).astype(np.float32)
    fm = FeatureMethod(init=None, apply=lambda params, xb: jnp.tanh(jnp.asarray(xb) @ w), out_dim=None,
                       default_batch_size=None)
    regression = fitting.targets(x[:, 0] + 0.3 * rng.standard_normal(203), "regression", None)
    classes = fitting.targets((x[:, 1] > 0).astype(int), "classification", 2)
    solver = dict(selection="holdout", lambdas=None, val_fraction=0.2, folds=3, iterative=False, steps=30,
                  learning_rate=0.05)
    cases = {"gram accuracy": (solver, classes, "accuracy"), "gcv": (dict(solver, selection="gcv"), regression, "mse"),
             "iterative": (dict(solver, iterative=True, lambdas=[0.1, 1.0]), regression, "mse")}
    out = {}
    for name, (config, y, metric) in cases.items():
        stream = lambda rows, desc, local=False: feature_batches(fm, None, x, rows, 32, local=local)
        fit = fitting.fit_features(stream, y, 40, config, metric, 0)
        out[name] = [fit.path, fit.lam, fit.val_score, np.asarray(fit.predict(fm.apply(None, x[:9]))).ravel().tolist()]
    print("RESULT", json.dumps(out))
""")


def _fit_result(log: pathlib.Path) -> dict:
    return json.loads(log.read_text().split("RESULT ")[-1])


def test_other_solver_paths_agree_across_processes(tmp_path):
    """Holdout by accuracy (Gram statistics all-reduced, validation features gathered), GCV (one
    all-reduced state), iterative (gathered batches in the same order); the runner test covers
    holdout by MSE on the 'gram' and 'dual' paths."""
    single = tmp_path / "single"
    single.mkdir()
    log = single / "fit.log"
    _finish([_start(["-c", FIT_SCRIPT], _env(), log)], [log])
    reference = _fit_result(log)
    assert [path for path, *_ in reference.values()] == ["gram", "gram", "iterative"]
    logs = _processes(tmp_path, lambda i, port: (["-c", FIT_SCRIPT, str(port), str(i)], {}))
    for log in logs:
        for name, (path, lam, score, predictions) in _fit_result(log).items():
            ref_path, ref_lam, ref_score, ref_predictions = reference[name]
            assert (path, lam) == (ref_path, ref_lam), name
            assert score == pytest.approx(ref_score, rel=1e-5), name
            np.testing.assert_allclose(predictions, ref_predictions, rtol=1e-4, atol=1e-6, err_msg=name)


def test_four_local_devices_agree_with_one(tmp_path, one_device):
    results = _run(tmp_path, "run", devices=4)
    device = results["device"]
    assert (device["count"], device["local_count"], device["process_count"]) == (4, 4, 1)
    assert device["cpu_batches_at_once"] == 1  # sharded programs: one batch at a time
    # One device: the batches computed at once by threads (the default, or the environment's).
    assert one_device["device"]["cpu_batches_at_once"] == batching.CPU_WORKERS
    _assert_same_results(results["records"], one_device["records"])


def test_two_processes_agree_with_one(tmp_path, one_device):
    """Flags for process 0, JAX's environment variables for process 1; only process 0 writes."""
    out = tmp_path / "run"

    def args_of(i, port):
        args = ["-m", "experiments.run", *REDUCED, "--out", str(out)]
        if i == 0:
            return args + _flags(i, port), {}
        return args, {"JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}

    logs = _processes(tmp_path, args_of)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["run"]
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "results.csv", "results.json"]
    assert "writing to" in logs[0].read_text() and "writing to" not in logs[1].read_text()
    results = json.loads((out / "results.json").read_text())
    device = results["device"]
    assert (device["count"], device["local_count"], device["process_count"], device["process_index"]) == (2, 1, 2, 0)
    assert device["cpu_batches_at_once"] == 1  # collectives across processes: one batch at a time
    _assert_same_results(results["records"], one_device["records"])


def test_every_process_stops_when_process_0_cannot_write(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "results.json").write_text("{}")
    args = ["-m", "experiments.run", "configs/quickstart.yaml", "--set", "methods=[{method: exact}]", "--out", str(out)]
    logs = _processes(tmp_path, lambda i, port: (args + _flags(i, port), {}), code=2)
    assert "already exists" in logs[0].read_text() and "already exists" not in logs[1].read_text()
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]

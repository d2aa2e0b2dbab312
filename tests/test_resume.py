"""Resumable runs: feature shards (ntkfeat.store), --resume after SIGKILL, corrupt shards, disk
checks, and runs that always say how they ended (results.json from the first moment, ENOSPC)."""

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest
import yaml

from experiments import report
from experiments import run as runner
from experiments.run import OutputExistsError, main, make_output_dir
from ntkfeat import store

REPO = pathlib.Path(__file__).resolve().parents[1]
FC2 = [{"repeat": {"times": 2, "layers": [{"Dense": {"W_std": 2**0.5}}, "Relu"]}}, {"Dense": {"W_std": 1.0}}]
# Fields that measure time, memory or the shard work of one invocation: they differ between an
# interrupted-and-resumed run and an uninterrupted one; every other field must be equal.
VARYING = {"feature_seconds", "compile_seconds", "solve_seconds", "solve_compile_seconds", "init_seconds",
           "stage_seconds", "peak_rss_gb", "shards", "note"}


def small_config(tmp_path, rows_per_shard=2, n_train=300, dims=(256,), **store_options) -> pathlib.Path:
    raw = {
        "name": "resume", "seed": 3,
        "data": {"name": "diabetes", "n_train": n_train, "n_test": 60},
        "architecture": FC2,
        "methods": [{"method": "ntk_sketch", "dims": list(dims), "degree": 4},
                    {"method": "ntk_random_features", "dims": [128]}],
        "solver": {"selection": "holdout"},
        "evaluation": {"kernel_error_rows": 40},
        "store": {"shards": True, "rows": rows_per_shard, **store_options},
        "plots": False,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def stable(records):
    return [{k: v for k, v in r.items() if k not in VARYING} for r in records]


def results(out):
    return json.loads((out / "results.json").read_text())


def shard_files(out):
    return sorted((out / "shards").rglob("*.npz"))


# --------------------------------------------------------------------------- the store


def test_shard_round_trip_and_truncation_detected(tmp_path):
    phi = np.random.default_rng(0).normal(size=(37, 11)).astype(np.float32)
    path = tmp_path / "a.npz"
    store.save_shard(path, phi)
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file must be renamed away"
    np.testing.assert_array_equal(store.load_shard(path, phi.shape), phi)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a kill in the middle of a non-atomic write
    with pytest.warns(store.CorruptShardWarning, match="unreadable"):
        assert store.load_shard(path, phi.shape) is None
    assert not path.exists(), "a corrupt shard is deleted so that it is recomputed"
    store.save_shard(path, phi)
    flipped = bytearray(path.read_bytes())
    flipped[200] ^= 0xFF  # one flipped bit inside the array data: the zip CRC-32 catches it
    path.write_bytes(bytes(flipped))
    with pytest.warns(store.CorruptShardWarning):
        assert store.load_shard(path, phi.shape) is None
    store.save_shard(path, phi)
    with pytest.warns(store.CorruptShardWarning, match="shape"):
        assert store.load_shard(path, (37, 12)) is None


def test_sharded_stream_matches_direct_rows(tmp_path):
    x = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    calls = []

    def compute(xb):
        calls.append(len(xb))
        return np.concatenate([xb, xb ** 2], axis=1)

    full = np.concatenate([x, x ** 2], axis=1)
    shards = store.ShardStore(tmp_path, rows=8).matrix("k", x, compute, 6, "train")
    shards.ensure(20)
    assert calls == [8, 8, 8], "rows [0, 20) need the first three blocks of 8, computed once each"
    for rows in (None, np.arange(3, 19), np.array([0, 7, 8, 15, 16, 17]), np.array([17, 2, 9, 9])):
        got = np.concatenate([phi for _, phi in shards.stream(rows, batch_size=5, n=20)])
        want = full[:20] if rows is None else full[rows]
        np.testing.assert_array_equal(got, want)
    starts = [s for s, _ in shards.stream(None, batch_size=5, n=20)]
    assert starts == [0, 5, 10, 15]
    assert calls == [8, 8, 8], "streaming reads the shards, it does not recompute"
    # another key, or other input rows, give other names: never stale features
    other = store.ShardStore(tmp_path, rows=8).matrix("k2", x, compute, 6, "train")
    assert other.missing(20) == [0, 1, 2]
    x2 = x.copy()
    x2[9] += 1.0
    changed = store.ShardStore(tmp_path, rows=8).matrix("k", x2, compute, 6, "train")
    assert changed.missing(20) == [1]


def test_fingerprint_sees_every_leaf():
    params = {"w": jax.numpy.ones((3, 2)), "s": np.arange(4), "n": 5}
    base = store.fingerprint("m", params)
    assert store.fingerprint("m", params) == base
    assert store.fingerprint("m", dict(params, n=6)) != base
    assert store.fingerprint("m", dict(params, s=np.arange(4) + 1)) != base
    assert store.fingerprint("m", dict(params, w=jax.numpy.ones((2, 3)))) != base


def test_disk_check_fails_before_any_work(tmp_path, capsys, monkeypatch):
    config = small_config(tmp_path)
    monkeypatch.setattr(store, "free_bytes", lambda path: 10 << 20)  # 10 MiB free: less than the margin
    out = tmp_path / "out"
    with pytest.raises(store.InsufficientDiskError, match="GiB are free"):
        main([str(config), "--out", str(out), "--quiet"])
    doc = results(out)
    assert doc["status"] == "failed" and "InsufficientDiskError" in doc["error"]
    assert doc["records"] == [] and not shard_files(out), "nothing was computed"


# --------------------------------------------------------------------------- resuming


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    config = small_config(tmp)
    out = tmp / "out"
    assert main([str(config), "--out", str(out), "--quiet"]) == 0
    return config, out, results(out)


def test_sigkill_mid_shards_then_resume_gives_the_same_records(tmp_path, uninterrupted):
    config, _, reference = uninterrupted
    out = tmp_path / "killed"
    # Two rows per shard: 150 training shards of the first feature map, so that a kill lands among them.
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run", str(config), "--out", str(out), "--quiet"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and len(shard_files(out)) >= 20:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(shard_files(out))
    assert 20 <= before < 150 and results(out)["records"] == [], "killed among the first map's shards"
    assert main(["--resume", str(out), "--quiet"]) == 0
    doc = results(out)
    assert doc["status"] == "finished" and len(doc["resumed"]) == 1
    first = doc["records"][0]["shards"]
    assert first["loaded"] >= before and first["computed"] <= 180 - before, "the killed run's shards were read"
    assert stable(doc["records"]) == stable(reference["records"])


def test_truncated_shard_is_recomputed_on_resume(tmp_path, uninterrupted):
    config, reference_out, reference = uninterrupted
    out = tmp_path / "out"
    assert main([str(config), "--out", str(out), "--quiet"]) == 0
    # As if interrupted after its shards were written: no finished record, one shard cut short.
    doc = results(out)
    doc.update(status="interrupted", records=[])
    (out / "results.json").write_text(json.dumps(doc))
    victim = shard_files(out)[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["--resume", str(out), "--quiet"]) == 0
    assert any(issubclass(w.category, store.CorruptShardWarning) for w in caught)
    doc = results(out)
    assert sum(r["shards"]["recovered"] for r in doc["records"]) == 1
    assert stable(doc["records"]) == stable(reference["records"])
    original = {p.name: p.read_bytes() for p in shard_files(reference_out)}
    for p in shard_files(out):  # the recomputed shard is bit for bit the original
        np.testing.assert_array_equal(np.load(p)["phi"], np.load(reference_out / p.relative_to(out))["phi"])
    assert victim.name in original


def test_resume_refuses_another_config(tmp_path, capsys, uninterrupted):
    config, out, _ = uninterrupted
    capsys.readouterr()
    assert main([str(config), "--resume", str(out), "--quiet", "--set", "seed=4"]) == 2
    assert "differs from the run's at seed" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nothing"), "--quiet"]) == 2


def test_finished_resume_recomputes_nothing_and_no_keep_deletes_shards(tmp_path, uninterrupted):
    config, _, reference = uninterrupted
    out = tmp_path / "out"
    assert main([str(config), "--out", str(out), "--quiet", "--no-keep-shards"]) == 0
    assert not (out / "shards").exists() and results(out)["shards"]["kept"] is False
    assert stable(results(out)["records"]) == stable(reference["records"])


def test_auto_shards_are_shared_by_every_run_of_one_feature_map(tmp_path, monkeypatch):
    # An accuracy-against-rows series: the full run's features reach the 'auto' threshold, its
    # subset's alone would not; the subset must read the full run's shards, not recompute its rows.
    full, subset = (300 + 60) * 256 * 4, (100 + 60) * 256 * 4
    monkeypatch.setattr(runner, "SHARDS_AUTO_BYTES", (full + subset) // 2)
    config = small_config(tmp_path, rows_per_shard=50)
    raw = yaml.safe_load(config.read_text())
    raw["store"]["shards"] = "auto"
    raw["evaluation"]["kernel_error_rows"] = 0
    raw["methods"] = [{"method": "ntk_sketch", "dims": [256], "degree": 4},
                      {"method": "ntk_sketch", "label": "first 100", "n_train": 100, "dims": [256], "degree": 4},
                      {"method": "ntk_random_features", "dims": [128]}]  # its own map, below the threshold
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"
    assert main([str(config), "--out", str(out), "--quiet"]) == 0
    by_label = {r["label"]: r for r in results(out)["records"]}
    assert by_label["first 100"]["shards"]["computed"] == 0 and by_label["first 100"]["shards"]["loaded"] > 0
    assert by_label["first 100"]["shards"]["folder"] == by_label["ntk_sketch"]["shards"]["folder"]
    assert by_label["ntk_random_features"].get("shards") is None


# --------------------------------------------------------------------------- runs say how they ended


def test_results_json_exists_with_the_folder_and_claims_are_exclusive(tmp_path):
    out = make_output_dir(tmp_path / "a", "x")
    assert results(out)["status"] == "starting"
    with pytest.raises(OutputExistsError, match="--resume"):
        make_output_dir(out, "x")
    empty = tmp_path / "b"
    empty.mkdir()
    runner._claim(empty)  # another run claimed the (empty) folder first
    with pytest.raises(OutputExistsError, match="taken by another run"):
        runner._claim(empty)


def test_sigterm_before_the_first_save_says_interrupted(tmp_path, monkeypatch):
    def terminated(*args, **kwargs):
        raise runner.Terminated("SIGTERM (signal 15)")

    monkeypatch.setattr(runner, "_execute", terminated)
    out = tmp_path / "out"
    assert main([str(small_config(tmp_path)), "--out", str(out), "--quiet"]) == 128 + signal.SIGTERM
    doc = results(out)
    assert doc["status"] == "interrupted" and "SIGTERM" in doc["error"]


def test_disk_full_mid_run_ends_failed_with_the_error(tmp_path, monkeypatch):
    """A shard write fails with ENOSPC; from then on every write fails while the folder's reserve
    exists. The runner frees its reserve and records status 'failed' with the error."""
    out = tmp_path / "out"
    full = {"on": False}
    write = report.atomic_write

    def atomic_write(path, data):
        if full["on"] and (out / runner._RESERVE).exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(path, data)

    def save_shard(path, phi):
        full["on"] = True
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "atomic_write", atomic_write)
    monkeypatch.setattr(store, "save_shard", save_shard)
    with pytest.raises(OSError, match="No space"):
        main([str(small_config(tmp_path)), "--out", str(out), "--quiet"])
    doc = results(out)
    assert doc["status"] == "failed" and "No space left on device" in doc["error"]
    assert not (out / runner._RESERVE).exists()

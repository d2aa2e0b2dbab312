"""The experiment runner: one YAML file in, one results folder out.

    ntkfeat run configs/quickstart.yaml [--out DIR] [--set PATH=VALUE ...] [--check]
    ntkfeat run quickstart ...                # a built-in config by name (configs/ of the repository)
    python -m experiments.run configs/quickstart.yaml ...   # the same, in a clone

For every dataset, method, dimension and repeat it builds features of the training and test rows
(streamed in batches), fits ridge regression with the regularization chosen on the training rows,
scores the test rows, and measures how well Phi Phi^T approximates the exact NTK on a few training
rows. `exact` is kernel ridge on neural-tangents' kernel. The config schema is in
`ntkfeat/runs/config.py` and the README; `--set` overrides any key (value parsed as YAML), e.g.
`--set data.n_train=null --set 'methods[1].dims=[16384]'`.

Everything is checked before any work: the config, the data files (loaded once), the architecture
against each dataset's input shape, method sizes against row counts. Only then is the output
folder created (default `runs/<name>-<YYYYmmdd-HHMMSS>`; an existing non-empty --out is refused),
holding results.json (records and metadata), results.csv, config.yaml (the resolved config, which
reruns the experiment), kernel_error_vs_dim.png, metric_vs_time.png and, where a method was run
at several training-set sizes, metric_vs_rows.png. Results are rewritten
atomically after every run, so a crash (status 'failed'), Ctrl-C or SIGTERM (status 'interrupted')
keeps what finished. `ntkfeat replot` redraws the plots of a run folder, `ntkfeat compare`
tabulates and plots several.

Devices and hosts: each batch of rows is sharded over every local device. With --num-processes P
(and --coordinator, --process-id, or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)
the same command runs as P processes, one per host, which split the rows (`ntkfeat.distributed`):
Gram statistics are summed over processes, in-memory features and exact kernel rows are
all-gathered, every process solves the same problem, and process 0 alone writes and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import errno
import json
import os
import pathlib
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

import jax
import numpy as np

import ntkfeat as nf
from ntkfeat.runs import builtin, fitting, report
from ntkfeat.runs.config import SHARDS_AUTO_BYTES, ConfigError, build_layers, load_config
from ntkfeat.runs.methods import Network, Timer, all_features, block, exact_kernel, feature_batches, feature_method
from ntkfeat import baselines, batching, distributed, metrics, solvers
from ntkfeat.batching import progress as progress_bar
from ntkfeat.data import flip_averaged, flip_averaged_kernel, load_dataset
from ntkfeat.store import ShardStore, check_disk, fingerprint

# The clone this module runs from (ntkfeat/runs/run.py -> the repository root), whose commit goes into
# results.json; None when installed (site-packages may sit inside some other repository, e.g. a venv in a clone,
# whose commit would describe the wrong code).
_REPO = pathlib.Path(__file__).resolve().parents[2]
if not ((_REPO / ".git").exists() and (_REPO / "pyproject.toml").is_file() and (_REPO / "ntkfeat").is_dir()):
    _REPO = None
_NO_NTK_REFERENCE = ("exact", "random_fourier")  # exact has no features; random Fourier targets a Gaussian kernel


class OutputExistsError(FileExistsError):
    """--out names a folder that already holds files."""


@dataclasses.dataclass
class Data:
    spec: dict
    ds: object  # ntkfeat.data.Dataset
    label: str
    reference_rows: int  # training rows of the kernel-error check (0: none)


@dataclasses.dataclass
class Run:
    data: int  # index into Plan.data
    method: int  # index into config['methods']
    dim: int | None  # None for exact
    repeat: int
    n_train: int
    n_test: int | None  # None: no solve
    note: str = ""


@dataclasses.dataclass
class Plan:
    config: dict
    config_path: str
    overrides: list
    network: Network
    data: list
    runs: list


# --------------------------------------------------------------------------- checks before any work


def _load(spec: dict, where: str, seed: int, task: str | None):
    try:
        return load_dataset(spec["name"], root=spec["root"], path=spec["path"], split=spec["split"],
                            n_train=spec["n_train"], n_test=spec["n_test"], seed=seed,
                            standardize=spec["standardize"], task=spec["task"] or task, images=spec["images"],
                            zca=spec.get("zca"), flip=spec.get("flip"), patches=spec.get("patches"),
                            downsample=spec.get("downsample"))
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(f"{where} ({spec['label']}): {e}") from None


def _averages_flips(ds) -> bool:
    """data.flip: average: features (phi(x) + phi(flip x)) / sqrt 2 and their exact kernel."""
    return ds.info.get("flip") == "average"


def _split_groups(ds, n_train: int) -> np.ndarray | None:
    """data.flip: augment: each image and its mirror (rows 2i, 2i + 1) stay on one side of the
    lambda-selection split, so that validation rows are not mirrors of training rows."""
    return np.arange(n_train) // 2 if ds.info.get("flip") == "augment" else None


def _exact_kernel(network: Network, x1, x2=None, *, average_flips: bool = False, **kwargs) -> np.ndarray:
    """exact_kernel, or with average_flips the kernel of flip-averaged features,
    (K(x, y) + K(x, fy) + K(fx, y) + K(fx, fy)) / 2 (three blocks for x2 None, four otherwise)."""
    if not average_flips:
        return exact_kernel(network, x1, x2, **kwargs)
    return flip_averaged_kernel(lambda a, b: exact_kernel(network, a, b, **kwargs), x1, x2)


def _output_shape(layers, input_shape) -> tuple:
    """The finite network's output shape for one input, without computing anything."""
    # A layer description unpacks into its views (like neural-tangents' triples): pass it whole.
    init, _ = nf.finite_network(layers) if isinstance(layers, nf.layers.Layer) else nf.finite_network(*layers)
    shape = {}

    def params(key):
        shape["out"], p = init(key, (1,) + tuple(input_shape))
        return p

    jax.eval_shape(params, jax.random.PRNGKey(0))
    return tuple(shape["out"][1:])


def _check_architecture(layers, x, label: str) -> None:
    if x.ndim == 2:
        for i, layer in enumerate(layers):
            if isinstance(layer, (nf.Conv, nf.AvgPool, nf.GlobalAvgPool)):
                raise ConfigError(f"architecture: layer {i} ({type(layer).__name__}) needs images (n, H, W, C), but "
                                  f"{label} is tabular with inputs of shape (n, {x.shape[1]}) (images: null/true "
                                  "keeps image data in NHWC)")
    try:
        out = _output_shape(layers, x.shape[1:])
    except Exception as e:  # neural-tangents raises many types for a shape mismatch
        raise ConfigError(f"architecture: does not apply to {label}, whose inputs have shape "
                          f"(n, {', '.join(map(str, x.shape[1:]))}): {type(e).__name__}: {e}") from None
    if len(out) != 1:
        raise ConfigError(f"architecture: on {label} it ends with spatial shape {out[:-1]}; end it with "
                          "GlobalAvgPool or Flatten (then Dense) so that the kernel is one number per pair")


def _check_gradient(layers, spec: dict, x, where: str, label: str) -> None:
    try:
        out = _output_shape(baselines.finite_layers(layers, spec["width"]), x.shape[1:])
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    if out != (1,):
        raise ConfigError(f"{where}: gradient features need one scalar output per input, but on {label} the "
                          f"network outputs shape {out}; end the architecture with a readout Dense")


def _check_feature_map(network: Network, spec: dict, x, where: str, label: str) -> None:
    """Builds the NTK feature map at the method's smallest dim and drops it: dims too small for the
    input width or degree fail here, before any work, not hours into a sweep. (Larger dims only
    cost more of the same; the baselines check their dims against the rows when planned.)"""
    if spec["method"] not in ("ntk_sketch", "ntk_random_features"):
        return
    dims = spec["dims"]
    j = dims.index(min(dims))
    try:
        feature_method(spec, dims[j], network).init(jax.random.PRNGKey(0), x[:1])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}.dims[{j}]: {spec['label']} at dim {dims[j]} on {label}: {e}") from None


def _plan_method(config: dict, i: int, spec: dict, d: int, data: Data) -> list:
    """The runs of methods[i] on one dataset, with row counts clamped (and said so)."""
    ds, solver, where = data.ds, config["solver"], f"methods[{i}]"
    notes = []
    available = len(ds.x_train)
    n_train = min(spec["n_train"] or available, available)
    if spec["n_train"] and spec["n_train"] > available:
        notes.append(f"n_train {spec['n_train']} > {available} rows: all used")
    if spec["method"] == "exact" and n_train > solver["exact_max_train"]:
        notes.append(f"exact kernel ridge on {solver['exact_max_train']} of {n_train} training rows "
                     f"(solver.exact_max_train)")
        n_train = solver["exact_max_train"]
    n_test = None
    if solver is not None:
        n_test = min(spec["n_test"] or len(ds.x_test), len(ds.x_test))
        minimum = solver["folds"] if solver["selection"] == "kfold" else 2
        if n_train < minimum:
            raise ConfigError(f"{where}: {spec['label']} on {data.label} has {n_train} training rows; "
                              f"{solver['selection']} selection needs at least {minimum}")
    runs, seen = [], set()
    for j, dim in enumerate(spec.get("dims", [None])):
        note = list(notes)
        if spec["method"] == "nystrom" and dim > n_train:
            note.append(f"nystrom dim {dim} > {n_train} training rows: {n_train} landmarks")
            dim = n_train
            if dim in seen:
                continue
        seen.add(dim)
        if solver is not None and dim is not None:
            try:
                fitting.choose_path(n_train, dim, solver)
            except ValueError as e:
                raise ConfigError(f"{where}.dims[{j}]: on {data.label}: {e}") from None
        for r in range(spec["repeats"]):
            runs.append(Run(d, i, dim, r, n_train, n_test, "; ".join(note)))
    return runs


def prepare(config_path, overrides=()) -> Plan:
    """Validates the config, loads the data and checks every run; writes nothing.

    `config_path` is a YAML file, or the name of a built-in config (`quickstart`, see `builtin`)."""
    config_path = builtin.resolve(config_path)  # a name becomes the built-in file, recorded as config_file
    config = load_config(config_path, overrides)
    layers = build_layers(config["architecture"])
    network = Network.from_layers(layers)
    methods, solver = config["methods"], config["solver"]
    rows = config["evaluation"]["kernel_error_rows"]
    needs_reference = any(m["method"] not in _NO_NTK_REFERENCE for m in methods)
    data = []
    for d, spec in enumerate(config["data"]):
        where = f"data[{d}]" if len(config["data"]) > 1 else "data"
        ds = _load(spec, where, config["seed"], config["task"])
        if ds.task == "classification" and (ds.num_classes or 0) < 2:
            raise ConfigError(f"{where} ({spec['label']}): classification needs at least 2 classes, got "
                              f"{ds.num_classes}")
        if solver is not None and len(ds.x_test) == 0:
            raise ConfigError(f"{where}.n_test: {spec['label']} has no test rows to score (n_test: 0 suits only "
                              "solver: null)")
        _check_architecture(layers, ds.x_train, spec["label"])
        for i, m in enumerate(methods):
            if m["method"] == "gradient":
                _check_gradient(layers, m, ds.x_train, f"methods[{i}]", spec["label"])
            _check_feature_map(network, m, ds.x_train, f"methods[{i}]", spec["label"])
        data.append(Data(spec, ds, spec["label"], min(rows, len(ds.x_train)) if needs_reference else 0))
    runs = [run for d, item in enumerate(data) for i, m in enumerate(methods) for run in _plan_method(config, i, m, d, item)]
    return Plan(config, str(config_path), list(overrides), network, data, runs)


# --------------------------------------------------------------------------- one run


class References:
    """The exact kernel on each dataset's first rows, computed once and shared by all methods, and
    the exact method's test predictions (for prediction_agreement)."""

    def __init__(self, plan: Plan):
        self.plan, self.kernels, self.seconds, self.predictions = plan, {}, {}, {}

    def offer_predictions(self, d: int, n_train: int, n_test: int, predictions: np.ndarray) -> None:
        """Exact kernel ridge's test predictions from n_train training rows of dataset d."""
        self.predictions[(d, n_train, n_test)] = np.asarray(predictions, np.float64)

    def exact_predictions(self, d: int, n_train: int, n_test: int) -> np.ndarray | None:
        """Those predictions if an exact run on the same rows has finished, else None."""
        return self.predictions.get((d, n_train, n_test))

    def offer(self, d: int, k_train: np.ndarray) -> None:
        """An exact method's training kernel: its leading block is the reference, for free."""
        rows = self.plan.data[d].reference_rows
        if d not in self.kernels and 0 < rows <= len(k_train):
            self.kernels[d], self.seconds[d] = k_train[:rows, :rows], 0.0

    def get(self, d: int) -> np.ndarray:
        if d not in self.kernels:
            data = self.plan.data[d]
            t0 = time.perf_counter()
            evaluation = self.plan.config["evaluation"]
            self.kernels[d] = _exact_kernel(self.plan.network, data.ds.x_train[: data.reference_rows],
                                            average_flips=_averages_flips(data.ds),
                                            batch_size=evaluation["kernel_batch_size"],
                                            desc=f"{data.label} reference kernel", float64=evaluation["exact_float64"])
            self.seconds[d] = time.perf_counter() - t0
        return self.kernels[d]


def execute_run(plan: Plan, run: Run, references: References, store=None, status=None) -> dict:
    config, data = plan.config, plan.data[run.data]
    spec, ds, solver = config["methods"][run.method], data.ds, config["solver"]
    status = status or _Status(None, None)
    metric = "accuracy" if ds.task == "classification" else "mse"
    k = ds.num_classes if ds.task == "classification" else 1
    record = dict.fromkeys(report.RECORD_FIELDS)
    record.update(dataset=data.label, method=spec["method"], label=spec["label"], dim=run.dim, repeat=run.repeat,
                  key_seed=config["seed"] + run.repeat, n_train=run.n_train, n_test=run.n_test, task=ds.task,
                  note=run.note or None)
    x_train = ds.x_train[: run.n_train]
    y_train = fitting.targets(ds.y_train[: run.n_train], ds.task, ds.num_classes)
    if run.n_test is not None:
        x_test = ds.x_test[: run.n_test]
        y_test = fitting.targets(ds.y_test[: run.n_test], ds.task, ds.num_classes)

    if spec["method"] == "exact":
        batch = spec["batch_size"] or config["evaluation"]["kernel_batch_size"]
        t0 = time.perf_counter()
        flips = _averages_flips(ds)
        float64 = config["evaluation"]["exact_float64"]
        with fitting.compile_clock() as kernel_compile:
            k_train = _exact_kernel(plan.network, x_train, average_flips=flips, batch_size=batch,
                                    desc="exact train kernel", float64=float64)
            k_test = _exact_kernel(plan.network, x_test, x_train, average_flips=flips, batch_size=batch,
                                   desc="exact test kernel", float64=float64)
        t1 = time.perf_counter()
        references.offer(run.data, k_train)
        with fitting.compile_clock() as solve_compile:
            lam, val_score, alpha, fit_note = fitting.fit_kernel(k_train, y_train, solver, metric, config["seed"],
                                                                 groups=_split_groups(ds, run.n_train))
        record["note"] = "; ".join(filter(None, [record["note"], fit_note])) or None
        predictions = solvers.kernel_ridge_predict(k_test, alpha)
        references.offer_predictions(run.data, run.n_train, run.n_test, predictions)
        scores = fitting.score_batches([(predictions, y_test)])
        # compile_seconds, solve_compile_seconds: JAX's own count of its compilation (fitting.compile_clock)
        record.update(feature_seconds=t1 - t0, compile_seconds=kernel_compile.seconds,
                      solve_seconds=time.perf_counter() - t1, solve_compile_seconds=solve_compile.seconds,
                      solver_path="kernel", val_score=val_score, **{"lambda": lam},
                      **fitting.metrics(scores, ds.task, k, ds.y_std))
        return record

    fm = feature_method(spec, run.dim, plan.network, config["evaluation"]["kernel_batch_size"])
    if _averages_flips(ds):  # (phi(x) + phi(flip x)) / sqrt 2: two feature passes per batch
        fm = dataclasses.replace(fm, apply=flip_averaged(fm.apply))
    key_seed = config["seed"] + run.repeat
    t0 = time.perf_counter()
    params = block(fm.init(jax.random.PRNGKey(key_seed), x_train))
    record["init_seconds"] = time.perf_counter() - t0
    record["out_dim"] = m = fm.out_dim(params)
    batch = max(1, min(spec["batch_size"] or fm.default_batch_size(params), run.n_train))
    timer = Timer()
    name = f"{spec['label']} {run.dim}"
    stages = status.stages(f"{data.label} {name} #{run.repeat}")
    shards = None
    if store is not None and _uses_shards(plan, run, m):
        shards = _Shards(store, plan, run, fm, params, batch, timer, stages, key_seed)
        with stages("features"):
            shards.ensure()

    def stream(rows, desc, local=False):
        if shards is not None:
            return shards.train.stream(rows, batch, n=run.n_train)
        return feature_batches(fm, params, x_train, rows, batch, timer, desc and f"{name} {desc}", local=local)

    def test_batches():
        if shards is not None:
            return shards.test.stream(None, batch, n=run.n_test)
        return feature_batches(fm, params, x_test, None, batch, timer, f"{name} test features")

    if solver is not None:
        t0, computed_before = time.perf_counter(), timer.features
        with stages("fit (Gram statistics, lambda selection, solve)", rows=run.n_train):
            fit = fitting.fit_features(stream, y_train, m, solver, metric, config["seed"],
                                       groups=_split_groups(ds, run.n_train))
        record["note"] = "; ".join(filter(None, [record["note"], fit.note])) or None
        with stages("evaluation", rows=run.n_test):
            pairs = [(fit.predict(phi), y_test[s:s + len(phi)]) for s, phi in test_batches()]
            scores = fitting.score_batches(pairs)
        exact = references.exact_predictions(run.data, run.n_train, run.n_test)
        if exact is not None:  # |f_Phi - f_K| / |f_K| against exact kernel ridge on the same rows
            record["prediction_agreement"] = metrics.prediction_agreement(np.concatenate([p for p, _ in pairs]), exact)
        total = time.perf_counter() - t0
        streamed = timer.features - computed_before  # features computed inside the fit (no shards)
        record.update(feature_seconds=timer.features, solve_seconds=total - streamed, solver_path=fit.path,
                      val_score=fit.val_score, **{"lambda": fit.lam}, **fitting.metrics(scores, ds.task, k, ds.y_std))
        _record_compile(record, timer)
        record["solve_compile_seconds"] = fit.compile_seconds  # its JAX compilation (report.steady_seconds)
    if data.reference_rows and spec["method"] not in _NO_NTK_REFERENCE:
        k_ref = references.get(run.data)
        eval_timer = Timer()
        with stages("kernel error", rows=data.reference_rows):
            if shards is not None:
                phi = np.concatenate([p for _, p in shards.train.stream(None, batch, n=data.reference_rows)])
            else:
                phi = all_features(fm, params, ds.x_train[: data.reference_rows], None, batch, eval_timer)
            g = metrics.gram(phi)
            record["kernel_rel_fro"] = metrics.relative_frobenius(g, k_ref)
        if record["lambda"] is not None:  # the lambda chosen on all training rows, used as is on these rows
            record["statistical_dimension"] = metrics.statistical_dimension(k_ref, record["lambda"])
            try:
                record["spectral_eps"] = metrics.spectral_error(g, k_ref, record["lambda"])
            except ValueError:  # lambda = 0 with a singular reference kernel: undefined
                pass
        if solver is None:
            record["feature_seconds"] = eval_timer.features
            _record_compile(record, eval_timer)
    if shards is not None:
        record["shards"] = shards.summary()
    record["stage_seconds"] = stages.seconds
    record["peak_rss_gb"] = _peak_rss_gb()
    return record


def _record_compile(record: dict, timer: Timer) -> None:
    """compile_seconds: the first feature batch's time beyond the mean of the others (every batch of
    a run has one shape, so only the first compiles); 0, said in the note, with a single batch."""
    seconds = timer.compile_seconds()
    if seconds is None:
        seconds = 0.0
        record["note"] = "; ".join(filter(None, [record["note"], "compile_seconds 0: one feature batch, "
                                                 "compilation not separable from computation"]))
    record["compile_seconds"] = seconds


# --------------------------------------------------------------------------- shards and long-run feedback


def _peak_rss_gb() -> float:
    """This process's peak resident memory so far, GB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 3)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


class _Status:
    """Where a run stands: stage log lines (rows/s, ETA) on stderr, and meta['progress'] in
    results.json, saved at most every SAVE_EVERY seconds while a stage is under way."""

    SAVE_EVERY = 15.0
    ECHO_EVERY = 10.0  # seconds between two progress lines of one stage

    def __init__(self, meta: dict | None, save, echo: bool = False):
        self.meta, self.save, self.echo, self.last_save, self.last_echo = meta, save, echo, 0.0, 0.0

    def report(self, where: str, stage: str, done: int | None = None, total: int | None = None,
               seconds: float | None = None, final: bool = False) -> None:
        line = f"[{where}] {stage}"
        progress = {"run": where, "stage": stage, "updated": _now()}
        if done is not None and total:
            rate = done / seconds if seconds else None
            eta = (total - done) / rate if rate else None
            progress.update(rows_done=done, rows_total=total, rows_per_s=rate, eta_s=eta)
            line += f": {done:,}/{total:,} rows ({100 * done / total:.0f}%)"
            if rate:
                line += f", {rate:,.1f} rows/s"
                line += f", {'took ' + _duration(seconds) if done >= total else 'ETA ' + _duration(eta)}"
        elif seconds is not None:
            line += f": {seconds:.1f} s"
        if self.echo and (final or done is None or time.monotonic() - self.last_echo >= self.ECHO_EVERY):
            self.last_echo = time.monotonic()
            print(line, file=sys.stderr, flush=True)
        if self.meta is not None:
            self.meta["progress"] = progress
            if final or time.monotonic() - self.last_save >= self.SAVE_EVERY:
                self.last_save = time.monotonic()
                self.save()

    def stages(self, where: str) -> "_Stages":
        return _Stages(self, where)


class _Stages:
    """`with stages(name, rows=n):` times a stage of one run (seconds in `.seconds`) and reports it."""

    LOG_SECONDS = 5.0

    def __init__(self, status: _Status, where: str):
        self.status, self.where, self.seconds = status, where, {}

    @contextlib.contextmanager
    def __call__(self, stage: str, rows: int | None = None):
        t0 = time.perf_counter()
        if self.status.meta is not None:
            self.status.meta["progress"] = {"run": self.where, "stage": stage, "updated": _now()}
        yield
        elapsed = time.perf_counter() - t0
        name = stage.split(" (")[0]  # "fit (Gram statistics, ...)" is recorded as "fit"
        self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 3)
        if elapsed >= self.LOG_SECONDS:  # short stages of small runs stay quiet
            if rows:
                self.status.report(self.where, stage, rows, rows, elapsed)
            else:
                self.status.report(self.where, stage, seconds=elapsed)

    def progress(self, stage: str, done: int, total: int, seconds: float) -> None:
        self.status.report(self.where, stage, done, total, seconds, final=done >= total)


def _planned_shard_bytes(plan: Plan, finished: dict) -> int:
    """An upper estimate of the shard bytes of the runs still to do: per feature map (method entry
    less labels and row counts, dim, repeat), its most training rows plus its most test rows, at
    dim features per row, rounded up to whole shards."""
    config, sizes = plan.config, {}
    for run in plan.runs:
        spec = config["methods"][run.method]
        if run.dim is None or spec["method"] == "exact":
            continue
        if _run_id(plan.data[run.data].label, spec["label"], run.dim, run.repeat) in finished:
            continue
        if not _uses_shards(plan, run, run.dim):
            continue
        key = _feature_map_id(plan, run)
        rows = shard_rows(config, run.dim)
        whole = lambda n: -(-(n or 0) // rows) * rows  # noqa: E731
        train, test = sizes.get(key, (0, 0))
        sizes[key] = (max(train, whole(run.n_train)), max(test, whole(run.n_test)))
    return sum((train + test) * key[2] * 4 for key, (train, test) in sizes.items())


def _bytes_in(root: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.npz")) if root.exists() else 0


def _feature_spec(spec: dict) -> dict:
    """A method entry less what does not change its features: label, row counts, repeats, batch size."""
    return {k: v for k, v in spec.items() if k not in ("label", "n_train", "n_test", "repeats", "batch_size")}


def _feature_map_id(plan: Plan, run: Run) -> tuple:
    """What makes two runs' features the same rows of one map (and one set of shards): data,
    `_feature_spec` of the method entry, dim and repeat."""
    return (run.data, repr(_feature_spec(plan.config["methods"][run.method])), run.dim, run.repeat)


def _uses_shards(plan: Plan, run: Run, m: int) -> bool:
    """store.shards; under 'auto', shards when the largest run of this feature map (most training
    plus test rows) reaches SHARDS_AUTO_BYTES, so that every run of one map (an accuracy-against-rows
    series) reads the same shards rather than small runs recomputing their rows."""
    option = plan.config["store"]["shards"]
    if option == "auto":
        same = _feature_map_id(plan, run)
        rows = max(r.n_train + (r.n_test or 0) for r in plan.runs if r.dim is not None and _feature_map_id(plan, r) == same)
        return rows * m * 4 >= SHARDS_AUTO_BYTES
    return bool(option)


def shard_rows(config: dict, m: int) -> int:
    """Rows per shard: store.rows, else about 64 MiB of float32 features (256 to 16384 rows)."""
    rows = config["store"]["rows"]
    return rows if rows is not None else int(min(16384, max(256, (64 << 20) // (4 * m))))


class _Shards:
    """The training and test feature shards of one run (`ntkfeat.store`), keyed by everything that
    determines the features: method entry (less labels and row counts), dim, key, architecture,
    flips and the feature map's parameters themselves; the blocks' input rows enter each name."""

    def __init__(self, store_root, plan: Plan, run: Run, fm, params, batch: int, timer: Timer, stages, key_seed):
        config, ds = plan.config, plan.data[run.data].ds
        spec = _feature_spec(config["methods"][run.method])
        m = fm.out_dim(params)
        key = fingerprint("features", spec, run.dim, key_seed, config["architecture"], ds.info.get("flip"), params)
        store = ShardStore(store_root / key[:16], shard_rows(config, m))
        self.store, self.run, self.stages = store, run, stages

        rows = min(batch, store.rows)  # a shard's rows in full batches (a short last one is padded)

        def compute(xb):
            return np.concatenate([np.asarray(phi) for _, phi in feature_batches(fm, params, xb, None, rows, timer)])

        self.train = store.matrix(key, ds.x_train, compute, m, "train", self._progress)
        self.test = store.matrix(key, ds.x_test, compute, m, "test", self._progress)

    def _progress(self, role: str, done: int, total: int, seconds: float) -> None:
        self.stages.progress(f"{role} features", done, total, seconds)

    def ensure(self) -> None:
        """Every missing shard of the run's training and test rows (each matrix checks the disk first;
        the whole plan was checked before the first run)."""
        self.train.ensure(self.run.n_train)
        if self.run.n_test:
            self.test.ensure(self.run.n_test)

    def summary(self) -> dict:
        log = self.store.log
        return {"folder": self.store.folder.name, "rows_per_shard": self.store.rows, "computed": log.computed,
                "loaded": log.loaded, "recovered": log.recovered, "bytes_written": log.bytes_written}


# --------------------------------------------------------------------------- outputs and the loop


RESULTS = "results.json"
_RESERVE = ".disk-reserve"  # deleted to make room for the final results.json when the disk fills up
_RESERVE_BYTES = 1 << 20


def _claim(path: pathlib.Path) -> None:
    """Creates path/results.json exclusively (O_EXCL): of two runs given one folder, one wins."""
    try:
        fd = os.open(path / RESULTS, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        raise OutputExistsError(f"--out {path} is taken by another run (it has a {RESULTS}); choose a new folder, "
                                f"or continue that run with --resume {path}") from None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"status": "starting", "started": _now(), "records": []}) + "\n")
    try:  # room for the last results.json if the disk fills up mid-run (best effort)
        with open(path / _RESERVE, "wb") as f:
            f.write(b"\0" * _RESERVE_BYTES)
    except OSError:
        (path / _RESERVE).unlink(missing_ok=True)


def make_output_dir(out, name: str) -> pathlib.Path:
    """--out (refused if it holds files), else a new runs/<name>-<timestamp>[-i]; the folder is
    created with its results.json (status 'starting') at once and atomically."""
    if out is not None:
        path = pathlib.Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            hint = f", or continue it with --resume {path}" if (path / RESULTS).exists() else ""
            raise OutputExistsError(f"--out {path} already exists and is not an empty folder; earlier results are "
                                    f"never overwritten: choose a new folder{hint}")
        path.mkdir(parents=True, exist_ok=True)
        _claim(path)
        return path
    base = pathlib.Path("runs") / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    path, i = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            _claim(path)
            return path
        except (FileExistsError, OutputExistsError):
            i += 1
            path = base.with_name(f"{base.name}-{i}")


class ResumeError(ValueError):
    """--resume names a folder that is no run of this config."""


def load_previous(path) -> dict:
    """The results.json of the run folder `path`, to resume it."""
    path = pathlib.Path(path)
    try:
        previous = json.loads((path / RESULTS).read_text())
    except FileNotFoundError:
        raise ResumeError(f"--resume {path}: no {RESULTS} there; is it a run folder?") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ResumeError(f"--resume {path}: {RESULTS} is unreadable ({type(e).__name__}: {e})") from None
    if previous.get("status") == "starting" or "config" not in previous:
        previous["records"], previous["config"] = [], None  # ended before its first save: nothing to keep
    return previous


_ABSENT = object()


def _config_differences(before, now, path: str = "") -> list:
    """Paths where the resolved config `now` differs from a run's `before`. A key that `before`
    lacks (a setting added by a later release, at its default) is no difference."""
    if isinstance(before, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(before) | set(now)):
            if key not in before:
                continue
            out += _config_differences(before[key], now.get(key, _ABSENT), f"{path}.{key}" if path else key)
        return out
    if isinstance(before, list) and isinstance(now, list) and len(before) == len(now):
        return [d for i, (x, y) in enumerate(zip(before, now)) for d in _config_differences(x, y, f"{path}[{i}]")]
    return [] if before == now else [path or "(config)"]


def _run_id(dataset, label, dim, repeat) -> tuple:
    return (dataset, label, dim, repeat)


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version(), "ntkfeat": nf.__version__}
    for package in ("jax", "jaxlib", "neural-tangents", "numpy", "scipy", "optax"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def _git() -> dict | None:
    if _REPO is None:  # installed, not run from a clone: no commit to record
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=_REPO, capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _dataset_info(data: Data, references: References, d: int) -> dict:
    ds = data.ds
    info = ds.info
    return {
        "label": data.label, "name": ds.name, "task": ds.task, "num_classes": ds.num_classes,
        "x_train_shape": ds.x_train.shape, "x_test_shape": ds.x_test.shape, "y_mean": ds.y_mean, "y_std": ds.y_std,
        "source": info.get("source"), "split_rule": info.get("split_rule"),
        "n_train_available": info.get("n_train_available"), "n_test_available": info.get("n_test_available"),
        "preprocessing": info.get("preprocessing"), "kernel_error_rows": data.reference_rows,
        "reference_kernel_seconds": references.seconds.get(d),
    }


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class Terminated(KeyboardInterrupt):
    """SIGTERM during `execute`: ends the run like Ctrl-C (status 'interrupted', finished runs kept)."""


class _SigtermInterrupts:
    """While active, SIGTERM raises Terminated in the main thread, once; after `disarm()` (when the
    results are being saved and plotted) it is ignored. The previous handler is restored on exit.
    Elsewhere than the main thread, where Python cannot install handlers, nothing changes.

    Python runs a signal handler wherever the main thread is, and an exception raised inside a
    garbage-collection callback (jax registers one) or a destructor is printed and dropped. So the
    signal is also remembered, and `check()`, called between runs, raises it again if it got lost."""

    def __init__(self):
        self.armed, self.installed, self.previous, self.received = False, False, None, None

    def _handler(self, signum, frame):
        if self.armed:
            self.armed = False
            self.received = signum
            raise Terminated(f"SIGTERM (signal {signum})")

    def check(self) -> None:
        """Raises Terminated if a SIGTERM arrived and its exception did not end the run."""
        if self.received is not None:
            signum, self.received = self.received, None
            raise Terminated(f"SIGTERM (signal {signum})")

    def disarm(self) -> None:
        self.armed = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handler)
            self.armed = self.installed = True
        return self

    def __exit__(self, *exc):
        self.armed = False
        if self.installed:  # None: the previous handler was not set from Python
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self.previous is None else self.previous)
            self.installed = False
        return False


def execute(plan: Plan, out: pathlib.Path | None, progress: bool = True, command: str | None = None,
            previous: dict | None = None, keep_shards: bool | None = None) -> list:
    """Runs every planned run, writing results after each; returns the records.

    Ctrl-C or SIGTERM ends it with status 'interrupted' (raising KeyboardInterrupt, or its subclass
    Terminated), an error with status 'failed'; either way what finished is kept and plotted.
    `out` None (processes other than 0 of a multi-process run) does the same work and collectives
    but writes and shows nothing. `previous` (a results.json, `load_previous`) resumes a run: its
    records are kept and their runs skipped, and feature shards already in out/shards are read
    instead of recomputed. `keep_shards` overrides store.keep.
    """
    with _SigtermInterrupts() as sigterm:
        return _execute(plan, out, progress, command, sigterm, previous, keep_shards)


def _store_root(plan: Plan, out: pathlib.Path | None) -> pathlib.Path | None:
    if plan.config["store"]["shards"] is False or out is None:
        return None
    if distributed.process_count() > 1:
        if plan.config["store"]["shards"] is True:
            raise ValueError("store.shards: true needs a single-process run (several processes stream their "
                             "shares of the rows without shards); set store.shards: false or auto")
        return None
    return out / "shards"


def _execute(plan: Plan, out: pathlib.Path | None, progress: bool, command: str | None,
             sigterm: _SigtermInterrupts, previous: dict | None = None, keep_shards: bool | None = None) -> list:
    from tqdm.auto import tqdm

    config = plan.config
    device = jax.devices()[0]
    meta = {
        "name": config["name"], "status": "running", "started": _now(), "finished": None, "error": None,
        "config_file": plan.config_path, "overrides": plan.overrides, "command": command,
        "versions": _versions(),
        "device": {"platform": device.platform, "kind": device.device_kind, "count": jax.device_count(),
                   "local_count": jax.local_device_count(), "process_count": distributed.process_count(),
                   "process_index": distributed.process_index(),
                   "cpu_batches_at_once": batching.concurrent_batches()},
        "git": _git(), "config": config, "progress": None,
    }
    finished = {}
    if previous is not None:
        resolved = report.jsonable(config)
        if previous.get("config") is not None:
            differences = _config_differences(previous["config"], resolved)
            if differences:
                raise ResumeError(f"--resume: this config differs from the run's at {', '.join(differences[:8])}"
                                  f"{' ...' if len(differences) > 8 else ''}; resume with the run's own config.yaml "
                                  "(and no --set), or start a new run")
        meta["started"] = previous.get("started") or meta["started"]
        meta["resumed"] = list(previous.get("resumed") or []) + [_now()]
        for r in previous.get("records") or []:
            finished[_run_id(r.get("dataset"), r.get("label"), r.get("dim"), r.get("repeat"))] = r
    references, records = References(plan), []
    store_root = _store_root(plan, out)
    if store_root is not None:  # every run's shards, before the first: not hours into the run
        check_disk(out, _planned_shard_bytes(plan, finished) - _bytes_in(store_root), "this run's feature shards")

    def save():
        if out is None:
            return
        meta["datasets"] = [_dataset_info(data, references, d) for d, data in enumerate(plan.data)]
        try:
            report.write_json(out / RESULTS, dict(meta, records=records))
            report.write_csv(out / "results.csv", records)
        except OSError as e:
            if e.errno != errno.ENOSPC or not (out / _RESERVE).exists():
                raise
            (out / _RESERVE).unlink()  # disk full: free the reserve so that this (final) state is written
            report.write_json(out / RESULTS, dict(meta, records=records))
            report.write_csv(out / "results.csv", records)

    status = _Status(meta if out is not None else None, save, echo=out is not None)
    if out is not None:
        header = (f"# Resolved config of run {config['name']} ({meta['started']}), every default filled in.\n"
                  f"# Rerun: python -m experiments.run {out / 'config.yaml'}\n"
                  f"# Resume after an interruption: python -m experiments.run --resume {out}\n")
        report.write_yaml(out / "config.yaml", config, header)

    # a bar on terminals and in Jupyter, none in logs
    bar = progress_bar(total=len(plan.runs), desc="runs", unit="run", enabled=None if progress else False, leave=True)
    try:
        save()
        for run in plan.runs:
            sigterm.check()
            spec = config["methods"][run.method]
            done = finished.get(_run_id(plan.data[run.data].label, spec["label"], run.dim, run.repeat))
            if done is not None:  # finished before the interruption: kept as it was
                records.append(done)
                bar.update()
                continue
            bar.set_postfix_str(f"{plan.data[run.data].label} {spec['label']} {run.dim or ''} #{run.repeat}")
            if run.note and run.repeat == 0 and out is not None:
                tqdm.write(f"note: {plan.data[run.data].label} {spec['label']}: {run.note}")
            records.append(execute_run(plan, run, references, store_root, status))
            meta["progress"] = None
            save()
            bar.update()
        sigterm.check()
        meta["status"] = "finished"
    except BaseException as e:
        meta["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        meta["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        sigterm.disarm()  # a SIGTERM now must not cut the final save short
        bar.close()
        meta["finished"] = _now()
        if store_root is not None and store_root.exists():
            meta["shards"] = _finish_shards(store_root, config, keep_shards, meta["status"])
        save()
        if config["plots"] and out is not None:
            labels = [data.label for data in plan.data]
            tasks = {data.label: data.ds.task for data in plan.data}
            try:
                report.plot_run(records, labels, tasks, out)
            except Exception as e:  # a plot must not hide the results or the original error
                print(f"warning: plots failed: {type(e).__name__}: {e}", file=sys.stderr)
        if out is not None:
            (out / _RESERVE).unlink(missing_ok=True)
    return records


def _finish_shards(root: pathlib.Path, config: dict, keep: bool | None, status: str) -> dict:
    """Keeps the shards (and says how much disk they hold) or, after a finished run with
    store.keep false / --no-keep-shards, deletes them. An unfinished run keeps them to resume."""
    keep = config["store"]["keep"] if keep is None else keep
    size = sum(p.stat().st_size for p in root.rglob("*.npz"))
    if keep or status != "finished":
        print(f"feature shards: {size / 2**30:.2f} GiB in {root} (kept{' to resume' if status != 'finished' else ''}; "
              "store.keep: false or --no-keep-shards deletes them when a run finishes)", file=sys.stderr)
        return {"kept": True, "bytes": size}
    shutil.rmtree(root, ignore_errors=True)
    print(f"feature shards: {size / 2**30:.2f} GiB deleted from {root}", file=sys.stderr)
    return {"kept": False, "bytes": size}


def _describe(plan: Plan) -> str:
    lines = [f"{plan.config['name']}: {len(plan.runs)} runs"]
    for data in plan.data:
        ds = data.ds
        lines.append(f"  {data.label}: {ds.task}, x_train {ds.x_train.shape}, x_test {ds.x_test.shape}, "
                     f"kernel-error rows {data.reference_rows}")
    for i, m in enumerate(plan.config["methods"]):
        count = sum(r.method == i for r in plan.runs)
        lines.append(f"  {m['label']} ({m['method']}): dims {m.get('dims', '-')}, {count} runs")
    return "\n".join(lines)


def _exit_now(code: int) -> None:
    """Ends a process of a multi-process run at once, skipping JAX's shutdown barrier: the other
    processes, which would wait for this one in their next collective (forever, or in that
    barrier), then fail too (at once, or after the coordination service's heartbeat timeout)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _mark_interrupted(out: pathlib.Path, error: BaseException) -> None:
    """A run stopped between claiming its folder and its first save says so in results.json."""
    try:
        if json.loads((out / RESULTS).read_text()).get("status") == "starting":
            report.write_json(out / RESULTS, {"status": "interrupted" if isinstance(error, KeyboardInterrupt)
                                              else "failed", "error": f"{type(error).__name__}: {error}",
                                              "finished": _now(), "records": []})
    except (OSError, ValueError):
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ntkfeat run", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", help="YAML config (see configs/); with --resume DIR, default "
                        "DIR/config.yaml")
    parser.add_argument("--out", help="output folder (default runs/<name>-<YYYYmmdd-HHMMSS>); must not hold files")
    parser.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR: its finished records "
                        "are kept, its feature shards read instead of recomputed (same config, same results)")
    parser.add_argument("--keep-shards", action=argparse.BooleanOptionalAction, default=None,
                        help="keep the feature shards when the run finishes (default: store.keep, true)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a config key, value in YAML: --set data.n_train=500 --set 'methods[1].dims=[512]'")
    parser.add_argument("--check", action="store_true", help="validate the config and data, print the plan, stop")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    group = parser.add_argument_group("several processes (one per host; the same command on each, process 0 writes)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help=f"process 0's address, which it serves (default ${distributed.ENV_COORDINATOR})")
    group.add_argument("--num-processes", type=int, metavar="P",
                       help=f"number of processes (default ${distributed.ENV_NUM_PROCESSES}, else 1: nothing to join)")
    group.add_argument("--process-id", type=int, metavar="I",
                       help=f"this process's index, 0 to P-1 (default ${distributed.ENV_PROCESS_ID})")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.resume is not None and args.out is not None and pathlib.Path(args.out) != pathlib.Path(args.resume):
        parser.error("--resume DIR continues the run in DIR; --out names another folder (give one of them)")
    if args.config is None:
        if args.resume is None:
            parser.error("the config file is required (or --resume DIR)")
        args.config = str(pathlib.Path(args.resume) / "config.yaml")
    try:  # before any JAX computation
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    first = distributed.process_index() == 0  # the one process that prints and writes
    try:
        plan = prepare(args.config, args.overrides)
    except (ConfigError, FileNotFoundError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if first:
        print(_describe(plan))
    if args.check:
        return 0
    with _SigtermInterrupts() as sigterm:  # from before the folder exists: a SIGTERM is always recorded
        return _main_run(args, argv, plan, first, sigterm)


def _main_run(args, argv, plan: Plan, first: bool, sigterm: _SigtermInterrupts) -> int:
    out, error, previous = None, None, None
    try:
        if first:
            try:
                if args.resume is not None:
                    previous = load_previous(args.resume)
                    out = pathlib.Path(args.resume)
                else:
                    out = make_output_dir(args.out, plan.config["name"])
            except (OutputExistsError, ResumeError) as e:
                error = e
        if not distributed.broadcast(np.int32(error is None)):  # the other processes stop with process 0
            if error is not None:
                print(f"error: {error}", file=sys.stderr)
            return 2
        where = f"finished runs are in {out}" if first else f"process {distributed.process_index()}"
        if first:
            print(f"{'resuming' if previous is not None else 'writing to'} {out}"
                  + (f" ({len(previous['records'])} finished runs kept)" if previous is not None else ""))
        t0 = time.perf_counter()
        command = shlex.join(["ntkfeat", "run", *argv])
        records = _execute(plan, out, not args.quiet, command, sigterm, previous, args.keep_shards)
    except ResumeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if out is not None:
            _mark_interrupted(out, e)
        print(f"error: run failed ({type(e).__name__}: {e}); {where}", file=sys.stderr)
        if distributed.process_count() > 1:
            traceback.print_exc()
            _exit_now(1)
        raise
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (Terminated)
        if out is not None:
            _mark_interrupted(out, e)
        print(f"\ninterrupted ({type(e).__name__}: {e}); {out and f'finished runs are in {out}; resume with --resume {out}'}",
              file=sys.stderr)
        code = 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
        if distributed.process_count() > 1:
            _exit_now(code)
        return code
    if not first:
        return 0
    print()
    print(report.format_table(records))
    print(f"\n{len(records)} runs in {time.perf_counter() - t0:.1f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

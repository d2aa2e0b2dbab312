"""The experiment runner: one YAML file in, one results folder out.

    python -m experiments.run configs/quickstart.yaml [--out DIR] [--set PATH=VALUE ...] [--check]

For every dataset, method, dimension and repeat it builds features of the training and test rows
(streamed in batches), fits ridge regression with the regularization chosen on the training rows,
scores the test rows, and measures how well Phi Phi^T approximates the exact NTK on a few training
rows. `exact` is kernel ridge on neural-tangents' kernel. The config schema is in
`experiments/config.py` and the README; `--set` overrides any key (value parsed as YAML), e.g.
`--set data.n_train=null --set 'methods[1].dims=[16384]'`.

Everything is checked before any work: the config, the data files (loaded once), the architecture
against each dataset's input shape, method sizes against row counts. Only then is the output
folder created (default `runs/<name>-<YYYYmmdd-HHMMSS>`; an existing non-empty --out is refused),
holding results.json (records and metadata), results.csv, config.yaml (the resolved config, which
reruns the experiment), kernel_error_vs_dim.png and metric_vs_time.png. Results are rewritten
atomically after every run, so a crash (status 'failed'), Ctrl-C or SIGTERM (status 'interrupted')
keeps what finished. `python -m experiments.replot` redraws the plots of a run folder,
`python -m experiments.compare` tabulates and plots several.

Devices and hosts: each batch of rows is sharded over every local device. With --num-processes P
(and --coordinator, --process-id, or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)
the same command runs as P processes, one per host, which split the rows (`ntkfeat.distributed`):
Gram statistics are summed over processes, in-memory features and exact kernel rows are
all-gathered, every process solves the same problem, and process 0 alone writes and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback

import jax
import numpy as np

import ntkfeat as nf
from experiments import fitting, report
from experiments.config import ConfigError, build_layers, load_config
from experiments.methods import Network, Timer, all_features, block, exact_kernel, feature_batches, feature_method
from ntkfeat import baselines, batching, distributed, metrics, solvers
from ntkfeat.batching import progress as progress_bar
from ntkfeat.data import flip_averaged, flip_averaged_kernel, load_dataset

_REPO = pathlib.Path(__file__).resolve().parents[1]
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
                            zca=spec.get("zca"), flip=spec.get("flip"), patches=spec.get("patches"))
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
    """Validates the config, loads the data and checks every run; writes nothing."""
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


def execute_run(plan: Plan, run: Run, references: References) -> dict:
    config, data = plan.config, plan.data[run.data]
    spec, ds, solver = config["methods"][run.method], data.ds, config["solver"]
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
    t0 = time.perf_counter()
    params = block(fm.init(jax.random.PRNGKey(config["seed"] + run.repeat), x_train))
    record["init_seconds"] = time.perf_counter() - t0
    record["out_dim"] = m = fm.out_dim(params)
    batch = max(1, min(spec["batch_size"] or fm.default_batch_size(params), run.n_train))
    timer = Timer()
    name = f"{spec['label']} {run.dim}"

    def stream(rows, desc, local=False):
        return feature_batches(fm, params, x_train, rows, batch, timer, desc and f"{name} {desc}", local=local)

    if solver is not None:
        t0 = time.perf_counter()
        fit = fitting.fit_features(stream, y_train, m, solver, metric, config["seed"],
                                   groups=_split_groups(ds, run.n_train))
        record["note"] = "; ".join(filter(None, [record["note"], fit.note])) or None
        test = feature_batches(fm, params, x_test, None, batch, timer, f"{name} test features")
        pairs = [(fit.predict(phi), y_test[s:s + len(phi)]) for s, phi in test]
        scores = fitting.score_batches(pairs)
        exact = references.exact_predictions(run.data, run.n_train, run.n_test)
        if exact is not None:  # |f_Phi - f_K| / |f_K| against exact kernel ridge on the same rows
            record["prediction_agreement"] = metrics.prediction_agreement(np.concatenate([p for p, _ in pairs]), exact)
        total = time.perf_counter() - t0
        record.update(feature_seconds=timer.features, solve_seconds=total - timer.features, solver_path=fit.path,
                      val_score=fit.val_score, **{"lambda": fit.lam}, **fitting.metrics(scores, ds.task, k, ds.y_std))
        _record_compile(record, timer)
        record["solve_compile_seconds"] = fit.compile_seconds  # its JAX compilation (report.steady_seconds)
    if data.reference_rows and spec["method"] not in _NO_NTK_REFERENCE:
        k_ref = references.get(run.data)
        eval_timer = Timer()
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


# --------------------------------------------------------------------------- outputs and the loop


def make_output_dir(out, name: str) -> pathlib.Path:
    """--out (refused if it holds files), else a new runs/<name>-<timestamp>[-i]."""
    if out is not None:
        path = pathlib.Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise OutputExistsError(f"--out {path} already exists and is not an empty folder; earlier results are "
                                    "never overwritten: choose a new folder")
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = pathlib.Path("runs") / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    path, i = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            i += 1
            path = base.with_name(f"{base.name}-{i}")


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


def execute(plan: Plan, out: pathlib.Path | None, progress: bool = True, command: str | None = None) -> list:
    """Runs every planned run, writing results after each; returns the records.

    Ctrl-C or SIGTERM ends it with status 'interrupted' (raising KeyboardInterrupt, or its subclass
    Terminated), an error with status 'failed'; either way what finished is kept and plotted.
    `out` None (processes other than 0 of a multi-process run) does the same work and collectives
    but writes and shows nothing.
    """
    with _SigtermInterrupts() as sigterm:
        return _execute(plan, out, progress, command, sigterm)


def _execute(plan: Plan, out: pathlib.Path | None, progress: bool, command: str | None,
             sigterm: _SigtermInterrupts) -> list:
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
        "git": _git(), "config": config,
    }
    references, records = References(plan), []
    if out is not None:
        header = (f"# Resolved config of run {config['name']} ({meta['started']}), every default filled in.\n"
                  f"# Rerun: python -m experiments.run {out / 'config.yaml'}\n")
        report.write_yaml(out / "config.yaml", config, header)

    def save():
        if out is None:
            return
        meta["datasets"] = [_dataset_info(data, references, d) for d, data in enumerate(plan.data)]
        report.write_json(out / "results.json", dict(meta, records=records))
        report.write_csv(out / "results.csv", records)

    save()
    # a bar on terminals and in Jupyter, none in logs
    bar = progress_bar(total=len(plan.runs), desc="runs", unit="run", enabled=None if progress else False, leave=True)
    try:
        for run in plan.runs:
            sigterm.check()
            spec = config["methods"][run.method]
            bar.set_postfix_str(f"{plan.data[run.data].label} {spec['label']} {run.dim or ''} #{run.repeat}")
            if run.note and run.repeat == 0 and out is not None:
                tqdm.write(f"note: {plan.data[run.data].label} {spec['label']}: {run.note}")
            records.append(execute_run(plan, run, references))
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
        save()
        if config["plots"] and out is not None:
            labels = [data.label for data in plan.data]
            tasks = {data.label: data.ds.task for data in plan.data}
            try:
                report.plot_run(records, labels, tasks, out)
            except Exception as e:  # a plot must not hide the results or the original error
                print(f"warning: plots failed: {type(e).__name__}: {e}", file=sys.stderr)
    return records


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="YAML config (see configs/)")
    parser.add_argument("--out", help="output folder (default runs/<name>-<YYYYmmdd-HHMMSS>); must not hold files")
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
    out, error = None, None
    if first:
        try:
            out = make_output_dir(args.out, plan.config["name"])
        except OutputExistsError as e:
            error = e
    if not distributed.broadcast(np.int32(error is None)):  # the other processes stop with process 0
        if error is not None:
            print(f"error: {error}", file=sys.stderr)
        return 2
    where = f"finished runs are in {out}" if first else f"process {distributed.process_index()}"
    if first:
        print(f"writing to {out}")
    t0 = time.perf_counter()
    try:
        records = execute(plan, out, progress=not args.quiet, command=shlex.join(["python", "-m", "experiments.run", *argv]))
    except Exception as e:
        print(f"error: run failed ({type(e).__name__}: {e}); {where}", file=sys.stderr)
        if distributed.process_count() > 1:
            traceback.print_exc()
            _exit_now(1)
        raise
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (Terminated)
        print(f"\ninterrupted ({type(e).__name__}: {e}); {where}", file=sys.stderr)
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

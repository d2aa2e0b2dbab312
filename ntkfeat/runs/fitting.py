"""Ridge on streamed features and exact kernel ridge, with the regularization chosen on training rows.

Which closed form a run uses (recorded as `solver_path`):

- 'dual': the training features fit in memory (at most IN_MEMORY_BYTES) and are fewer rows than
  columns (fewer than the hold-out's fitting part for holdout), or the selection is k-fold or
  LOO (which need the rows): `select_lambda` + `fit_ridge` on the in-memory features (n x n
  algebra when n < m, m x m otherwise).
- 'gram': otherwise (holdout or gcv): float64 Gram statistics accumulated batch by batch
  (`gram_from_batches`), `select_lambda_gram`, then `fit_ridge_gram`. Holdout keeps the train and
  validation parts' statistics apart and refits on their sum; GCV needs one state of all rows.
  Only the m x m statistics (and, for holdout with accuracy, the validation features) are held.
- 'iterative' (solver.iterative): `fit_ridge_iterative` (optax) over streamed batches, for each
  lambda on the hold-out train part, then on all rows with the best one.
- 'kernel': exact kernel ridge (`select_lambda_kernel`, `kernel_ridge_fit`).

Several processes (`ntkfeat.distributed`): the 'gram' path has each process stream only its share
of the rows and sums the statistics over processes (`_gram`); the other paths get the full
feature batches on every process from the stream. Either way every process then runs the same
selection and solve on the same numbers.

One selection rule for the exact kernel and every feature method: solver.selection (with the same
val_fraction, folds and seed) goes unchanged to `select_lambda_kernel`, `select_lambda` and
`select_lambda_gram`. GCV and LOO rank lambdas by the (one-hot) regression MSE, also for classes.

The default lambda grid is `default_lambdas(trace(Z^T Z), n)` over all training rows for every
feature path: the mean eigenvalue of Z Z^T, the features' stand-in for the kernel, so that the
grid is the one exact kernel ridge uses (`default_lambdas(trace(K), n)`) up to the diagonal's
approximation error; the paths differ only in how they search it.
"""

from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkfeat import distributed, solvers

IN_MEMORY_BYTES = 1 << 30  # largest (n, m) float32 training feature matrix held for the 'dual' path


class Fit(NamedTuple):
    lam: float
    val_score: float | None  # the chosen lambda's validation mse or accuracy
    path: str
    predict: Callable  # features (b, m) -> predictions (b, k), NumPy float64
    note: str | None = None  # set when the selected lambda could not be refitted (see `_refit`)
    compile_seconds: float | None = None  # JAX compilation in the selection and solve (`compile_clock`)


class KernelFit(NamedTuple):
    lam: float
    val_score: float
    alpha: np.ndarray  # (n, k) dual coefficients
    note: str | None = None


class TestScores(NamedTuple):
    sse: float  # sum over rows and outputs of squared errors
    correct: int  # rows whose argmax prediction is the argmax target
    rows: int


def targets(y: np.ndarray, task: str, num_classes: int | None) -> np.ndarray:
    """(n, k) float32 regression targets: y as a column, or one-hot minus 1/k for classes."""
    if task == "classification":
        return solvers.one_hot_targets(np.asarray(y), num_classes)
    return np.asarray(y, np.float32).reshape(-1, 1)


def choose_path(n: int, m: int, solver: dict) -> str:
    if solver["iterative"]:
        return "iterative"
    fits = n * m * 4 <= IN_MEMORY_BYTES
    selection = solver["selection"]
    if selection in ("kfold", "loo"):
        if not fits:
            raise ValueError(f"{'k-fold' if selection == 'kfold' else 'LOO'} selection keeps the ({n}, {m}) training "
                             f"features in memory ({n * m * 4 / 2**30:.1f} GiB > {IN_MEMORY_BYTES / 2**30:.0f} GiB); "
                             "use solver.selection: holdout (or gcv), which stream them")
        return "dual"
    if selection == "gcv":
        return "dual" if fits and n < m else "gram"
    n_part = n - min(max(int(round(solver["val_fraction"] * n)), 1), n - 1)
    return "dual" if fits and n_part < m else "gram"


def _linear(weights: np.ndarray) -> Callable:
    model = solvers.RidgeModel(weights, 0.0)
    return lambda z: solvers.predict(model, np.asarray(z))


def _lambdas(solver: dict, trace: float, n: int) -> np.ndarray:
    """The grid: the config's lambdas, or `default_lambdas(trace, n)` (trace of Z^T Z over n rows)."""
    if solver["lambdas"] is not None:
        return np.asarray(solver["lambdas"], np.float64)
    return solvers.default_lambdas(trace, n)


def _refit(selection: solvers.LambdaSelection, fit: Callable, rule: str):
    """(lam, score, fit(lam), note) at the selected lambda or, when the solve there is refused as
    numerically singular, at the best-scored lambda whose solve succeeds (ties: the larger).

    A float32-accurate kernel is off by ~1e-7 relative, and more near correlation 1 (duplicated
    rows): its smallest eigenvalues can be negative, e.g. -5e-3 for the exact NTK of 2,000
    protein rows with a max diagonal of 150, and then K + lam I has no Cholesky factor for lam
    below that. The eigendecomposition-based selection clips such eigenvalues at 0 and may prefer
    such a lambda (gcv and loo favour the smallest lambdas on duplicated rows); the note says so.
    """
    lambdas, scores = np.asarray(selection.lambdas), np.asarray(selection.scores)
    sign = -1.0 if selection.metric == "accuracy" else 1.0
    order = sorted(range(len(lambdas)), key=lambda i: (sign * scores[i], -lambdas[i]))
    skipped = []
    for i in order:
        lam = float(lambdas[i])
        try:
            result = fit(lam)
        except ValueError as e:
            if "not numerically positive definite" not in str(e):
                raise
            skipped.append(lam)
            continue
        note = None
        if skipped:
            note = (f"{rule} chose lambda {skipped[0]:.3g}, where the refit is numerically singular (the matrix's "
                    f"roundoff exceeds lambda); refit at the best solvable lambda {lam:.3g}")
        return lam, float(scores[i]), result, note
    raise ValueError(f"the refit is numerically singular at every lambda of the grid ({lambdas.min():.3g} to "
                     f"{lambdas.max():.3g}); give larger solver.lambdas")


# ---------------------------------------------------------------------------- compilation apart

# jax.monitoring's events for the three stages of making a program: tracing, lowering, XLA compile.
_COMPILE_EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration",
                             "/jax/core/compile/jaxpr_to_mlir_module_duration",
                             "/jax/core/compile/backend_compile_duration"})
_clocks = []  # the compile clocks running now
_listening = False  # one listener for the process, registered on first use


class CompileClock:
    """Seconds JAX reported spending on compilation while the clock ran and was not paused."""

    def __init__(self):
        self.spans = []  # (start, end) wall times of the compile stages seen
        self.paused = False

    @property
    def seconds(self) -> float:
        # The union of the spans: a jitted function traced inside another's trace reports its own
        # span within the outer one, which a plain sum would count twice.
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self.spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total


def _on_span(event: str, start_time: float, end_time: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        for clock in _clocks:
            if not clock.paused:
                clock.spans.append((start_time, end_time))


@contextlib.contextmanager
def compile_clock():
    """`with compile_clock() as clock:` ... `clock.seconds`: JAX's compilation time in the block.

    Why: a solve at small sizes is mostly the compilation of its float64 programs (measured 6.4
    of 9.2 s cold for a 256-feature GCV solve on a 2-core CPU), which steady-state timings leave out.
    """
    global _listening
    if not _listening:
        jax.monitoring.register_event_time_span_listener(_on_span)
        _listening = True
    clock = CompileClock()
    _clocks.append(clock)
    try:
        yield clock
    finally:
        _clocks.remove(clock)


def _paused_while_streaming(stream: Callable, clock: CompileClock) -> Callable:
    """The stream, with `clock` paused while it computes a batch: the feature map's compilation
    is the feature timer's to estimate (its first batch), not the solver's."""

    def paused(*args, **kwargs):
        batches = iter(stream(*args, **kwargs))
        while True:
            clock.paused = True
            try:
                item = next(batches)
            except StopIteration:
                return
            finally:
                clock.paused = False
            yield item

    return paused


def fit_features(stream: Callable, y: np.ndarray, m: int, solver: dict, metric: str, seed: int,
                 groups: np.ndarray | None = None) -> Fit:
    """Ridge on features of the training rows; `Fit.compile_seconds`: JAX's compilation time in
    the selection and solve (the stream's batches not counted). Arguments: `_fit_features`."""
    with compile_clock() as clock:
        fit = _fit_features(_paused_while_streaming(stream, clock), y, m, solver, metric, seed, groups)
    return fit._replace(compile_seconds=clock.seconds)


def _fit_features(stream: Callable, y: np.ndarray, m: int, solver: dict, metric: str, seed: int,
                  groups: np.ndarray | None = None) -> Fit:
    """Ridge on features of the training rows.

    Args:
      stream: stream(rows, desc, local=False) -> iterator of (start, phi) over the training rows
        `rows` (an index array into the training set, or None for all rows), phi (b, m): on every
        process the features of all those rows, or with `local` computed by this process alone
        (rows being its share; see `experiments.methods.feature_batches`).
      y: (n, k) targets of the training rows.
      m: number of features.
      solver: the resolved `solver` section.
      metric: 'mse' or 'accuracy' (selection score).
      seed: seeds the validation split.
      groups: (n,) labels of rows kept on one side of the validation split (a flip-augmented
        image and its mirror), or None.
    """
    n, k = y.shape
    path = choose_path(n, m, solver)
    if path == "dual":
        z = jnp.concatenate([phi for _, phi in stream(None, "train features")])
        lambdas = _lambdas(solver, float(jnp.sum(jnp.square(z.astype(jnp.float32)))), n)
        sel = solvers.select_lambda(z, y, lambdas, method=solver["selection"], val_fraction=solver["val_fraction"],
                                    folds=solver["folds"], seed=seed, metric=metric, groups=groups)
        lam, score, model, note = _refit(sel, lambda lam: solvers.fit_ridge(z, y, lam), solver["selection"])
        return Fit(lam, score, path, _linear(model.weights), note)

    if solver["selection"] == "gcv":  # one state of all rows; GCV needs no hold-out part
        state = _gram(stream, y, np.arange(n), m, "train features")
        lambdas = _lambdas(solver, float(np.trace(state.ztz)), n)
        sel = solvers.select_lambda_gram(state, None, lambdas, metric=metric, method="gcv")
        lam, score, model, note = _refit(sel, lambda lam: solvers.fit_ridge_gram(state, lam), "gcv")
        return Fit(lam, score, path, _linear(model.weights), note)

    (train, val), = solvers.validation_splits(n, "holdout", val_fraction=solver["val_fraction"], seed=seed,
                                              groups=groups)
    if path == "iterative":
        return _fit_iterative(stream, y, m, solver, metric, seed, train, val)

    def pairs(rows, desc):
        return ((phi, y[rows[s:s + len(phi)]]) for s, phi in stream(rows, desc))

    train_state = _gram(stream, y, train, m, "train features")
    if metric == "accuracy":  # scored from predictions: keep the validation features (all of them, every process)
        val_batches = list(pairs(val, "validation features"))
        val_state = solvers.gram_from_batches(val_batches)
    else:
        val_batches, val_state = None, _gram(stream, y, val, m, "validation features")
    lambdas = _lambdas(solver, float(np.trace(train_state.ztz) + np.trace(val_state.ztz)), n)
    sel = solvers.select_lambda_gram(train_state, val_batches or val_state, lambdas, metric=metric)
    state = solvers.gram_merge(train_state, val_state)
    lam, score, model, note = _refit(sel, lambda lam: solvers.fit_ridge_gram(state, lam), "holdout")
    return Fit(lam, score, path, _linear(model.weights), note)


def _gram(stream: Callable, y: np.ndarray, rows: np.ndarray, m: int, desc: str) -> solvers.GramState:
    """Gram statistics of the training rows `rows`: each process streams its share of them
    (`distributed.split_rows`) and the states are summed over processes, so that every process
    holds the same totals. With one process: `gram_from_batches` over all of them."""
    mine = rows[distributed.split_rows(len(rows))]
    if len(mine) == 0:  # more processes than rows
        state = solvers.gram_init(m, y.shape[1])
    else:
        state = solvers.gram_from_batches((phi, y[mine[s:s + len(phi)]]) for s, phi in stream(mine, desc, local=True))
    return distributed.allreduce_sum(state)


def _fit_iterative(stream, y, m, solver, metric, seed, train, val) -> Fit:
    n, k = y.shape
    order = np.random.default_rng(seed).permutation(n)  # optax steps follow batches: mix the rows

    def batches_fn(rows):
        return lambda: ((phi, y[rows[s:s + len(phi)]]) for s, phi in stream(rows, None))

    def fit(rows, lam):
        return solvers.fit_ridge_iterative(batches_fn(rows), m, k, lam, n=len(rows), steps=solver["steps"],
                                           learning_rate=solver["learning_rate"]).model.weights

    lambdas = solver["lambdas"]
    score = None
    if len(lambdas) > 1:
        train, scores = order[np.isin(order, train)], []
        for lam in lambdas:
            predict = _linear(fit(train, lam))
            result = score_batches(((predict(phi), y[val[s:s + len(phi)]]) for s, phi in stream(val, None)))
            scores.append(result.correct / result.rows if metric == "accuracy" else result.sse / (result.rows * k))
        scores = np.asarray(scores)
        best = scores.max() if metric == "accuracy" else scores.min()
        lam = float(max(l for l, s in zip(lambdas, scores) if s == best))  # ties: the larger lambda
        score = float(best)
    else:
        lam = float(lambdas[0])
    return Fit(lam, score, "iterative", _linear(fit(order, lam)))


def fit_kernel(k_train: np.ndarray, y: np.ndarray, solver: dict, metric: str, seed: int,
               groups: np.ndarray | None = None) -> KernelFit:
    """Exact kernel ridge: KernelFit(lambda, validation score, alpha (n, k), note), lambda by the
    same rule (solver.selection, the same groups) as `fit_features`."""
    sel = solvers.select_lambda_kernel(k_train, y, solver["lambdas"], method=solver["selection"],
                                       val_fraction=solver["val_fraction"], folds=solver["folds"], seed=seed,
                                       metric=metric, groups=groups)
    return KernelFit(*_refit(sel, lambda lam: solvers.kernel_ridge_fit(k_train, y, lam), solver["selection"]))


def score_batches(pairs) -> TestScores:
    """Squared errors and argmax hits over (predictions (b, k), targets (b, k)) pairs."""
    sse, correct, rows = 0.0, 0, 0
    for pred, target in pairs:
        pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
        sse += float(np.sum((pred - target) ** 2))
        if target.shape[1] > 1:
            correct += int(np.sum(np.argmax(pred, 1) == np.argmax(target, 1)))
        rows += len(target)
    return TestScores(sse, correct, rows)


def metrics(scores: TestScores, task: str, k: int, y_std: float) -> dict:
    """test_mse (standardized targets; one-hot for classes), test_rmse in original units, test_accuracy."""
    if scores.rows == 0:
        return {"test_rmse": None, "test_accuracy": None, "test_mse": None}
    mse = scores.sse / (scores.rows * k)
    if task == "classification":
        return {"test_rmse": None, "test_accuracy": scores.correct / scores.rows, "test_mse": mse}
    return {"test_rmse": float(np.sqrt(mse) * y_std), "test_accuracy": None, "test_mse": mse}

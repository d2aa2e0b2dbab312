"""The finite-width NTK during training: how far a trained network is from the kernel regime.

A finite network f(theta, x) of width m, trained by gradient descent on the mean squared error

    L(theta) = (1 / 2n) sum_j (f(theta, x_j) - y_j)^2,

has the empirical NTK Theta_t(x, x') = <grad_theta f_t(x), grad_theta f_t(x')>, which moves during
training. Under gradient flow d theta / dt = -grad L (gradient descent with learning rate eta is
its Euler step: one step advances the time t by eta),

    d f_t(x) / dt      = -(1/n) sum_j Theta_t(x, x_j) (f_t(x_j) - y_j),
    d Theta_t(x, x') / dt = -(1/n) sum_j K3_t(x, x', x_j) (f_t(x_j) - y_j),
    K3(x1, x2, x3)     = <grad_theta Theta(x1, x2), grad_theta f(x3)>,

the third-order kernel of the neural tangent hierarchy (Huang and Yau, "Dynamics of Deep Neural
Networks and Neural Tangent Hierarchy", ICML 2020). In the NTK parameterization the relative change
||Theta_t - Theta_0||_F / ||Theta_0||_F shrinks with the width (about m^-1/2 at a fixed training
time), and as m -> oo the network's predictions tend to those of gradient descent on the
infinite-width kernel (ntkfeat's `kernel_fn(x1, x2, 'ntk')` of the same layers).

This module trains the finite network of an ntkfeat layer list (optax), records the empirical NTK
(neural-tangents' `empirical_ntk_fn`) on a fixed probe set, predicts its first change by a
Jacobian-vector product, and gives the infinite-width kernel's predictions to compare with:

    net = finite_width_network(layers, width=1024)
    run = train(key, net, x_train, y_train, steps=500, learning_rate=1.0, record_steps=[0, 10, 100, 500],
                x_probe=x_train[:64], x_test=x_test)
    run.ntk_change                    # (4,) relative Frobenius change at the recorded steps
    k_tt, k_st = kernel_fn(x_train, x_train, 'ntk'), kernel_fn(x_test, x_train, 'ntk')
    kernel_gd_predictions(k_tt, k_st, y_train, learning_rate=1.0, steps=500)   # the m -> oo limit

Centering (`center=True`, the default): the trained model is g(theta, x) = f(theta, x) - f(theta_0, x),
which has the same NTK and K3 (f(theta_0, .) does not depend on theta) but starts at g = 0. Without
it the network's output at initialization is a Gaussian process sample of O(1) variance at every
width, and the network would not approach the kernel's (zero-initialized) predictions as m grows.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkfeat import compat
from ntkfeat.baselines.gradient import finite_layers
from ntkfeat.layers.combinators import Serial
from ntkfeat.network import finite_network


class FiniteNetwork(NamedTuple):
    """The finite network of an architecture at one width, and its empirical NTK.

    init_fn(key, input_shape) -> (output_shape, params) and apply_fn(params, x) -> (n, 1) are
    neural-tangents' (NTK parameterization); ntk_fn(x1, x2, params) -> (n1, n2) is
    `nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0)` (x2 None: x1).
    """

    layers: Serial  # the architecture with every unset hidden width set to `width`
    width: int
    init_fn: Callable
    apply_fn: Callable
    ntk_fn: Callable


class Training(NamedTuple):
    """What `train` records. r = len(steps), p = probe rows, t = test rows."""

    steps: np.ndarray  # (r,) the recorded steps, 0 first, the last step last
    ntk_change: np.ndarray  # (r,) ||Theta_s - Theta_0||_F / ||Theta_0||_F on the probe set
    train_loss: np.ndarray  # (r,) L(theta_s) on the whole training set
    ntk_init: np.ndarray  # (p, p) Theta_0 on the probe set
    ntk_final: np.ndarray  # (p, p) Theta at the last step
    test_predictions: np.ndarray | None  # (t,) the trained model on x_test (None without x_test)
    params_init: Any  # theta_0 (neural-tangents' pytree)
    params: Any  # theta at the last step


class StepCheck(NamedTuple):
    """The third-order kernel's prediction of the NTK's change against the measured change."""

    predicted: np.ndarray  # (p, p) steps * eta * dTheta/dt at theta_0
    measured: np.ndarray  # (p, p) Theta after `steps` gradient-descent steps, minus Theta_0
    relative_error: float  # ||predicted - measured||_F / ||measured||_F
    relative_change: float  # ||measured||_F / ||Theta_0||_F


def finite_width_network(layers: Sequence | Serial, width: int, *, implementation: int | None = None
                         ) -> FiniteNetwork:
    """The finite network of `layers` with every unset hidden width set to `width`.

    Args:
      layers: ntkfeat layers (nf.Dense, nf.Relu, ...) ending in a scalar readout, as for
        `nf.serial`; widths already set (Dense.out_dim, Conv.out_chan) are kept.
      width: hidden width m.
      implementation: neural-tangents' `NtkImplementation` for the empirical NTK (None: its
        default, the Jacobian contraction).

    Returns:
      FiniteNetwork(layers, width, init_fn, apply_fn, ntk_fn).
    """
    top = finite_layers(layers, width)
    nt = compat.neural_tangents()
    init_fn, apply_fn = finite_network(top)
    kwargs = {} if implementation is None else {"implementation": implementation}
    ntk_fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0, **kwargs)
    return FiniteNetwork(top, int(width), init_fn, apply_fn, ntk_fn)


def init_params(key: jax.Array, net: FiniteNetwork, input_shape: Sequence[int]):
    """theta_0 for inputs of shape (n, *input_shape[1:]) (neural-tangents' initialization)."""
    out_shape, params = net.init_fn(key, (-1,) + tuple(int(s) for s in input_shape[1:]))
    if tuple(out_shape[1:]) != (1,):
        raise ValueError(f"the network's output per input has shape {tuple(out_shape[1:])}; end the layers with a "
                         "scalar readout, e.g. [..., Dense(W_std=1.0)]")
    return params


def _column(y) -> jax.Array:
    y = jnp.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != 1:
        raise ValueError(f"y must have shape (n,) or (n, 1) (one regression target), got {tuple(y.shape)}")
    return y


def mse_loss(apply_fn: Callable, params, x, y) -> jax.Array:
    """L(theta) = (1 / 2n) sum_j (f(theta, x_j) - y_j)^2, the loss whose gradient flow the formulas use.

    The centered model trains on shifted targets: (f - f(theta_0, .) - y)^2 = (f - (y + f(theta_0, .)))^2.
    """
    return 0.5 * jnp.mean((apply_fn(params, x) - _column(y)) ** 2)


@functools.lru_cache(maxsize=32)
def _sgd(learning_rate: float) -> optax.GradientTransformation:
    # One object per learning rate, so that the jitted loop (static in the optimizer) compiles once
    # per width and serves every seed.
    return optax.sgd(learning_rate)


@functools.partial(jax.jit, static_argnames=("apply_fn", "opt", "batch_size"))
def _run_steps(params, opt_state, start, stop, x, y, key, *, apply_fn, opt, batch_size):
    """Optimizer steps start, ..., stop - 1; the step count is a traced loop bound (one compilation)."""
    n = x.shape[0]

    def one_step(i, carry):
        params, opt_state = carry
        if batch_size is None:
            xb, yb = x, y
        else:
            rows = jax.random.choice(jax.random.fold_in(key, i), n, (batch_size,), replace=False)
            xb, yb = x[rows], y[rows]
        grads = jax.grad(mse_loss, argnums=1)(apply_fn, params, xb, yb)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.lax.fori_loop(start, stop, one_step, (params, opt_state))


@functools.partial(jax.jit, static_argnames="ntk_fn")
def _probe_ntk(params, x, *, ntk_fn):
    return ntk_fn(x, None, params)


_loss = jax.jit(mse_loss, static_argnums=0)
_grad = jax.jit(jax.grad(mse_loss, argnums=1), static_argnums=0)
_apply = jax.jit(lambda apply_fn, params, x: apply_fn(params, x), static_argnums=0)


def _relative_change(theta, theta0) -> jax.Array:
    return jnp.linalg.norm(theta - theta0) / jnp.linalg.norm(theta0)


def train(key: jax.Array, net: FiniteNetwork, x_train, y_train, *, steps: int, learning_rate: float = 1.0,
          record_steps: Sequence[int] | None = None, x_probe=None, x_test=None, batch_size: int | None = None,
          optimizer: optax.GradientTransformation | None = None, center: bool = True) -> Training:
    """Trains the finite network on the MSE and records its empirical NTK on a probe set.

    Full-batch gradient descent (batch_size None) follows theta <- theta - eta grad L with
    L = (1/2n) sum_j (f(x_j) - y_j)^2; with batch_size b each step uses b training rows drawn
    without replacement (from `key`, a fresh draw per step), i.e. SGD on the same loss.

    Args:
      key: PRNG key: theta_0 from its first half, the SGD batches from its second.
      net: `finite_width_network(layers, width)`.
      x_train: (n, ...) inputs; y_train: (n,) or (n, 1) targets.
      steps: number of optimizer steps.
      learning_rate: eta of the default optimizer `optax.sgd(eta)`.
      record_steps: steps at which the NTK is recorded (0 and `steps` are always added).
      x_probe: (p, ...) rows on which the NTK is recorded (default: the first 64 training rows).
      x_test: (t, ...) rows whose final predictions are returned.
      batch_size: None for full-batch gradient descent, else the SGD batch size.
      optimizer: any optax transformation, instead of `optax.sgd(learning_rate)`.
      center: train f(theta, .) - f(theta_0, .) (see the module docstring).

    Returns:
      Training(steps, ntk_change, train_loss, ntk_init, ntk_final, test_predictions, params_init,
      params), NumPy arrays; train_loss and test_predictions are those of the centered model if
      `center`.
    """
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    x_train, y_train = jnp.asarray(x_train), _column(y_train)
    n = x_train.shape[0]
    if y_train.shape[0] != n:
        raise ValueError(f"x_train has {n} rows but y_train has {y_train.shape[0]}")
    if batch_size is not None:
        if not 1 <= int(batch_size) <= n:
            raise ValueError(f"batch_size must be in [1, {n}] (the training rows) or None, got {batch_size}")
        batch_size = int(batch_size)
    record = sorted({0, steps} | {int(s) for s in (record_steps or ()) if 0 <= int(s) <= steps})
    x_probe = x_train[:64] if x_probe is None else jnp.asarray(x_probe)
    k_init, k_batch = jax.random.split(key)
    params0 = init_params(k_init, net, x_train.shape)
    targets = y_train + _apply(net.apply_fn, params0, x_train) if center else y_train
    opt = _sgd(float(learning_rate)) if optimizer is None else optimizer

    theta0 = _probe_ntk(params0, x_probe, ntk_fn=net.ntk_fn)
    params, opt_state = params0, opt.init(params0)
    changes, losses, theta, done = [], [], theta0, 0
    for s in record:
        if s > done:
            params, opt_state = _run_steps(params, opt_state, done, s, x_train, targets, k_batch,
                                           apply_fn=net.apply_fn, opt=opt, batch_size=batch_size)
            theta, done = _probe_ntk(params, x_probe, ntk_fn=net.ntk_fn), s
        changes.append(float(_relative_change(theta, theta0)))
        losses.append(float(_loss(net.apply_fn, params, x_train, targets)))
    preds = None
    if x_test is not None:
        x_test = jnp.asarray(x_test)
        preds = _apply(net.apply_fn, params, x_test)
        if center:
            preds = preds - _apply(net.apply_fn, params0, x_test)
        preds = np.asarray(preds)[:, 0]
    return Training(np.asarray(record), np.asarray(changes), np.asarray(losses), np.asarray(theta0),
                    np.asarray(theta), preds, params0, params)


def ntk_velocity(net: FiniteNetwork, params, x_train, y_train, x_probe, *, offset=None) -> jax.Array:
    """dTheta/dt on the probe set under gradient flow on the MSE, at parameters theta.

        dTheta(x, x')/dt = -(1/n) sum_j K3(x, x', x_j) (f(x_j) - offset_j - y_j)
                         = d/ds Theta(x, x'; theta - s grad L(theta)) at s = 0,

    a Jacobian-vector product (forward over reverse mode) of theta -> Theta(x_probe, x_probe; theta)
    along -grad L. In time units of the flow: one gradient-descent step of learning rate eta
    changes Theta by eta * dTheta/dt + O(eta^2).

    With a piecewise-linear activation (Relu) the JVP is the derivative between kinks: a step
    that moves a pre-activation across 0 adds a change the JVP does not see, so the agreement
    holds only for steps small enough that no unit changes sign on the probe rows. Smooth
    activations (Gelu, Erf) have no such limit.

    Args:
      net: `finite_width_network(...)`; params: theta.
      x_train: (n, ...); y_train: (n,) or (n, 1).
      x_probe: (p, ...).
      offset: (n,) or (n, 1) f(theta_0, x_train) for the centered model of `train`, else None.
        It changes the residuals, not K3.

    Returns:
      (p, p) dTheta/dt.
    """
    targets = _column(y_train) if offset is None else _column(y_train) + _column(offset)
    return _velocity(params, jnp.asarray(x_train), targets, jnp.asarray(x_probe), apply_fn=net.apply_fn,
                     ntk_fn=net.ntk_fn)


@functools.partial(jax.jit, static_argnames=("apply_fn", "ntk_fn"))
def _velocity(params, x, targets, x_probe, *, apply_fn, ntk_fn):
    tangent = jax.tree_util.tree_map(jnp.negative, _grad(apply_fn, params, x, targets))
    return jax.jvp(lambda p: ntk_fn(x_probe, None, p), (params,), (tangent,))[1]


def third_order_kernel(net: FiniteNetwork, params, x1, x3, x2=None) -> jax.Array:
    """K3(x1, x2, x3) = <grad_theta Theta(x1, x2), grad_theta f(x3)>, (n1, n2, n3).

    One JVP of theta -> Theta(x1, x2; theta) per row of x3, along that row's output gradient.
    Cost: n3 JVPs of the empirical NTK; for small probe sets.
    """
    x2 = None if x2 is None else jnp.asarray(x2)
    return _third_order(params, jnp.asarray(x1), x2, jnp.asarray(x3), apply_fn=net.apply_fn, ntk_fn=net.ntk_fn)


@functools.partial(jax.jit, static_argnames=("apply_fn", "ntk_fn"))
def _third_order(params, x1, x2, x3, *, apply_fn, ntk_fn):
    def along(x):
        g = jax.grad(lambda p: apply_fn(p, x[None])[0, 0])(params)
        return jax.jvp(lambda p: ntk_fn(x1, x2, p), (params,), (g,))[1]

    return jnp.moveaxis(jax.lax.map(along, x3), 0, -1)


def check_first_steps(net: FiniteNetwork, params, x_train, y_train, x_probe, *, learning_rate: float,
                      steps: int = 1, center: bool = True) -> StepCheck:
    """The third-order prediction of the NTK's change over the first `steps` gradient-descent steps.

    predicted = steps * eta * dTheta/dt(theta_0) (`ntk_velocity`); measured = Theta(theta_k) -
    Theta(theta_0) after k = steps full-batch steps theta <- theta - eta grad L from theta_0 =
    params (the centered model if `center`, as in `train`). Their difference is second order in
    steps * eta for a smooth activation, so relative_error falls linearly with eta.
    """
    x_train, x_probe, y_train = jnp.asarray(x_train), jnp.asarray(x_probe), _column(y_train)
    offset = _apply(net.apply_fn, params, x_train) if center else None
    targets = y_train if offset is None else y_train + offset
    velocity = ntk_velocity(net, params, x_train, y_train, x_probe, offset=offset)
    p = params
    for _ in range(int(steps)):
        p = jax.tree_util.tree_map(lambda a, g: a - learning_rate * g, p, _grad(net.apply_fn, p, x_train, targets))
    theta0 = _probe_ntk(params, x_probe, ntk_fn=net.ntk_fn)
    measured = _probe_ntk(p, x_probe, ntk_fn=net.ntk_fn) - theta0
    predicted = steps * learning_rate * velocity
    error = float(jnp.linalg.norm(predicted - measured) / jnp.linalg.norm(measured))
    change = float(jnp.linalg.norm(measured) / jnp.linalg.norm(theta0))
    return StepCheck(np.asarray(predicted), np.asarray(measured), error, change)


def kernel_gd_predictions(k_train, k_test_train, y_train, *, learning_rate: float, steps: int) -> np.ndarray:
    """Predictions of `steps` full-batch gradient-descent steps on the kernel model, from zero.

    The linear model with kernel K, started at f = 0 and trained like `train` (eta, the loss
    (1/2n) sum (f - y)^2), has after k steps

        f_k(x) = K(x, X) K^{-1} (I - (I - eta K / n)^k) y,

    computed from the eigendecomposition K = U diag(s) U^T in float64 (the factor
    (1 - (1 - eta s / n)^k) / s tends to k eta / n as s -> 0, so a singular K is fine). With K
    the infinite-width NTK this is the width -> oo limit of the centered network's predictions.

    Args:
      k_train: (n, n) K(X, X); k_test_train: (t, n) K(x_test, X); y_train: (n,) or (n, 1).
      learning_rate, steps: eta and k.

    Returns:
      (t,) float64 predictions.
    """
    k = np.asarray(k_train, np.float64)
    n = k.shape[0]
    s, u = np.linalg.eigh((k + k.T) / 2)
    s = np.maximum(s, 0.0)
    a = learning_rate * s / n
    if np.any(a >= 2):
        raise ValueError(f"learning_rate {learning_rate} diverges on this kernel: eta * max eig / n = {a.max():.3g} "
                         ">= 2")
    # 1 - (1 - a)^k = -expm1(k log1p(-a)), accurate for small a.
    factor = np.where(s > 1e-12 * max(s.max(), 1e-300),
                      -np.expm1(steps * np.log1p(-a)) / np.where(s > 0, s, 1.0), steps * learning_rate / n)
    y = np.asarray(y_train, np.float64).reshape(n)
    alpha = u @ (factor * (u.T @ y))
    return np.asarray(k_test_train, np.float64) @ alpha


def relative_gap(predictions, reference) -> float:
    """||predictions - reference||_2 / ||reference||_2 (one number per test set)."""
    p, r = np.asarray(predictions, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    return float(np.linalg.norm(p - r) / np.linalg.norm(r))


def fit_power_law(widths, values) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line log(values) = slope log(widths) + intercept."""
    slope, intercept = np.polyfit(np.log(np.asarray(widths, np.float64)), np.log(np.asarray(values, np.float64)), 1)
    return float(slope), float(intercept)


__all__ = ["FiniteNetwork", "StepCheck", "Training", "check_first_steps", "finite_width_network", "fit_power_law",
           "init_params", "kernel_gd_predictions", "mse_loss", "ntk_velocity", "relative_gap",
           "third_order_kernel", "train"]

"""Ridge regression by first-order optimization over streamed batches, for when the m x m Gram
does not fit in memory (m of tens of thousands and up).

Minimizes the ridge objective scaled by 1/n (same minimizer as ||Z W - Y||^2 + lam ||W||^2):

    F(W) = (1/n) ||Z W - Y||_F^2 + (lam/n) ||W||_F^2,

with one optimizer step per batch Z_b (b rows) on the gradient of

    F_b(W) = (||Z_b W - Y_b||_F^2 + b (lam/n) ||W||_F^2) / B,

B the rows of the first batch. Over one pass the F_b add up to (n/B) F exactly, whatever the batch
sizes, so a short last batch does not shift the minimizer (as (1/b) ||Z_b W - Y_b||^2 per batch
would: it weights that batch's rows more); for equal batches F_b is the usual minibatch loss.

Default optimizer: Adam with a cosine-decayed step size. Each pass over the data recomputes the
features, so a method must make progress batch by batch: Adam steps on stochastic minibatch
gradients, rescales each coordinate by its gradient magnitude (features of very different scales
need no tuning per coordinate), and the decay to 0 removes the minibatch noise at the end.
L-BFGS (`optax.lbfgs()`) converges much faster on this quadratic but needs exact gradients and a
line search, i.e. one full pass per step and more per line search; it is supported
(value_fn = the current batch's objective) and is the better choice when `batches_fn` yields one
batch, i.e. the data fit in memory but the Gram does not.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkfeat.batching import pad_rows
from ntkfeat.solvers import _checks
from ntkfeat.solvers.ridge import RidgeModel

_HIGHEST = jax.lax.Precision.HIGHEST


class IterativeFit(NamedTuple):
    model: RidgeModel  # weights (m, k) as float64 NumPy; (m,) when the batches' targets are vectors (b,)
    losses: np.ndarray  # (steps,) the batch objective F_b before each step


def ridge_objective(weights, z, y, lam):
    """F(W) = (1/n) ||Z W - Y||_F^2 + (lam/n) ||W||_F^2 over the n rows of z (jit-able).

    Args:
      weights: (m, k); z: (n, m); y: (n, k); lam: >= 0.

    Returns:
      scalar, in the dtype of z and weights.
    """
    residual = jnp.dot(z, weights, precision=_HIGHEST) - y
    return (jnp.sum(residual**2) + lam * jnp.sum(weights**2)) / z.shape[0]


def _batch_objective(weights, z, y, rows, width, penalty):
    """F_b: rows beyond `rows` are zero padding (they add 0 to the residual); penalty = lam / n."""
    residual = jnp.dot(z, weights, precision=_HIGHEST) - y
    return (jnp.sum(residual**2) + rows * penalty * jnp.sum(weights**2)) / width


def _make_step(optimizer):
    optimizer = optax.with_extra_args_support(optimizer)

    @jax.jit
    def step(weights, state, z, y, rows, width, penalty):
        def value_fn(w):
            return _batch_objective(w, z, y, rows, width, penalty)

        value, grad = jax.value_and_grad(value_fn)(weights)
        updates, state = optimizer.update(grad, state, weights, value=value, grad=grad, value_fn=value_fn)
        finite = jnp.all(jnp.isfinite(z)) & jnp.all(jnp.isfinite(y))
        return optax.apply_updates(weights, updates), state, value, finite

    return optimizer, step


def _batches_forever(batches_fn):
    """Batches of batches_fn(), restarted at each exhaustion; errors if a pass yields nothing."""
    while True:
        empty = True
        for pair in batches_fn():
            empty = False
            yield pair
        if empty:
            raise ValueError("batches_fn() yielded no batches")


def _as_batch(pair, m: int, k: int, dtype):
    try:
        z, y = pair
    except (TypeError, ValueError):
        raise TypeError(f"batches must be pairs (z_batch, y_batch), got {type(pair).__name__}") from None
    z, y = _checks.as_array(z, "z_batch"), _checks.as_array(y, "y_batch")
    vector = y.ndim == 1
    if vector:
        y = y.reshape(-1, 1)
    if z.ndim != 2 or y.ndim != 2 or z.shape[1] != m or y.shape != (z.shape[0], k) or z.shape[0] == 0:
        raise ValueError(
            f"batch shapes z {tuple(z.shape)}, y {tuple(y.shape)} do not match (b, m={m}) and (b, k={k}) "
            "with b >= 1"
        )
    return jnp.asarray(z, dtype), jnp.asarray(y, dtype), vector


def fit_ridge_iterative(batches_fn: Callable, m: int, k: int, lam: float, *, n: int | None = None,
                        steps: int = 1000, optimizer: optax.GradientTransformation | None = None,
                        learning_rate: float = 1e-2, weights=None, dtype=jnp.float32) -> IterativeFit:
    """Ridge weights by `steps` optimizer steps, one per streamed batch.

    Args:
      batches_fn: () -> a fresh iterator of (z_batch (b, m), y_batch (b, k)); called again when
        exhausted (one pass = one epoch). Batches smaller than the first are zero-padded to its
        size, so the step compiles once. Shuffle rows across batches if they are ordered (e.g.
        by class): each step follows its batch.
      m, k: numbers of features and outputs. With k = 1 the batches' targets may be vectors (b,):
        if the first batch's are, the weights are (m,) (predictions (n,)), else (m, 1).
      lam: ridge regularization >= 0 (same meaning as in `fit_ridge`).
      n: total rows per pass, which scales the penalty to lam / n; None counts them with one
        extra pass of batches_fn().
      steps: optimizer steps (batches), across as many passes as needed.
      optimizer: any optax transformation (extra-args ones such as `optax.lbfgs()` get the batch
        objective as value_fn); default `optax.adam(cosine_decay(learning_rate, steps))`.
      learning_rate: peak step size of the default Adam, in units of the weights.
      weights: (m, k) starting point (default zeros), e.g. a previous solution; (m,) when k = 1.
      dtype: of the iteration (float32: gradients are float32 anyway on accelerators).

    Returns:
      IterativeFit(model, losses).
    """
    m, k, steps = int(m), int(k), int(steps)
    if m < 1 or k < 1 or steps < 1:
        raise ValueError(f"need m >= 1, k >= 1, steps >= 1; got m={m}, k={k}, steps={steps}")
    lam = _checks.regularization(lam)
    if n is None:
        n = sum(np.shape(pair[0])[0] for pair in batches_fn())
    if int(n) < 1:
        raise ValueError(f"n must be >= 1 (rows per pass), got {n}")
    if optimizer is None:
        optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    if weights is None:
        w = jnp.zeros((m, k), dtype)
    else:
        weights = _checks.as_array(weights, "weights")
        if k == 1 and weights.ndim == 1:
            weights = weights.reshape(-1, 1)
        if tuple(weights.shape) != (m, k):
            raise ValueError(f"weights has shape {tuple(weights.shape)}, expected (m, k) = {(m, k)}")
        _checks.finite(weights, "weights")
        w = jnp.asarray(weights, dtype)
    optimizer, step = _make_step(optimizer)
    state = optimizer.init(w)
    penalty = jnp.asarray(lam / int(n), dtype)
    losses, ok, width, vector = [], jnp.asarray(True), None, None
    batches = _batches_forever(batches_fn)
    for _ in range(steps):
        z, y, batch_vector = _as_batch(next(batches), m, k, dtype)
        vector = batch_vector if vector is None else vector
        rows = z.shape[0]
        width = width or rows
        if rows < width:
            z, y = pad_rows(z, width, zeros=True), pad_rows(y, width, zeros=True)
        sizes = jnp.asarray(rows, dtype), jnp.asarray(width, dtype)
        w, state, value, finite = step(w, state, z, y, *sizes, penalty)
        losses.append(value)
        ok = ok & finite
    if not bool(ok):
        raise ValueError("a batch of z or y had NaN or inf values; clean or drop those rows")
    if not bool(jnp.all(jnp.isfinite(w))):
        raise ValueError("the iteration diverged (non-finite weights); lower the learning rate")
    weights = np.asarray(w, np.float64)
    model = RidgeModel(weights[:, 0] if vector else weights, lam)
    return IterativeFit(model, np.asarray(jnp.stack(losses), np.float64))

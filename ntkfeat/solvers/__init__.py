"""Ridge regression and classification on explicit features Z (n, m) with outputs Y (n, k).

    y = one_hot_targets(labels, 10)                        # classification as regression
    sel = select_lambda(z, y, metric='accuracy')           # one eigendecomposition per fold
    model = fit_ridge(z, y, sel.lam)                       # primal or dual, float64 Cholesky
    accuracy(predict(model, z_test), labels_test)
    sel = select_lambda(z, y_reg, method='gcv')            # or 'loo', 'kfold': one eigendecomposition

    # any n: statistics accumulated over streamed batches
    state = gram_from_batches((f, y[s:s + len(f)]) for s, f in nf.iterate_features(params, x))
    sel = select_lambda_gram(state, method='gcv')          # no hold-out part needed
    model = fit_ridge_gram(state, sel.lam)

    # exact kernel ridge, the reference at moderate n
    alpha = kernel_ridge_fit(k_train, y, lam); kernel_ridge_predict(k_test_train, alpha)

    # the m x m Gram does not fit: optax over streamed batches
    fit = fit_ridge_iterative(batches_fn, m, k, lam, steps=5000)

Precision: Gram statistics, factorizations and closed-form solutions are float64 whatever the
feature dtype, computed by JAX on its default device with 64-bit mode enabled only for those
calls (`jax.enable_x64` as a context), and returned as NumPy float64 (states, weights, alphas).
`predict`, `kernel_ridge_predict`, `one_hot_targets`, `accuracy` and `ridge_objective` are plain
array functions: NumPy in gives NumPy float64 out, JAX in (also under jit) gives JAX out.

Shapes: outputs keep the target's shape. A vector target y (n,) gives weights (m,), alpha (n,)
and predictions (n,) (`fit_ridge`, `fit_ridge_gram` on statistics of vector batches,
`kernel_ridge_fit`, `fit_ridge_iterative`); Y (n, k) gives (m, k), (n, k) and (n, k).
"""

from ntkfeat.solvers.iterative import IterativeFit, fit_ridge_iterative, ridge_objective
from ntkfeat.solvers.kernel_ridge import kernel_ridge_fit, kernel_ridge_predict
from ntkfeat.solvers.ridge import (
    GramState,
    RidgeModel,
    fit_ridge,
    fit_ridge_gram,
    gram_from_batches,
    gram_init,
    gram_merge,
    gram_update,
    predict,
    ridge_dual,
    ridge_primal,
)
from ntkfeat.solvers.selection import (
    LambdaSelection,
    default_lambdas,
    select_lambda,
    select_lambda_gram,
    select_lambda_kernel,
    validation_splits,
)
from ntkfeat.solvers.targets import accuracy, one_hot_targets

__all__ = [
    "IterativeFit", "fit_ridge_iterative", "ridge_objective",
    "kernel_ridge_fit", "kernel_ridge_predict",
    "GramState", "RidgeModel", "fit_ridge", "fit_ridge_gram", "gram_from_batches", "gram_init", "gram_merge",
    "gram_update", "predict", "ridge_dual", "ridge_primal",
    "LambdaSelection", "default_lambdas", "select_lambda", "select_lambda_gram", "select_lambda_kernel",
    "validation_splits",
    "accuracy", "one_hot_targets",
]

"""scikit-learn bridge: an NTK feature map as a transformer, for `Pipeline` and `GridSearchCV`.

    import ntkfeat as nf
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.linear_model import RidgeCV

    net = [nf.Dense(512, W_std=2**0.5), nf.Relu(), nf.Dense(1)]
    model = make_pipeline(StandardScaler(), nf.sklearn.NTKFeatures(net, nf.Sketch(dim=1024)), RidgeCV())
    model.fit(x_train, y_train).score(x_test, y_test)

`NTKFeatures` follows scikit-learn's estimator contract: `__init__` only stores its arguments
(so `get_params`, `set_params` and `clone` work, and `GridSearchCV` can search over `dim` or
`method`), `fit(X)` draws the feature map's random parameters for X's row shape from the fixed
`key`, and `transform(X)` returns the features phi(X) as a NumPy array, with
phi(x) . phi(x') ~ K(x, x') (the network's NTK, or its NNGP kernel with get='nngp').
Linear models on phi(X) are then approximate kernel regression with that kernel.

This module imports scikit-learn; `import ntkfeat` does not (`nf.sklearn` is loaded on first
use), so scikit-learn is needed only by code that uses the bridge.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from ntkfeat.batching import check_batch_size, pad_rows
from ntkfeat.layers.base import Layer
from ntkfeat.layers.combinators import serial
from ntkfeat.layers.methods import RandomFeatures, Sketch
from ntkfeat.network import default_batch_size, views

_GETS = ("ntk", "nngp")


class NTKFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Random features (NTK Sketch or NTK random features) of a network's kernel.

    transform(X) = phi(X) (n, m) with phi(X) phi(Y)^T ~ kernel_fn(X, Y, get), the exact kernel
    of `architecture` (neural-tangents' infinite-width NTK or NNGP).

    Args:
      architecture: the network: an ntkfeat layer (`nf.serial(...)`, `nf.Dense(...)`) or a
        list of layers, e.g. `[nf.Dense(512), nf.Relu(), nf.Dense(1)]`.
      method: `nf.Sketch(...)` or `nf.RandomFeatures(...)`; None: `nf.Sketch()`.
      key: the random parameters' seed: an int, or a JAX PRNG key. The same key gives the same
        features at every fit (as `random_state` does for scikit-learn's random projections).
      dim: if given, replaces `method.dim` (the number of features, about): a flat parameter for
        `GridSearchCV(..., {'ntkfeatures__dim': [...]})`.
      get: 'ntk' (default) or 'nngp'.
      input_shape: shape of one input, e.g. (8, 8, 1) for images given as flat rows (as
        scikit-learn passes them); each row of X is reshaped to it. None: X's own row shape.
      batch_size: rows per feature batch (None: the library's default budget).

    Attributes (after fit):
      params_: the feature map's parameters (`nf.FeatureMap`).
      n_features_in_: number of columns of X (2-d X).
      n_features_out_: number of features m.
    """

    def __init__(self, architecture, method=None, key=0, *, dim=None, get="ntk", input_shape=None,
                 batch_size=None):
        # scikit-learn's contract: store the arguments untouched; checks happen in fit.
        self.architecture = architecture
        self.method = method
        self.key = key
        self.dim = dim
        self.get = get
        self.input_shape = input_shape
        self.batch_size = batch_size

    def _layer(self) -> Layer:
        arch = self.architecture
        if isinstance(arch, Layer):
            return arch
        if isinstance(arch, (list, tuple)) and arch and all(isinstance(a, Layer) for a in arch):
            return serial(*arch)
        raise TypeError(
            "NTKFeatures: architecture must be an ntkfeat layer (nf.serial(...)) or a non-empty list of layers, "
            f"got {type(arch).__name__}")

    def _method(self):
        method = Sketch() if self.method is None else self.method
        if not isinstance(method, (Sketch, RandomFeatures)):
            raise TypeError(f"NTKFeatures: method must be nf.Sketch(...) or nf.RandomFeatures(...), got {method!r}")
        if self.dim is not None:
            method = dataclasses.replace(method, dim=self.dim)  # the method's own checks run again
        return method

    def _key(self):
        if isinstance(self.key, (int, np.integer)) and not isinstance(self.key, bool):
            return jax.random.PRNGKey(int(self.key))
        return self.key  # a JAX key; init_fn checks it

    def _rows(self, X, reset: bool):
        X = check_array(X, dtype=(np.float32, np.float64), allow_nd=True)
        if reset:
            if X.ndim == 2:
                self.n_features_in_ = X.shape[1]
            elif hasattr(self, "n_features_in_"):
                del self.n_features_in_
        if self.input_shape is not None:
            shape = tuple(int(s) for s in self.input_shape)
            if int(np.prod(X.shape[1:])) != int(np.prod(shape)):
                raise ValueError(f"NTKFeatures: rows of X have shape {X.shape[1:]}, which cannot be reshaped to "
                                 f"input_shape={shape}")
            X = X.reshape((X.shape[0],) + shape)
        return X

    def fit(self, X, y=None):
        """Draws the feature map's parameters for X's row shape (X's values are not used).

        Args:
          X: (n, d) rows, or (n, ...) with `input_shape` None.
          y: ignored.

        Returns:
          self.
        """
        if self.get not in _GETS:
            raise ValueError(f"NTKFeatures: get must be one of {_GETS}, got {self.get!r}")
        X = self._rows(X, reset=True)
        init_fn, feature_fn, _ = views(self._layer())
        params = init_fn(self._key(), (-1,) + X.shape[1:], self._method())
        # The width from a trace of one row, not a run: a run would compile a program for 1 row.
        row = jax.ShapeDtypeStruct((1,) + X.shape[1:], X.dtype)
        self._n_features_out = int(jax.eval_shape(lambda x: feature_fn(params, x, self.get), row).shape[1])
        self.params_ = params
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Features are float32 whatever the input (JAX's default dtype), float64 in 64-bit mode.
        tags.transformer_tags.preserves_dtype = ["float64"] if jax.config.jax_enable_x64 else ["float32"]
        return tags

    @property
    def n_features_out_(self) -> int:
        check_is_fitted(self, "params_")
        return self._n_features_out

    def transform(self, X):
        """phi(X): (n, m) float32 NumPy features (float64 in JAX's 64-bit mode)."""
        check_is_fitted(self, "params_")
        X = self._rows(X, reset=False)
        if X.ndim == 2 and hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            # scikit-learn's own wording, which its estimator checks look for
            raise ValueError(f"X has {X.shape[1]} features, but NTKFeatures is expecting {self.n_features_in_} "
                             "features as input.")
        _, feature_fn, _ = views(self.params_.layer)
        n = X.shape[0]
        bs = default_batch_size(self.params_) if self.batch_size is None else check_batch_size(self.batch_size)
        # Rows are padded (last row repeated) to a power of two below one batch, to whole batches
        # above: cross-validation folds of 220, 221 and 110 rows then share one compiled program
        # (about 2 s each on a 2-core CPU) instead of compiling one per row count.
        rows = min(1 << max(n - 1, 0).bit_length(), bs) if n <= bs else -(-n // bs) * bs
        z = feature_fn(self.params_, pad_rows(X, rows), self.get, batch_size=bs)
        return np.asarray(z[:n])


__all__ = ["NTKFeatures"]

"""Input validation shared by the solvers: shapes named in every message, NaN/inf caught early.

Arrays keep their kind (NumPy stays NumPy, a JAX array stays on its device); lists become NumPy.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def as_array(x, name: str):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"{name} must be a real array, got dtype {x.dtype}")
    return x


def finite(x, name: str) -> None:
    """Raises if x has NaN or inf, naming the first bad rows."""
    ok = np.isfinite(x) if isinstance(x, np.ndarray) else jnp.isfinite(x)
    if bool(ok.all()):
        return
    bad = np.flatnonzero(~np.asarray(ok).reshape(len(x), -1).all(axis=1))
    raise ValueError(
        f"{name} has NaN or inf values in {len(bad)} row(s) (first: {bad[:5].tolist()}); "
        "clean or drop them before solving"
    )


def features(z, name: str = "z", *, width: int | None = None):
    """A non-empty, finite (n, m) feature matrix."""
    z = as_array(z, name)
    if z.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, m) feature matrix, got shape {tuple(z.shape)}")
    if z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(z.shape)}); need at least one row and one column")
    if width is not None and z.shape[1] != width:
        raise ValueError(f"{name} has shape {tuple(z.shape)}, but {width} features (columns) are expected")
    finite(z, name)
    return z


def targets(y, like, name: str = "y", like_name: str = "z", *, outputs: int | None = None):
    """Finite targets as (rows, k) with the rows of `like`; a vector (rows,) is one output (rows, 1)."""
    y = as_array(y, name)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2:
        raise ValueError(f"{name} must be (n, k) or (n,), got shape {tuple(y.shape)}")
    if y.shape[0] != like.shape[0]:
        raise ValueError(
            f"{name} has shape {tuple(y.shape)} but {like_name} has shape {tuple(like.shape)}: they must have the "
            "same number of rows"
        )
    if y.shape[1] == 0:
        raise ValueError(f"{name} has no outputs (shape {tuple(y.shape)})")
    if outputs is not None and y.shape[1] != outputs:
        raise ValueError(f"{name} has shape {tuple(y.shape)}, but {outputs} outputs (columns) are expected")
    finite(y, name)
    return y


def square(a, name: str):
    a = as_array(a, name)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {tuple(a.shape)}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(a.shape)})")
    finite(a, name)
    return a


def regularization(lam, name: str = "lam") -> float:
    try:
        value = float(lam)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {lam!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {lam!r}")
    return value


def regularization_grid(lambdas) -> np.ndarray:
    grid = np.asarray(lambdas, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"lambdas must be a non-empty 1-D sequence, got shape {grid.shape}")
    if not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"lambdas must be finite and >= 0, got {grid.tolist()}")
    return grid

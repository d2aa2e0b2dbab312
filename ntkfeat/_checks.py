"""Argument checks shared by layers, methods, feature maps, baselines and solvers.

Each check takes the argument's name as the user wrote it and returns the normalized value
(NumPy scalars become Python numbers), or raises with a message naming the argument.
Booleans are never accepted as numbers, and numbers never as booleans.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def integer(name: str, value, minimum: int | None = None) -> int:
    """An integer (Python or NumPy), at least `minimum` if given."""
    if not _is_int(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else (" >= 1" if minimum == 1 else f" >= {minimum}")
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)


def optional_integer(name: str, value, minimum: int | None = None) -> int | None:
    return None if value is None else integer(name, value, minimum)


def number(name: str, value, minimum: float | None = None, exclusive: bool = False) -> float:
    """A finite real number (Python or NumPy), >= minimum (> if exclusive)."""
    ok = _is_number(value) and math.isfinite(float(value))
    if ok and minimum is not None:
        ok = float(value) > minimum if exclusive else float(value) >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if exclusive else '>='} {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


def optional_number(name: str, value, minimum: float | None = None) -> float | None:
    return None if value is None else number(name, value, minimum)


def boolean(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value, options) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def int_tuple(name: str, value, length: int | None = None, minimum: int = 1) -> tuple[int, ...]:
    """A tuple of integers >= minimum; a single integer is repeated `length` times."""
    if _is_int(value) and length is not None:
        value = (value,) * length
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if items is None or (length is not None and len(items) != length) or not items or not all(
        _is_int(v) and v >= minimum for v in items
    ):
        what = f"{length} integers" if length else "integers"
        raise ValueError(f"{name} must be an integer >= {minimum} or a tuple of {what} >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


__all__ = ["boolean", "choice", "int_tuple", "integer", "number", "optional_integer", "optional_number"]

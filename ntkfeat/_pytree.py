"""Frozen dataclasses registered as pytrees: arrays are leaves, configuration is static."""

from __future__ import annotations

import dataclasses

import jax


def pytree_dataclass(cls=None, *, meta: tuple[str, ...] = ()):
    """Makes `cls` a frozen dataclass whose `meta` fields are static pytree metadata.

    Static fields must be hashable; they become part of the jit cache key, so shapes and
    sketch configurations compile once and arrays are traced.
    """

    def wrap(c):
        c = dataclasses.dataclass(frozen=True)(c)
        names = [f.name for f in dataclasses.fields(c)]
        unknown = set(meta) - set(names)
        if unknown:
            raise TypeError(f"meta fields {sorted(unknown)} are not fields of {c.__name__}")
        jax.tree_util.register_dataclass(
            c, data_fields=[n for n in names if n not in meta], meta_fields=list(meta)
        )
        return c

    return wrap if cls is None else wrap(cls)

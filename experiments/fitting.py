"""Alias of `ntkfeat.runs.fitting` for a clone: `import experiments.fitting` gives that very module.

The module moved into the package so that it is installed with it; this alias keeps the clone's commands
and imports working. Because `sys.modules` holds the package module under both names, attributes set on one
(e.g. a test's monkeypatch) are seen by the other.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("ntkfeat.runs.fitting")

"""Alias of `ntkfeat.runs.run` for a clone: `import experiments.run` gives that very module, and
`python -m experiments.run ...` runs its `main`.

The module moved into the package so that it is installed with it; this alias keeps the clone's commands
and imports working. Because `sys.modules` holds the package module under both names, attributes set on one
(e.g. a test's monkeypatch) are seen by the other.
"""
import importlib
import sys

if __name__ == "__main__":
    sys.exit(importlib.import_module("ntkfeat.runs.run").main())
else:
    sys.modules[__name__] = importlib.import_module("ntkfeat.runs.run")

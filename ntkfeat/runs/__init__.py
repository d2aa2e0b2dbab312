"""The YAML experiment runner and its tools (``ntkfeat run``, ``ntkfeat compare``, ``ntkfeat replot``).

Modules: `run` (a config -> results.json, table and plots), `config` (YAML schema and validation), `fitting`
(ridge fits and clocks), `methods` (feature methods by name), `report` (tables and plots), `compare` (tables and
plots across runs), `replot` (plots of one run again). The top-level ``experiments`` folder of a clone keeps thin
aliases of these modules, so that ``python -m experiments.run CONFIG`` still works there.
"""

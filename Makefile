# Two commands on a fresh machine:  make quickstart  (the main job)  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-ntkfeat
NT_VERSION := 0.6.5
# Test processes (pytest-xdist): one per CPU by default; the suite is mostly single-threaded XLA
# compilation, so two cores run it in about half the time of one process. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto

.PHONY: install quickstart test wheel bench-fc bench-cntk clean

$(STAMP): pyproject.toml setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# neural-tangents without its TensorFlow dependency (ntkfeat.compat makes it import on current JAX)
	$(BIN)/pip install -q --no-deps 'neural-tangents==$(NT_VERSION)'
	# the .pth hook a wheel ships (import neural_tangents before ntkfeat); an editable install need not carry it
	$(BIN)/python -c "import ntkfeat.compat as c; c.write_pth()"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/ntkfeat run configs/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

wheel: $(STAMP)  # dist/ntkfeat-*.whl: the package, configs/ as ntkfeat/configs, the .pth hook, py.typed
	$(BIN)/pip wheel --no-deps -w dist .

bench-fc: $(STAMP)
	$(BIN)/python -m experiments.bench_fc

clean:
	rm -rf $(VENV) .pytest_cache

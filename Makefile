# Set-up and entry points. `make train` and `make test` create or refresh .venv
# (Python 3.11; 3.12 works too) whenever pyproject.toml or constraints.txt changes,
# then run. pyproject.toml declares ranges; constraints.txt holds the exact, tested set.
PYTHON ?= python3.11
VENV ?= .venv
CONSTRAINTS := constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.graphmm-installed
BENCH_STAMP := $(VENV)/.graphmm-bench-installed
PYTEST_ARGS ?=
TRAIN_ARGS ?=
PERF_ARGS ?=
REALDATA_ARGS ?=

.PHONY: venv train test test-fast bench bench-perf bench-realdata constraints clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; graphmm needs Python 3.11 or 3.12 (set PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	@touch $(STAMP)

train: $(STAMP)
	$(PY) -m graphmm.train $(TRAIN_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.modalities

# the `bench` extra (PyG, for the comparison) on top of the dev install
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

# graph construction, training throughput and scaling; PERF_ARGS=--quick for a short run
bench-perf: $(BENCH_STAMP)
	$(PY) -m benchmarks.perf $(PERF_ARGS)

# the accuracy table on ../shared/data (or $$GRAPHMM_DATA); REALDATA_ARGS=--quick for a smoke run
bench-realdata: $(STAMP)
	$(PY) -m benchmarks.realdata $(REALDATA_ARGS)

# Rewrite constraints.txt from the working .venv (dev and bench extras installed), after
# upgrading a package there and running the tests. graphmm itself and editables are left out.
constraints: $(BENCH_STAMP)
	{ sed -n '/^#/!q;p' $(CONSTRAINTS); $(PY) -m pip freeze --exclude-editable | grep -v -i -e '^graphmm[= ]' -e '^#'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache

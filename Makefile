# Set-up and entry points. `make train` and `make test` create or refresh .venv
# (Python 3.11) whenever pyproject.toml changes, then run.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.graphmm-installed
BENCH_STAMP := $(VENV)/.graphmm-bench-installed
PYTEST_ARGS ?=
TRAIN_ARGS ?=
PERF_ARGS ?=
REALDATA_ARGS ?=

.PHONY: venv train test test-fast bench bench-perf bench-realdata clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; graphmm needs Python 3.11 (set PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
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
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

# graph construction, training throughput and scaling; PERF_ARGS=--quick for a short run
bench-perf: $(BENCH_STAMP)
	$(PY) -m benchmarks.perf $(PERF_ARGS)

# the accuracy table on ../shared/data (or $$GRAPHMM_DATA); REALDATA_ARGS=--quick for a smoke run
bench-realdata: $(STAMP)
	$(PY) -m benchmarks.realdata $(REALDATA_ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache

# fpgrowth-dagster: `make demo` runs the main job end to end on the embedded S3; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo dev test test-quick bench bench-orchestration clean

venv: $(STAMP)

# Create or reuse the venv; reinstall when the project's metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

# A quick subset for the edit loop (CI runs `make test`).
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow"

demo: $(STAMP)
	$(BIN)/python -m fpgrowth_dagster.demo

dev: $(STAMP)
	$(BIN)/python -m fpgrowth_dagster.demo --dev

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engines.py
	$(BIN)/python benchmarks/bench_budget.py --results benchmarks/RESULTS.md

bench-orchestration: $(STAMP)
	$(BIN)/python benchmarks/bench_orchestration.py --repeat 3 --results benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# flossrepro: every command sets up .venv first (torch==2.13.0 CPU build first, then the project)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=
PYTEST_ARGS ?=
NATIVE  := $(BIN)/python -c "from flossrepro.engine.native import main; raise SystemExit(main())"

.PHONY: setup native run test test-slow bench bench-tables figures report clean
.DEFAULT_GOAL := run

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(NATIVE)
	touch $(STAMP)

setup: $(STAMP)            ## create .venv, install the project, build the native kernels

native: $(STAMP)           ## build the native C kernels if needed and check them against PyTorch
	$(NATIVE)

run: $(STAMP)              ## the default job (make run ARGS="task.delay=20 flossing=pre")
	$(BIN)/python -m flossrepro $(ARGS)

test: $(STAMP)             ## the test suite (excludes tests marked slow; one worker per core)
	$(BIN)/python -m pytest -q -n auto --dist worksteal $(PYTEST_ARGS)

test-slow: $(STAMP)        ## the long science checks only
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP)            ## speed benchmark, writes results/bench.json; then the generic path (any PyTorch RNN) against the analytic GRU, results/bench_generic.txt
	$(BIN)/python -m flossrepro.bench $(ARGS)
	$(BIN)/python -m flossrepro.perf.generic_bench

bench-tables: $(STAMP)     ## a paper-scale Fig 4 sweep's tables written and aggregated, writes results/bench_tables.json
	$(BIN)/python -m flossrepro.perf.table_bench --json results/bench_tables.json

PAPER_RESULTS := $(wildcard results/paper results/paper-d70 results/paper-lowrank)

figures: $(STAMP)          ## rebuild every figure from results/ and its paper-scale folders (no training)
	$(BIN)/python -m flossrepro.figures $(ARGS)
	$(if $(ARGS),,for d in $(PAPER_RESULTS); do $(BIN)/python -m flossrepro.figures --results $$d || exit 1; done)

report: $(STAMP)           ## results/REPORT.md: the paper's claims against the measured numbers
	$(BIN)/python -m flossrepro.report $(ARGS)

clean:                     ## remove run outputs (not results/)
	rm -rf outputs multirun

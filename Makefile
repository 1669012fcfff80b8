# Every target installs into .venv at the repository root; nothing global is touched.
# WF_HOME is left to the environment: unset, every target uses wf's own default, ~/.wf,
# the same home as the README's .venv/bin/wf commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install run test test-fast lint bench dagster-ui clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/wf run docs_writer_thread_v1 assets/sample_repo

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow"

# `wf governance check`: every spec under docs/specs is valid and names tests and benchmarks that exist.
lint: $(STAMP)
	$(BIN)/ruff check wf_pipeline tests
	$(BIN)/ruff format --check wf_pipeline tests
	$(BIN)/lint-imports
	$(BIN)/wf governance check

# LangGraph, the comparison in P2, comes only with the `bench` extra.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py

# `wf ui` prepares the home's instance (its dagster.yaml: batched events, no telemetry, no
# community modal) and becomes `dg dev` on it; Ctrl-C reaches Dagster's own shutdown.
# UI_ARGS, e.g. UI_ARGS="--port 3001", goes to `wf ui`.
dagster-ui: $(STAMP)
	exec $(BIN)/wf ui $(UI_ARGS)

# The home (~/.wf or $WF_HOME) holds records and outputs, and is never removed here.
clean:
	rm -rf $(VENV)

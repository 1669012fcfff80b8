# Every target installs into .venv at the repository root; nothing global is touched.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
export WF_HOME ?= $(CURDIR)/.wf

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

lint: $(STAMP)
	$(BIN)/ruff check wf_pipeline tests
	$(BIN)/ruff format --check wf_pipeline tests
	$(BIN)/lint-imports

# LangGraph, the comparison in P2, comes only with the `bench` extra.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py

# Runs launched from the UI batch their events as CLI runs do: the instance's dagster.yaml
# says so (see README, The Dagster UI).
dagster-ui: $(STAMP)
	DAGSTER_HOME=$${DAGSTER_HOME:-$(WF_HOME)/dagster} $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) .wf

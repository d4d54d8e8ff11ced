# One command per job on a fresh machine with Python 3.11+, make and a package
# index: `make dev` runs the whole system, `make test` every test.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Inside the venv: deleting .venv by hand also forgets the install.
STAMP := $(VENV)/.installed
# The same folder `ordersaga dev` uses: ORDERSAGA_DATA_DIR when set.
DATA_DIR ?= $(or $(ORDERSAGA_DATA_DIR),.ordersaga)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install dev test test-fast bench chaos chaos-quick lint format clean reset-data check-python

help:
	@echo "make dev         run Temporal, the services, the worker and the API (Ctrl-C stops)"
	@echo "make test        run every test (unit, workflow, replay, integration, e2e)"
	@echo "make test-fast   unit, workflow and replay tests only (no servers; under a minute)"
	@echo "make bench       benchmark the saga against bare Temporal (own stack on free ports)"
	@echo "make chaos       the fault matrix: kill/hang components under load, check invariants"
	@echo "make chaos-quick its bounded form, as CI runs it (about 2 minutes)"
	@echo "make lint        ruff check, ruff format --check, mypy --strict, the import layers"
	@echo "make format      apply ruff's fixes and formatting"
	@echo "make install     create $(VENV) and install the project with its dev tools"
	@echo "make clean       remove $(VENV) (keeps the data in $(DATA_DIR))"
	@echo "make reset-data  remove $(DATA_DIR): every order, stock level and Temporal history"

# Checked when the venv is created, so an existing venv keeps working whatever
# python3 is on PATH today.
define require_python
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
		echo "error: '$(PYTHON)' not found; install Python 3.11+ or run make PYTHON=/path/to/python3.11" >&2; \
		exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "error: ordersaga needs Python 3.11+, but $(PYTHON) is $$($(PYTHON) -V 2>&1);" \
			"run make PYTHON=/path/to/python3.11" >&2; \
		exit 1; }
endef

check-python:
	$(require_python)
	@echo "$(PYTHON): $$($(PYTHON) -V 2>&1), fine"

$(VENV):
	$(require_python)
	$(PYTHON) -m venv $(VENV)

# Re-installs whenever pyproject.toml changes (new or upgraded dependencies).
$(STAMP): pyproject.toml | $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(STAMP)

# Bytecode up front: where PYTHONDONTWRITEBYTECODE is set, the workflow sandbox
# would otherwise compile the workflow's source for every order it runs.
COMPILE_WORKFLOW_CODE = $(BIN)/python -m compileall -q contracts workflows activities >/dev/null

dev: $(STAMP)
	$(COMPILE_WORKFLOW_CODE)
	$(BIN)/ordersaga dev

# Two pytest-xdist workers, each with its own Temporal servers and stacks on
# free ports. A test file runs whole on one worker, files in the order
# collected (tests/worker_groups.py). TEST_WORKERS=0 runs in this one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Unit, workflow (time-skipping test server) and replay-gate tests: no Temporal
# dev server, no services; under a minute.
FAST_TESTS = tests/unit tests/workflows tests/replay/test_replay.py tests/replay/test_redaction.py
test-fast: $(STAMP)
	$(BIN)/pytest $(FAST_TESTS) $(PYTEST_ARGS)

# The dev extra holds the bench extra's packages. BENCH_ARGS passes flags through,
# e.g. make bench BENCH_ARGS='--orders 500 --concurrency 32'.
BENCH_ARGS ?=
bench: $(STAMP)
	$(COMPILE_WORKFLOW_CODE)
	$(BIN)/ordersaga bench --output-dir bench-results $(BENCH_ARGS)

# Its own stack of separate processes on free ports with a fresh data dir, like
# the bench. CHAOS_ARGS passes flags through, e.g. CHAOS_ARGS='--only temporal-kill'.
CHAOS_ARGS ?=
chaos: $(STAMP)
	$(COMPILE_WORKFLOW_CODE)
	$(BIN)/ordersaga chaos $(CHAOS_ARGS)

chaos-quick: $(STAMP)
	$(COMPILE_WORKFLOW_CODE)
	$(BIN)/ordersaga chaos --quick $(CHAOS_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV)

reset-data:
	rm -rf $(DATA_DIR)

# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install the serving stack, build the demo data and serve the dashboard
#   make test   - create .venv, install with the test and training extras, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
PORT ?= 8501

.PHONY: install demo test bench lint typecheck check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,train]'
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)

demo: $(RUN_STAMP)
	$(BIN)/triage demo --port $(PORT)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest

bench: $(TEST_STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(TEST_STAMP)
	$(BIN)/ruff check inference db dashboard tests bench

typecheck: $(TEST_STAMP)
	$(BIN)/python -m mypy

check: lint typecheck

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts

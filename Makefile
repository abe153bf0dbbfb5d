# MetaChat Jobs. `make run` starts the service, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The service's top-level packages (docs/design.md, Layout).
PACKAGES := api worker core metachat sim cli migrations

.PHONY: run test test-fast lint format migrate bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The service alone, for `make run`.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# The service plus the test and lint tools.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

# Options go through to `mcjobs up`, e.g. `make run ARGS="--redis-port=6400 --api-port=8001"`.
run: $(VENV)/.installed
	$(BIN)/mcjobs up $(ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/pytest

# Everything except the slow end-to-end runs.
test-fast: $(VENV)/.installed-dev
	$(BIN)/pytest -m "not slow" tests/unit tests/integration

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/ruff format --check $(PACKAGES) tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(VENV)/.installed-dev
	$(BIN)/ruff format $(PACKAGES) tests bench
	$(BIN)/ruff check --fix $(PACKAGES) tests bench

migrate: $(VENV)/.installed
	$(BIN)/mcjobs migrate

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.run

chaos: $(VENV)/.installed-dev
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

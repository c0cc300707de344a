# `make run`: set up .venv (if needed) and run the quickstart search.
# `make test`: set up .venv (if needed) and run the whole test suite (slow tests included).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hpsearch-installed

.PHONY: run test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hpsearch run examples/quickstart.yaml

test: $(STAMP)
	$(BIN)/ruff check spaces search trainables tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check spaces search trainables tests benchmarks
	$(BIN)/ruff format --check spaces search trainables tests benchmarks

clean:
	rm -rf hpsearch_results mlruns.db mlartifacts .pytest_cache

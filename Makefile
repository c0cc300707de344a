# `make run`: set up .venv (what running needs) and run the quickstart search.
# `make test`: set up .venv (with the test and lint tools), lint, type-check and run every test (slow ones too).
# Everything installs from constraints.txt: the exact set of versions hpsearch is tested with.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet -c constraints.txt
RUN_STAMP := $(VENV)/.hpsearch-run
DEV_STAMP := $(VENV)/.hpsearch-dev
PACKAGES := search spaces trainables
# Another interpreter by version (compat): the first that runs of python3.X on PATH (a pyenv shim may
# not), a pyenv installation, /usr/bin and /usr/local/bin; its real path.
find_python = $(shell for p in python$(1) $$(ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/$(1).*/bin/python$(1) 2>/dev/null) /usr/bin/python$(1) /usr/local/bin/python$(1); do $$p -c 'import sys; print(sys.executable)' 2>/dev/null && break; done)

.PHONY: run test test-faults test-fast lint typecheck compat compat-ci compat-one compat-venv install install-dev constraints clean

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP)

$(RUN_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP) -e .
	touch $@

# Everything running needs and the test and lint tools, in one pip run (not a second resolve after install's).
$(DEV_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP) -e '.[dev]'
	touch $(RUN_STAMP) $@

run: $(RUN_STAMP)
	$(BIN)/hpsearch run examples/quickstart.yaml

test: lint
	$(BIN)/python -m pytest -m "not faults"

# The fault tests: real nodes, drivers, trial processes, an MLflow server and its database killed (about 14 minutes; CI runs them).
test-faults: $(DEV_STAMP)
	$(BIN)/python -m pytest -m faults

# The tests not marked slow (a few minutes).
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(DEV_STAMP)
	$(BIN)/ruff check $(PACKAGES) tests benchmarks
	$(BIN)/ruff format --check $(PACKAGES) tests benchmarks
	$(MAKE) --no-print-directory typecheck

# mypy sees the package as Python imports it: a tree of links named as the installed package
# (search/ -> hpsearch/, spaces/ -> hpsearch/spaces/, trainables/ -> hpsearch/trainables/).
typecheck: $(DEV_STAMP)
	rm -rf build/typecheck && mkdir -p build/typecheck
	cp -rs $(CURDIR)/search build/typecheck/hpsearch
	cp -rs $(CURDIR)/spaces build/typecheck/hpsearch/spaces
	cp -rs $(CURDIR)/trainables build/typecheck/hpsearch/trainables
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p hpsearch

# The quickstart and the fast tests on Python 3.12 and 3.13, each in a venv of its own (about 7 GB
# each: torch from PyPI for these Pythons is a CUDA build). DROP_COMPAT_VENVS=1 removes each venv once
# its tests pass, so the disk holds at most one of them (CI does this).
DROP_COMPAT_VENVS ?=
compat:
	$(MAKE) --no-print-directory compat-one PYVER=3.12
	$(MAKE) --no-print-directory compat-one PYVER=3.13

# What CI runs: the newest supported Python only (with make test's 3.11, the two ends of the range), its venv
# removed afterwards.
compat-ci:
	$(MAKE) --no-print-directory compat-one PYVER=3.13 DROP_COMPAT_VENVS=1

compat-one:
	@test -n "$(call find_python,$(PYVER))" || { echo "python$(PYVER) not found"; exit 1; }
	$(MAKE) --no-print-directory run test-fast VENV=.venv-py$(PYVER) PYTHON=$(call find_python,$(PYVER)) \
		PYTEST_ADDOPTS="-p no:cacheprovider"
	$(if $(DROP_COMPAT_VENVS),rm -rf .venv-py$(PYVER))

# The packages compat-one's venv needs, straight from constraints.txt, without building hpsearch itself (CI
# runs this in the background while make test installs .venv from the same source tree; compat-one then
# only adds hpsearch).
compat-venv:
	@test -n "$(call find_python,$(PYVER))" || { echo "python$(PYVER) not found"; exit 1; }
	test -x .venv-py$(PYVER)/bin/python || $(call find_python,$(PYVER)) -m venv .venv-py$(PYVER)
	.venv-py$(PYVER)/bin/python -m pip install --quiet --upgrade pip
	.venv-py$(PYVER)/bin/python -m pip install --quiet --no-deps -r constraints.txt

# Regenerate constraints.txt from the current .venv (after changing a version on purpose).
constraints: $(DEV_STAMP)
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^hpsearch'; } > constraints.tmp
	mv constraints.tmp constraints.txt

clean:
	rm -rf hpsearch_results mlruns.db mlartifacts .pytest_cache build

# Two commands do all the setup on a fresh machine with only Python and make:
#   make run   - create .venv, install nnbench, train the default experiment
#   make test  - create .venv, install nnbench with its test extras, run the tests
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet --no-input
# This machine's pip configuration names local indexes that may be absent; drop that noise.
QUIET := 2>&1 | { grep -v "^WARNING: Location" || true; }
EXTRAS ?= test
PYTEST_ARGS ?=

.PHONY: run test venv lint reference clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The stamp records which extras are installed; pyproject.toml changes reinstall.
$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[$(EXTRAS)]" $(QUIET)
	$(BIN)/python -c "import nnbench" && touch $@

venv: $(VENV)/.installed-$(EXTRAS)

test: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

run: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/python -m nnbench

# The PyTorch comparison tests: torch 2.13.0 is a CPU build that installs in seconds here.
reference: $(VENV)/.installed-$(EXTRAS)
	$(PIP) install "torch==2.13.0" $(QUIET)

lint: $(VENV)/.installed-$(EXTRAS)
	$(PIP) install ruff $(QUIET)
	$(BIN)/ruff check nnbench tests
	$(BIN)/ruff format --check nnbench tests

clean:
	rm -rf $(VENV) .pytest_cache

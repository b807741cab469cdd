# Two commands do all the setup on a fresh machine with only Python and make:
#   make run   - create .venv, install nnbench, train the default experiment
#   make test  - create .venv, install nnbench with its test extras, run the tests
# The full suite adds every extra and the opt-in suites (after scripts/install-extras.sh):
#   make test-all
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet --no-input
# This machine's pip configuration names local indexes that may be absent; drop that noise.
QUIET := 2>&1 | { grep -v "^WARNING: Location" || true; }
EXTRAS ?= test
# What the full suite uses: PyTorch (the reference), psycopg (the tracking server), the submitit
# and Ray launchers, Selenium (the MLflow UI in a browser).
ALL_EXTRAS := test,reference,server,slurm,ray,browser
PYTEST_ARGS ?=
VARIANT ?= cpu
# The lock files pin every runtime dependency, with hashes, for Python 3.11 on x86_64 Linux
# (the Docker image's platform): requirements.lock (with the tracking server's driver) and
# requirements-gpu.lock (also CuPy). `make lock` regenerates both with uv, pinned here,
# within one resolution of all the extras, so that any extras install on top unchanged.
LOCK := requirements.lock
UV := uv==0.13.9
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet
LOCK_ARGS := $(LOCK_TARGET) --generate-hashes --extra server -c $(VENV)/all-extras.txt \
	--custom-compile-command "make lock"
LOCK_FITS := import platform, sys; \
	sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64" or sys.platform != "linux")

.PHONY: run test test-all venv lint reference lock image clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The stamp records which extras are installed; pyproject.toml or lock changes reinstall.
# The locked versions go in first where the lock fits this Python; the extras come on top.
$(VENV)/.installed-$(EXTRAS): pyproject.toml $(LOCK) | $(BIN)/python
	if $(BIN)/python -c '$(LOCK_FITS)'; then \
		$(PIP) install --require-hashes -r $(LOCK) $(QUIET); \
	else \
		echo "$(LOCK) is for Python 3.11 on x86_64 Linux: installing unpinned versions"; \
	fi
	$(PIP) install -e ".[$(EXTRAS)]" $(QUIET)
	$(BIN)/python -c "import nnbench" && touch $@

venv: $(VENV)/.installed-$(EXTRAS)

test: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every extra installed, the opt-in suites (Docker, browser) selected; a test whose system
# software is missing still skips with the reason. PYTEST_ARGS=--rerun-skipped runs only what
# the last run skipped.
test-all:
	$(MAKE) test EXTRAS=$(ALL_EXTRAS) PYTEST_ARGS="--extras $(PYTEST_ARGS)"

run: $(VENV)/.installed-$(EXTRAS)
	$(BIN)/python -m nnbench

# The PyTorch comparison tests: torch 2.13.0 is a CPU build that installs in seconds here.
reference: $(VENV)/.installed-$(EXTRAS)
	$(PIP) install "torch==2.13.0" $(QUIET)

# ruff as pinned in the dev extra (the same checks as .pre-commit-config.yaml and CI).
lint: $(VENV)/.installed-$(EXTRAS)
	$(PIP) install -e ".[dev]" $(QUIET)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Regenerate the lock files from pyproject.toml (needs PyPI).
lock: | $(BIN)/python
	$(PIP) install "$(UV)" $(QUIET)
	$(BIN)/uv pip compile pyproject.toml --all-extras $(LOCK_TARGET) -o $(VENV)/all-extras.txt
	$(BIN)/uv pip compile pyproject.toml $(LOCK_ARGS) -o $(LOCK)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_ARGS) --extra gpu -o requirements-gpu.lock
	sed -i.bak '/^ *#   -c /d' $(LOCK) requirements-gpu.lock  # "via" the scratch file: noise
	rm -f $(LOCK).bak requirements-gpu.lock.bak

# The Docker image nnbench:$(VARIANT) (needs Docker with BuildKit; VARIANT=gpu for CUDA), with
# the commit and whether the tree was dirty recorded in every run's manifest.
# DOCKER_BUILD_ARGS adds options, e.g. a local base image (README.md, "Docker"); DOCKER
# picks the CLI.
DOCKER_BUILD_ARGS ?=
DOCKER ?= docker
image:
	DOCKER_BUILDKIT=1 $(DOCKER) build $(DOCKER_BUILD_ARGS) -t nnbench:$(VARIANT) --build-arg VARIANT=$(VARIANT) \
		--build-arg GIT_COMMIT="$$(git rev-parse HEAD)" \
		--build-arg GIT_DIRTY="$$(test -z "$$(git status --porcelain --untracked-files=no)" && echo false || echo true)" .

clean:
	rm -rf $(VENV) .pytest_cache

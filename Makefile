# egotune developer targets. Every target installs the project into .venv first when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.egotune-installed
# PARALLEL="-n 2 --dist loadfile" runs two test files at a time (pytest-xdist; whole files per
# worker, so a module's shared search runs once); off by default: trials of two Ray clusters then
# share the cores, and timing-sensitive drills are measured alone
PARALLEL ?=

.PHONY: setup demo test test-fast coverage lint typecheck pytest bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/egotune demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PARALLEL)

test: lint typecheck pytest

# the everyday loop: everything but the real-cluster, fault-drill and long subprocess tests
test-fast: $(STAMP)
	$(PY) -m pytest $(PARALLEL) -m "not slow" -q

# line coverage of the three packages over the whole suite (htmlcov/index.html)
coverage: $(STAMP)
	$(PY) -m pytest -q --cov=tuner --cov=models --cov=data_pipeline --cov-report=term:skip-covered --cov-report=html

bench: $(STAMP)
	$(VENV)/bin/egotune bench all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

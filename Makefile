# egotune developer targets. Every target installs the project into .venv first when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.egotune-installed
# Two pytest-xdist workers: one runs every test that runs Ray, in order (one Ray at a time, as
# in a serial run), the other every other test meanwhile (tests/lanes.py). PARALLEL= runs the
# suite in one process.
PARALLEL ?= -n 2

.PHONY: setup demo test test-bucket test-fast coverage lint typecheck pytest bench clean

setup: $(STAMP)

# pip byte-compiles what it installs on one core; compileall does it on all of them (it fails on a
# few Python 3.12-only files of the packages' own tests, as pip does silently).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[dev]'
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null || true
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

# mypy checks the packages beside the test suite (its log follows the suite's); either failing
# fails the target. The tests against an S3 server run apart (test-bucket; CI runs both).
test: lint
	$(VENV)/bin/mypy > $(VENV)/mypy.log 2>&1 & typing=$$!; \
	$(PY) -m pytest $(PARALLEL) -m "not bucket"; tests=$$?; \
	wait $$typing; typed=$$?; cat $(VENV)/mypy.log; \
	test $$tests -eq 0 && test $$typed -eq 0

# everything against moto's S3 server: searches with --storage s3://... (refused ones, and on a
# two-node loopback cluster), results and the web view reading a bucket
test-bucket: $(STAMP)
	$(PY) -m pytest -p no:xdist -m bucket -q

# the everyday loop: everything but the real-cluster, fault-drill and long subprocess tests
test-fast: $(STAMP)
	$(PY) -m pytest $(PARALLEL) -m "not slow" -q

# line coverage of the three packages over the whole suite (htmlcov/index.html)
coverage: $(STAMP)
	$(PY) -m pytest $(PARALLEL) -q --cov=tuner --cov=models --cov=data_pipeline --cov-report=term:skip-covered --cov-report=html

bench: $(STAMP)
	$(VENV)/bin/egotune bench all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

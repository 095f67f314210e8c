# The two commands a newcomer runs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9

.PHONY: run test prerequisites bench faults lint format install clean

# Create the virtualenv and install the pinned dependencies; redone when pyproject.toml or this
# file changes. The bytecode is compiled at install: a worker started again after a crash is
# then ready in about a second instead of three (Django compiled from source at every start).
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install --quiet --system-certs --compile-bytecode --python $(PY) -r pyproject.toml --extra dev
	touch $@

install: $(VENV)/.installed

# Everything from nothing to a running admin with demo data. PostgreSQL and Redis when
# DATABASE_URL / CELERY_BROKER_URL are set (or in .env), an embedded SQLite + filesystem broker otherwise.
run: install
	$(PY) -m webhooks_project.serve

# What the suite needs outside the virtualenv: Chromium installed, PostgreSQL and Redis started.
prerequisites:
	scripts/prerequisites.sh

# Everything CI checks (.ci/run is just this): the prerequisites, lint, then the suite on the
# PostgreSQL and Redis at 127.0.0.1 unless DATABASE_URL/CELERY_BROKER_URL say otherwise.
# PYTEST_ARGS picks tests: make test PYTEST_ARGS="tests/e2e". The suite runs in TEST_PROCESSES
# processes at once (pytest-xdist), each on a database and a Redis database number of its own.
TEST_PROCESSES ?= 2
test: install prerequisites lint
	$(PY) -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

# Break the running system (workers killed, PostgreSQL and Redis restarted, receivers hanging) on
# private servers of its own and count what arrives; exits non-zero on any loss. Not in `make test`.
faults: install prerequisites
	$(PY) -m faults $(FAULTS_ARGS)

# Throughput and latency figures; asserts nothing.
bench: install
	$(PY) -m bench.deliveries $(BENCH_ARGS)
	$(PY) -m bench.floor $(FLOOR_BENCH_ARGS)
	$(PY) -m bench.backlog $(BACKLOG_BENCH_ARGS)
	$(PY) -m bench.ingest $(INGEST_ARGS)
	$(PY) -m bench.admin_list $(ADMIN_BENCH_ARGS)
	$(PY) -m bench.metrics $(METRICS_BENCH_ARGS)
	$(PY) -m bench.search $(SEARCH_BENCH_ARGS)
	$(PY) -m bench.fan_out_filters $(FILTERS_BENCH_ARGS)
	$(PY) -m bench.timeouts $(TIMEOUTS_BENCH_ARGS)

# ruff check, ruff format --check and mypy; part of make test.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	DJANGO_DEBUG=true $(PY) -m mypy webhook_engine common audit schools events subscriptions deliveries webhooks_project faults

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

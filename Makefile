# Two commands for a fresh machine: `make test`, then `make demo`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_ADMIN_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export CRMSYNC_TEST_DATABASE_URL ?= $(PG_ADMIN_URL)
export CRMSYNC_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: install services test test-fast demo lint stack bench clean

$(BIN)/crmsync: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(BIN)/crmsync

install: $(BIN)/crmsync

services:
	bash deploy/ensure-services.sh

# The whole suite against the real PostgreSQL and Redis (each test session makes its own database).
test: install services
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Only the tests that need no PostgreSQL, Redis or Celery worker (marked in tests/conftest.py).
test-fast: install
	$(BIN)/pytest -q -m "not services" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check crmsync workers tests bench beat_schedule.py

# Both sandbox CRMs in-process, SQLite, tasks inline: runs anywhere.
demo: install
	$(BIN)/crmsync demo

# The docker-compose processes as local processes against the local PostgreSQL and Redis.
stack: install services
	bash deploy/stack.sh

clean:
	rm -rf $(VENV) .crmsync .pytest_cache

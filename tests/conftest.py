"""Root fixtures. Each domain's shared fixtures live in tests/fixtures/<domain>.py and are loaded here,
so a new domain adds a file instead of editing this one.

Tiers: a test that needs PostgreSQL, Redis or a Celery worker is marked ``services`` here, from the
fixtures it uses (directly or through other fixtures), so no test file has to remember the mark.
``pytest -m "not services"`` runs the rest in seconds on a laptop with neither server;
``make test`` runs everything.
"""
from pathlib import Path

import pytest

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)

# Fixtures that reach a server: the session's PostgreSQL database, the shared Redis, a private
# redis-server (which needs the binary) and everything built on them.
SERVICE_FIXTURES = frozenset({"pg_url", "redis_url", "worker_redis"})
# Parametrised fixtures (any_db_url, the rate budget's backends, ...) run a test once per backend;
# only the halves on these backends need a server.
SERVICE_PARAMS = frozenset({"postgresql", "redis"})


def _needs_services(item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    if names & SERVICE_FIXTURES:
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(isinstance(value, str) and value in SERVICE_PARAMS for value in params.values())


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _needs_services(item):
            item.add_marker(pytest.mark.services)

"""The Pipedrive sandbox (crmsync/sandbox/pipedrive) on a free 127.0.0.1 port, one per test module,
reseeded to the same small account before each test; and an adapter pointed at it."""
from __future__ import annotations

import pytest

from crmsync.cache import MetadataCache
from crmsync.platforms.pipedrive import PipedriveAdapter
from crmsync.sandbox.pipedrive import create_app
from crmsync.sandbox.server import SandboxServer

SEED = {"seed": 11, "persons": 25, "organizations": 8, "deals": 12, "activities": 30}


class PipedriveSandbox:
    def __init__(self, app, base_url: str):
        self.app, self.base_url = app, base_url
        self.token = app.options.token

    def configure(self, **changes) -> dict:
        return self.app.configure(**changes)

    def counters(self) -> dict:
        return self.app.counters()

    def requests_to(self, endpoint: str) -> int:
        """How many requests reached an endpoint template, e.g. "GET /api/v1/personFields"."""
        hits = self.app.counters()["by_endpoint"].get(endpoint, 0)
        return hits if isinstance(hits, int) else sum(v for v in hits.values() if isinstance(v, int))

    def count(self, entity: str) -> int:
        return self.app.state.counts()[entity]

    def rows(self, entity: str) -> list[dict]:
        with self.app.state.lock:
            return [dict(r) for r in self.app.state.tables[entity].rows.values() if not r.get("is_deleted")]


@pytest.fixture(scope="module")
def _pd_server():
    app = create_app(rate_limit=0, daily_budget=0, **SEED)
    server = SandboxServer(app)
    base_url = server.start()
    yield PipedriveSandbox(app, base_url)
    server.stop()
    app.close()


@pytest.fixture
def pd_sandbox(_pd_server):
    _pd_server.app.reset(reseed=True)
    return _pd_server


@pytest.fixture
def adapter(pd_sandbox) -> PipedriveAdapter:
    return PipedriveAdapter(credentials={"api_token": pd_sandbox.token}, base_url=pd_sandbox.base_url,
                            cache=MetadataCache(), max_wait=2.0)

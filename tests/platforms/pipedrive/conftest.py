"""Pipedrive contract-test helpers on top of the shared `pipedrive_sandbox` fixture
(tests/fixtures/sandbox.py: one sandbox per session, reseeded before each test, rate limits off,
responses checked against Pipedrive's OpenAPI specs at teardown); and an adapter pointed at it."""
from __future__ import annotations

import pytest

from crmsync.cache import MetadataCache
from crmsync.platforms.pipedrive import PipedriveAdapter


class PipedriveContract:
    """`pipedrive_sandbox` plus the few views these tests need of the fake account."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.app, self.base_url, self.token = sandbox.app, sandbox.base_url, sandbox.token

    def configure(self, **changes) -> dict:
        return self.sandbox.configure(**changes)

    def counters(self) -> dict:
        return self.app.counters()

    def requests_to(self, endpoint: str) -> int:
        """How many requests reached an endpoint template, e.g. "GET /api/v1/personFields"."""
        return self.app.counters()["by_endpoint"].get(endpoint, 0)

    def rows(self, entity: str) -> list[dict]:
        with self.app.state.lock:
            return [dict(r) for r in self.app.state.tables[entity].rows.values() if not r.get("is_deleted")]


@pytest.fixture
def pd_sandbox(pipedrive_sandbox) -> PipedriveContract:
    return PipedriveContract(pipedrive_sandbox)


@pytest.fixture
def adapter(pd_sandbox) -> PipedriveAdapter:
    return PipedriveAdapter(credentials={"api_token": pd_sandbox.token}, base_url=pd_sandbox.base_url,
                            cache=MetadataCache(), max_wait=2.0)

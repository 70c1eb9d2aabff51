"""The contract tests run on the shared `hubspot_sandbox` fixture (tests/fixtures/sandbox.py): a real
HubSpot sandbox on 127.0.0.1, empty portal, no rate limits, index lag 0, and every response it
sends checked against HubSpot's OpenAPI specs. `hs` adds a ready client and adapter."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from crmsync.platforms.hubspot import HubSpotAdapter, HubSpotClient


@pytest.fixture
def hs(hubspot_sandbox):
    """base_url, token, app (the sandbox: .state, .seed(), .configure(), .counters()), sandbox (the
    shared fixture), plus a `client` and an `adapter` on the private-app token."""
    sandbox = hubspot_sandbox
    sandbox.app.configure(index_lag_ms=0)
    client = HubSpotClient(sandbox.token, sandbox.base_url)
    adapter = HubSpotAdapter(credentials={"token": sandbox.token}, base_url=sandbox.base_url)
    yield SimpleNamespace(app=sandbox.app, base_url=sandbox.base_url, token=sandbox.token, state=sandbox.state,
                          sandbox=sandbox, client=client, adapter=adapter)
    client.close()
    adapter.client.close()

"""A HubSpot sandbox on a real 127.0.0.1 port for the contract tests: one server per module,
state reset before each test (no records, no rate limits, index lag 0 unless a test says)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from crmsync.platforms.hubspot import HubSpotAdapter, HubSpotClient
from crmsync.sandbox.hubspot.app import create_app
from crmsync.sandbox.server import SandboxServer


@pytest.fixture(scope="module")
def hubspot_server():
    app = create_app(rate_limit=0, oauth_rate_limit=0, search_rate_limit=0, daily_limit=0, index_lag_ms=0)
    server = SandboxServer(app)
    base_url = server.start()
    yield app, base_url
    server.stop()


@pytest.fixture
def hs(hubspot_server):
    """base_url, token, app (the sandbox: .state, .seed(), .configure(), .counters()), plus
    ready-made `client` and `adapter` on the private-app token."""
    app, base_url = hubspot_server
    app.reset(reseed=False)
    app.state.reset()
    client = HubSpotClient(app.options.token, base_url)
    adapter = HubSpotAdapter(credentials={"token": app.options.token}, base_url=base_url)
    yield SimpleNamespace(app=app, base_url=base_url, token=app.options.token, state=app.state,
                          client=client, adapter=adapter)
    client.close()
    adapter.client.close()

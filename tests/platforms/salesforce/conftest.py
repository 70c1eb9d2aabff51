"""A Salesforce adapter pointed at the shared `salesforce_sandbox` (tests/fixtures/sandbox.py),
signed in with the sandbox's refresh token, as a config's vault entry would hold it."""
from __future__ import annotations

import pytest

from crmsync.cache import MetadataCache
from crmsync.platforms.salesforce import SalesforceAdapter


def oauth_credentials(app) -> dict:
    return {"client_id": app.options.client_id, "client_secret": app.options.client_secret,
            "refresh_token": app.options.refresh_token}


@pytest.fixture
def adapter(salesforce_sandbox) -> SalesforceAdapter:
    salesforce_sandbox.configure(query_batch_size=25)
    return SalesforceAdapter(credentials=oauth_credentials(salesforce_sandbox.app),
                             base_url=salesforce_sandbox.base_url, cache=MetadataCache())

"""OAuth refresh across workers: two adapters of one config (one vault entry, real PostgreSQL,
real Redis lock) whose access token is no longer good make one token call between them, and both
carry on with the token set that call saved."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from crmsync.configs import create_config
from crmsync.credentials import Vault
from crmsync.db import session_scope
from crmsync.db.models import SyncConfig
from crmsync.platforms.pipedrive.client import PipedriveClient
from crmsync.sync.connect import connect
from tests.fixtures.db import TEST_SECRET_KEY, _set_env
from tests.fixtures.factories import make_secret, make_tenant

TOKEN_CALLS = "POST /oauth/token"


@pytest.fixture
def oauth_config(monkeypatch, db_url, redis_url, redis_client, pipedrive_sandbox):
    """A Pipedrive config whose vault entry holds OAuth credentials with a dead access token."""
    _set_env(monkeypatch, {"CRMSYNC_DATABASE_URL": db_url, "CRMSYNC_REDIS_URL": redis_url})
    for key in redis_client.scan_iter("crmsync:pipedrive:oauth-refresh:*"):
        redis_client.delete(key)
    minted = pipedrive_sandbox.app.state.issue_oauth_tokens(1, expires_in=3600)

    def make(**token):
        with session_scope(db_url) as s:
            tenant = make_tenant(s)
            secret = make_secret(s, {"refresh_token": minted["refresh_token"], "client_id": "sandbox-client",
                                     "client_secret": "sandbox-secret", "rate_limits": "none", **token},
                                 platform="pipedrive")
            return create_config(s, {"tenant_id": tenant.id, "platform": "pipedrive",
                                     "credentials_vault_id": secret.id, "api_base_url": pipedrive_sandbox.base_url,
                                     "account_id": str(pipedrive_sandbox.app.options.company_id)}).id
    return make


def _adapter(db_url, config_id):
    with session_scope(db_url) as s:
        return connect(s, s.get(SyncConfig, config_id))


def _saved(db_url, config_id) -> dict:
    with session_scope(db_url) as s:
        config = s.get(SyncConfig, config_id)
        return Vault(TEST_SECRET_KEY).read(s, config.credentials_vault_id, tenant_id=config.tenant_id)


def _token_calls(sandbox) -> int:
    return sandbox.app.counters()["by_endpoint"].get(TOKEN_CALLS, 0)


def _works(sandbox, access_token) -> bool:
    client = PipedriveClient(oauth={"access_token": access_token}, base_url=sandbox.base_url)
    return client.users_me()["company_id"] == sandbox.app.options.company_id


def test_two_workers_with_an_expired_token_refresh_once(oauth_config, db_url, pipedrive_sandbox):
    config_id = oauth_config(access_token="v1u:expired", expires_at=0)
    both_connected = threading.Barrier(2, timeout=10)

    def worker() -> str:
        adapter = _adapter(db_url, config_id)   # one adapter per thread, as in a worker pool
        both_connected.wait()                   # both hold the expired token before either refreshes
        adapter.client.users_me()
        return adapter.client.auth.oauth["access_token"]

    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(worker) for _ in range(2)]
        seen = [f.result(timeout=30) for f in running]
    assert _token_calls(pipedrive_sandbox) == 1
    saved = _saved(db_url, config_id)
    assert seen == [saved["access_token"]] * 2
    assert _works(pipedrive_sandbox, saved["access_token"])
    assert saved["refresh_token"] in pipedrive_sandbox.app.state.refresh_tokens   # not locked out


def test_after_a_401_a_token_another_worker_saved_is_used_without_a_token_call(
        oauth_config, db_url, pipedrive_sandbox):
    # An access token the CRM refuses though it is not due to expire (revoked, or replaced elsewhere).
    config_id = oauth_config(access_token="v1u:revoked", expires_at=4102444800)
    mine = _adapter(db_url, config_id)
    other = threading.Thread(target=lambda: _adapter(db_url, config_id).client.users_me())
    other.start()
    other.join(timeout=30)
    assert _token_calls(pipedrive_sandbox) == 1       # the other worker's 401 refreshed and saved

    assert mine.client.users_me()["company_id"] == pipedrive_sandbox.app.options.company_id
    assert _token_calls(pipedrive_sandbox) == 1       # ours re-read the vault instead of refreshing
    assert mine.client.auth.oauth["access_token"] == _saved(db_url, config_id)["access_token"]


def test_a_refreshed_token_set_keeps_the_rest_of_the_vault_entry(oauth_config, db_url, pipedrive_sandbox):
    # A custom token endpoint (a proxy, a stand-in) and the entry's own limits are not token fields,
    # but the entry saved after a refresh replaces the old one: they must be in it.
    token_url = pipedrive_sandbox.base_url + "/oauth/token?via=proxy"
    config_id = oauth_config(access_token="v1u:expired", expires_at=1, token_url=token_url)
    assert _adapter(db_url, config_id).client.users_me()["company_id"] == pipedrive_sandbox.app.options.company_id
    assert _token_calls(pipedrive_sandbox) == 1
    saved = _saved(db_url, config_id)
    assert saved["access_token"] != "v1u:expired"
    assert saved["token_url"] == token_url and saved["rate_limits"] == "none"

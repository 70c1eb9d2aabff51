"""A config's adapter is kept for the next unit of work while nothing it was made from changed."""
from __future__ import annotations

import threading

from crmsync.credentials import Vault
from crmsync.db import session_scope
from crmsync.db.models import SyncConfig
from crmsync.sync.connect import connect


def _connect(world, **kw):
    with session_scope(world.db_url) as s:
        return connect(s, s.get(SyncConfig, world.config_id), **kw)


def test_the_next_unit_reuses_the_adapter_and_its_keep_alive_session(world):
    first = _connect(world)
    first.account_id()
    second = _connect(world)
    assert second is first
    # The CRM saw one connection's worth of requests: the session is the same object.
    assert second.client.session is first.client.session


def test_a_changed_secret_or_config_gives_a_new_adapter(world):
    first = _connect(world)
    with session_scope(world.db_url) as s:
        config = s.get(SyncConfig, world.config_id)
        Vault().replace(s, config.credentials_vault_id, {"token": world.hs.token, "rate_limits": "none",
                                                         "note": "rotated"}, tenant_id=config.tenant_id)
    rotated = _connect(world)
    assert rotated is not first
    assert rotated.credentials["note"] == "rotated"

    with session_scope(world.db_url) as s:
        s.get(SyncConfig, world.config_id).field_mappings = {"job_title": "jobtitle"}
    remapped = _connect(world)
    assert remapped is not rotated
    assert remapped.field_mappings == {"job_title": "jobtitle"}
    assert _connect(world, wait=False) is not remapped     # waiting or not is part of the adapter


def test_threads_do_not_share_an_adapter(world):
    mine = _connect(world)
    theirs = []
    t = threading.Thread(target=lambda: theirs.append(_connect(world)))
    t.start()
    t.join()
    assert theirs[0] is not mine
    assert _connect(world) is mine


def test_the_crm_session_reads_proxies_from_the_environment_once(monkeypatch):
    from crmsync.platforms.base import http_session
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    s = http_session("https://api.hubapi.com")
    assert s.proxies.get("https") == "http://proxy.example:3128"
    assert s.trust_env is False       # not re-read (nor ~/.netrc) on every call
    assert http_session("http://127.0.0.1:8080").proxies == {}

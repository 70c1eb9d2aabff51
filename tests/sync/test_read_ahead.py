"""An inline run fetches the next unit's CRM pages while it writes the current one: the same rows,
and not one request more than fetching in turn."""
from __future__ import annotations

import os
import signal

import pytest

from crmsync.configs import create_config
from crmsync.db import DatabaseForbidden, forbid_database, session_scope
from crmsync.db.models import SyncConfig
from crmsync.sync.connect import connect
from crmsync.sync.read_ahead import ReadAhead, fetch_unit
from tests.fixtures.factories import make_secret, make_tenant


def contact_list_requests(hs) -> int:
    return hs.requests_log(entries=0)["by_endpoint"].get("GET /crm/v3/objects/{type}", 0)


@pytest.fixture
def units_of_100(monkeypatch):
    from crmsync.settings import get_settings
    monkeypatch.setenv("CRMSYNC_PAGE_SIZE", "100")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_pull_reads_ahead_without_spending_a_request_more(make, units_of_100):
    world = make(entities=["contacts"], sync_direction="pull")
    world.hs.seed(contacts=450, companies=0, deals=0, tasks=0, notes=0, seed=11)
    before = contact_list_requests(world.hs)
    before_all = world.hs.requests_log(entries=0)["total"]
    job = world.sync(full=True)
    assert job["status"] == "succeeded" and job["contacts_synced"] == 450
    assert len(world.rows()) == 450 and len(world.links()) == 450
    # Five units of 100: five list requests. Had a unit thrown away what was read ahead for it
    # and fetched again, there would be up to nine.
    assert contact_list_requests(world.hs) - before == 5
    # The units read ahead were fetched by a child process; its requests count as the job's.
    assert job["counts"]["requests"] == world.hs.requests_log(entries=0)["total"] - before_all


def test_what_was_read_ahead_serves_only_the_same_step_at_the_same_cursor(world):
    world.hs.seed(contacts=30, companies=0, deals=0, tasks=0, notes=0, seed=12)
    with session_scope(world.db_url) as s:
        adapter = connect(s, s.get(SyncConfig, world.config_id))
    first = adapter.start_cursor("contact", None)
    expected, after = fetch_unit(adapter, "contact", first, 10)
    assert len(expected) == 10 and after is not None

    ahead = ReadAhead()
    ahead.start("step-1", adapter, "contact", first, 10)
    assert ahead.take("step-1", after) is None                  # another cursor: dropped
    ahead.start("step-1", adapter, "contact", first, 10)
    assert ahead.take("step-2", first) is None                  # another step: dropped
    ahead.start("step-1", adapter, "contact", first, 10)
    records, next_cursor = ahead.take("step-1", first)
    assert [r.external_id for r in records] == [r.external_id for r in expected]
    assert next_cursor == after
    assert ahead.take("step-1", first) is None                  # taken once


def _adapter(world):
    with session_scope(world.db_url) as s:
        return connect(s, s.get(SyncConfig, world.config_id))


def test_a_child_process_reads_ahead_when_the_account_budget_allows_it(world):
    # The test world lifts the account's limits ("rate_limits": "none"): nothing a child spends
    # would go uncounted, so the units are read by a forked child, each in turn, to the step's end.
    world.hs.seed(contacts=25, companies=0, deals=0, tasks=0, notes=0, seed=13)
    adapter = _adapter(world)
    assert adapter.rate_budget_shared()
    first = adapter.start_cursor("contact", None)
    expected, after = fetch_unit(adapter, "contact", first, 10)
    rest, end = fetch_unit(adapter, "contact", after, 10)
    sent = adapter.requests_sent()

    ahead = ReadAhead()
    ahead.start("step-1", adapter, "contact", first, 10)
    child = ahead._stream._pid
    assert child not in (None, os.getpid())
    records, cursor = ahead.take("step-1", first)
    assert ([r.external_id for r in records], cursor) == ([r.external_id for r in expected], after)
    ahead.start("step-1", adapter, "contact", after, 10)     # already under way: the same child
    assert ahead._stream._pid == child
    records, cursor = ahead.take("step-1", after)
    assert ([r.external_id for r in records], cursor) == ([r.external_id for r in rest], end)
    assert adapter.requests_sent() - sent == 2                # the child's requests are counted here
    ahead.discard()
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)                        # reaped: no zombie left behind


def test_a_read_ahead_child_that_dies_leaves_the_unit_to_fetch_for_itself(world):
    world.hs.seed(contacts=15, companies=0, deals=0, tasks=0, notes=0, seed=14)
    adapter = _adapter(world)
    first = adapter.start_cursor("contact", None)
    ahead = ReadAhead()
    ahead.start("step-1", adapter, "contact", first, 10)
    os.kill(ahead._stream._pid, signal.SIGKILL)
    assert ahead.take("step-1", first) is None
    # The parent's own connection is untouched by the child: it fetches on as before.
    records, _ = fetch_unit(adapter, "contact", first, 10)
    assert len(records) == 10


def test_a_process_local_budget_reads_ahead_on_a_thread(crmsync_env, db_url, hubspot_sandbox):
    # Limits on and no Redis: the budget lives in this process, where a child's calls would go
    # uncounted, so the next unit is read on a thread.
    hubspot_sandbox.configure(rate_limit=0, search_rate_limit=0, daily_limit=0)
    hubspot_sandbox.seed(contacts=12, companies=0, deals=0, tasks=0, notes=0, seed=15)
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        secret = make_secret(s, {"token": hubspot_sandbox.token})
        cfg = create_config(s, {"tenant_id": tenant.id, "platform": "hubspot", "credentials_vault_id": secret.id,
                                "api_base_url": hubspot_sandbox.base_url,
                                "account_id": str(hubspot_sandbox.app.options.portal_id)})
        adapter = connect(s, cfg)
    assert not adapter.rate_budget_shared()
    first = adapter.start_cursor("contact", None)
    ahead = ReadAhead()
    ahead.start("step-1", adapter, "contact", first, 10)
    assert not hasattr(ahead._stream, "_pid")
    records, cursor = ahead.take("step-1", first)
    assert len(records) == 10 and cursor is not None


def test_a_forked_child_is_refused_the_database(world):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        answer = b"used"
        try:
            forbid_database("a test child")
            with session_scope(world.db_url):
                pass
        except DatabaseForbidden:
            answer = b"refused"
        finally:
            os.write(write_end, answer)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read() == b"refused"
    os.waitpid(pid, 0)

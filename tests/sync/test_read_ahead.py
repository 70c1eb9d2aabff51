"""An inline run fetches the next unit's CRM pages while it writes the current one: the same rows,
and not one request more than fetching in turn."""
from __future__ import annotations

import pytest

from crmsync.db import session_scope
from crmsync.db.models import SyncConfig
from crmsync.sync.connect import connect
from crmsync.sync.jobs import ReadAhead, fetch_unit


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
    job = world.sync(full=True)
    assert job["status"] == "succeeded" and job["contacts_synced"] == 450
    assert len(world.rows()) == 450 and len(world.links()) == 450
    # Five units of 100: five list requests. Had a unit thrown away what was read ahead for it
    # and fetched again, there would be up to nine.
    assert contact_list_requests(world.hs) - before == 5


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

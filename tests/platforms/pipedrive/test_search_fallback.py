"""`find_existing`'s second step: a create that landed longer than `FIND_LOOKBACK` ago is out of reach of
the recent-changes scan and must be found through the v2 search endpoints (real sandbox over HTTP)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.platforms.base import OutboundRecord
from crmsync.platforms.pipedrive.adapter import FIND_LOOKBACK

OBJECTS = {"contact": ("person", "persons"), "company": ("organization", "organizations"), "deal": ("deal", "deals")}


def _backdate(pd_sandbox, obj: str, record_id: str) -> str:
    """Make a record look last changed an hour before the adapter's scan window opens."""
    when = (datetime.now(UTC) - FIND_LOOKBACK - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    row = pd_sandbox.sandbox.edit(obj, record_id, {"_update_time": when})
    assert row["update_time"] == when
    return when


def _searches(pd_sandbox, resource: str) -> list[int]:
    """Statuses of the answers the search endpoint of `resource` gave so far."""
    return [e["status"] for e in pd_sandbox.app.log.entries() if e["endpoint"] == f"GET /api/v2/{resource}/search"]


def _records(org_id: str) -> dict[str, OutboundRecord]:
    return {"contact": OutboundRecord("C31", {"first_name": "Old", "last_name": "Create",
                                              "email": "Old.Create@Example.org"}),
            "company": OutboundRecord("O31", {"name": "Old Create GmbH"}),
            "deal": OutboundRecord("D31", {"name": "Old create deal"}, associations={"company_id": org_id})}


@pytest.mark.parametrize("entity", ["contact", "company", "deal"])
def test_find_existing_finds_an_old_create_through_search(adapter, pd_sandbox, entity):
    obj, resource = OBJECTS[entity]
    record = _records(str(pd_sandbox.rows("organization")[0]["id"]))[entity]
    [made] = adapter.create_many(entity, [record])
    assert made.ok, made.error
    _backdate(pd_sandbox, obj, made.external_id)
    # the scan of the last FIND_LOOKBACK no longer sees it ...
    since = datetime.now(UTC) - FIND_LOOKBACK
    recent = adapter.client.list_records(obj, updated_since=since, limit=500).items
    assert made.external_id not in {str(r["id"]) for r in recent}
    # ... so the search endpoint is what finds it
    before = _searches(pd_sandbox, resource)
    assert adapter.find_existing(entity, record) == made.external_id
    assert _searches(pd_sandbox, resource) == [*before, 200]


def test_find_existing_search_fallback_without_a_match_is_none(adapter, pd_sandbox):
    org_id = str(pd_sandbox.rows("organization")[0]["id"])
    for entity, record in _records(org_id).items():
        resource = OBJECTS[entity][1]
        before = _searches(pd_sandbox, resource)
        assert adapter.find_existing(entity, record) is None
        assert _searches(pd_sandbox, resource) == [*before, 200]  # the fallback searched and found nothing


def test_search_fallback_confirms_candidates_on_the_full_record(adapter, pd_sandbox):
    orgs = pd_sandbox.rows("organization")
    record = OutboundRecord("D32", {"name": "Twin title"}, associations={"company_id": str(orgs[0]["id"])})
    [made] = adapter.create_many("deal", [record])
    assert made.ok, made.error
    _backdate(pd_sandbox, "deal", made.external_id)
    # same title, other organization: the search finds the deal, the confirmation rejects it
    elsewhere = OutboundRecord("D33", {"name": "Twin title"}, associations={"company_id": str(orgs[1]["id"])})
    assert [str(i["id"]) for i in adapter.client.search("deal", "Twin title", fields="title")] == [made.external_id]
    assert adapter.find_existing("deal", elsewhere) is None
    assert adapter.find_existing("deal", record) == made.external_id


def test_search_fallback_skips_deleted_records(adapter, pd_sandbox):
    record = _records("0")["contact"]
    [made] = adapter.create_many("contact", [record])
    assert made.ok, made.error
    _backdate(pd_sandbox, "person", made.external_id)
    assert adapter.find_existing("contact", record) == made.external_id
    pd_sandbox.sandbox.delete("person", made.external_id)
    assert adapter.find_existing("contact", record) is None


def test_search_fallback_finds_a_deal_among_many_with_its_title(adapter, pd_sandbox):
    # More same-titled deals than one search page once held: the search is narrowed to the deal's
    # organization, so the lost create is still among the candidates.
    orgs = pd_sandbox.rows("organization")
    others = [OutboundRecord(f"R{n}", {"name": "Renewal"}, associations={"company_id": str(orgs[1 + n % 3]["id"])})
              for n in range(12)]
    mine = OutboundRecord("R-mine", {"name": "Renewal"}, associations={"company_id": str(orgs[0]["id"])})
    made = adapter.create_many("deal", [*others, mine])
    assert all(m.ok for m in made), [m.error for m in made]
    for m in made:
        _backdate(pd_sandbox, "deal", m.external_id)
    assert adapter.find_existing("deal", mine) == made[-1].external_id

"""HubSpotAdapter against the sandbox: incremental listing past the 10,000 search cap, full
listing with associations, get/create/update/archive, deletions, find_existing."""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from crmsync.platforms.base import OutboundRecord
from crmsync.platforms.errors import Conflict, NotFound
from crmsync.platforms.hubspot import mapping as m


def list_all(adapter, entity, since, page_size=200):
    cursor, seen, requests, pages = adapter.start_cursor(entity, since), [], 0, 0
    while cursor is not None:
        page = adapter.list_changed(entity, cursor, page_size)
        seen.extend(page.records)
        requests += page.requests
        pages += 1
        cursor = page.cursor
        assert pages < 10_000
    return seen, requests


def shared_stamp(state, type_name="contacts") -> datetime:
    with state.lock:
        rec = next(iter(state.records[type_name].values()))
    return datetime.fromtimestamp(rec.updated / 1000, UTC)


def test_12000_contacts_with_one_lastmodifieddate_are_listed_exactly_once(hs):
    hs.app.seed(contacts=12_000, same_modified=12_000)
    since = shared_stamp(hs.state)
    started = time.perf_counter()
    records, requests = list_all(hs.adapter, "contact", since, page_size=200)
    elapsed = time.perf_counter() - started
    ids = [r.external_id for r in records]
    assert len(ids) == 12_000 and len(set(ids)) == 12_000
    counters = hs.app.counters(0)
    assert counters["by_status"].get("400", 0) == 0  # the sandbox answers 400 to any search past 10,000
    searches = sum(v for k, v in counters["by_endpoint"].items() if "search" in k)
    assert searches <= 12_000 // 200 + 5
    assert requests >= searches
    print(f"12,000 same-timestamp contacts: {searches} searches, {requests} requests, {elapsed:.2f}s")


def test_incremental_listing_mixed_timestamps_each_once_oldest_first(hs):
    hs.app.seed(seed=7, contacts=900, same_modified=450, companies=50)
    records, _ = list_all(hs.adapter, "contact", datetime(2000, 1, 1, tzinfo=UTC), page_size=50)
    ids = [r.external_id for r in records]
    assert len(ids) == 900 and len(set(ids)) == 900
    stamps = [r.updated_at for r in records]
    assert stamps == sorted(stamps)
    # associations come from the v4 batch read (search returns none)
    with hs.state.lock:
        truth = {str(rid): hs.state.associations_of("contacts", rid, "companies") for rid in hs.state.records["contacts"]}
    for r in records[:50]:
        expect = truth[r.external_id]
        assert r.associations["company_id"] == (str(min(expect)) if expect else None)


def test_lookback_catches_records_modified_just_before_since(hs):
    made = hs.client.create_object("contacts", {"email": "late@example.com"})
    since = datetime.now(UTC) + timedelta(seconds=30)  # the engine's clock runs ahead of HubSpot's
    records, _ = list_all(hs.adapter, "contact", since)
    assert [r.external_id for r in records] == [made["id"]]
    hs.adapter.lookback = timedelta(0)
    assert list_all(hs.adapter, "contact", since)[0] == []


def test_full_listing_uses_the_list_endpoint_with_associations(hs):
    hs.app.seed(seed=3, contacts=120, companies=30, deals=150)
    records, _ = list_all(hs.adapter, "deal", None, page_size=100)
    assert len(records) == 150
    counters = hs.app.counters(0)["by_endpoint"]
    assert not any("search" in k for k in counters)
    with hs.state.lock:
        for r in records:
            rid = int(r.external_id)
            companies = hs.state.associations_of("deals", rid, "companies")
            contacts = hs.state.associations_of("deals", rid, "contacts")
            assert r.associations["company_id"] == (str(min(companies)) if companies else None)
            assert (r.associations["contact_id"] is None) == (not contacts)
    assert all(r.fields["status"] in ("open", "won", "lost") for r in records)


def test_activities_list_every_engagement_type(hs):
    hs.app.seed(seed=5, contacts=20, notes=30, calls=20, meetings=10, emails=15)
    records, _ = list_all(hs.adapter, "activity", datetime(2000, 1, 1, tzinfo=UTC), page_size=100)
    kinds = sorted({r.external_id.split(":")[0] for r in records})
    assert kinds == ["call", "email", "meeting", "note"] and len(records) == 75
    assert all(r.fields["type"] == r.external_id.split(":")[0] for r in records)
    full, _ = list_all(hs.adapter, "activity", None, page_size=100)
    assert sorted(r.external_id for r in full) == sorted(r.external_id for r in records)
    got = hs.adapter.get_many("activity", [records[0].external_id, records[-1].external_id, "note:99999999"])
    assert sorted(r.external_id for r in got) == sorted([records[0].external_id, records[-1].external_id])


def test_create_update_get_archive_round_trip_with_associations(hs):
    a = hs.adapter
    [company] = a.create_many("company", [OutboundRecord("lc1", {"name": "Acme", "domain": "acme.example",
                                                                  "employee_count": 12,
                                                                  "custom_fields": {"crm_tier": "gold"}})])
    assert company.ok
    contacts = a.create_many("contact", [
        OutboundRecord("l1", {"email": "ada@example.com", "first_name": "Ada", "tags": ["vip"]},
                       associations={"company_id": company.external_id}),
        OutboundRecord("l2", {"email": "bob@example.com", "last_name": "Bob"})])
    assert all(r.ok for r in contacts)
    [deal] = a.create_many("deal", [OutboundRecord("d1", {"name": "Renewal", "amount": 1500.0, "stage": "closedwon",
                                                          "pipeline": "default"},
                                                   associations={"contact_id": contacts[0].external_id,
                                                                 "company_id": company.external_id})])
    assert deal.ok and deal.record.fields["amount"] == 1500.0
    [got] = a.get_many("deal", [deal.external_id])
    assert got.associations == {"company_id": company.external_id, "contact_id": contacts[0].external_id}
    assert got.fields["status"] == "won"
    [c] = a.get_many("company", [company.external_id])
    assert c.fields["employee_count"] == 12 and c.fields["custom_fields"]["crm_tier"] == "gold"
    # move the deal to the other contact, change a field
    [upd] = a.update_many("deal", [OutboundRecord("d1", {"amount": 99.5}, external_id=deal.external_id,
                                                  associations={"contact_id": contacts[1].external_id})])
    assert upd.ok and upd.record.associations["contact_id"] == contacts[1].external_id
    [got] = a.get_many("deal", [deal.external_id])
    assert got.fields["amount"] == 99.5 and got.associations["contact_id"] == contacts[1].external_id
    # activities and tasks
    made = a.create_many("activity", [
        OutboundRecord("n1", {"type": "note", "body": "hi", "occurred_at": datetime(2025, 1, 1, tzinfo=UTC)},
                       associations={"contact_id": contacts[0].external_id}),
        OutboundRecord("c1", {"type": "call", "subject": "Intro", "duration_minutes": 5,
                              "occurred_at": datetime(2025, 1, 2, tzinfo=UTC)})])
    assert [r.external_id.split(":")[0] for r in made] == ["note", "call"] and all(r.ok for r in made)
    [task] = a.create_many("task", [OutboundRecord("t1", {"title": "Follow up", "status": "not_started",
                                                          "priority": "high",
                                                          "due_date": datetime(2025, 2, 1, tzinfo=UTC)},
                                                   associations={"deal_id": deal.external_id})])
    [t] = a.get_many("task", [task.external_id])
    assert (t.fields["status"], t.fields["priority"], t.associations["deal_id"]) == ("not_started", "high",
                                                                                     deal.external_id)
    [call] = a.get_many("activity", [made[1].external_id])
    assert call.fields["duration_minutes"] == 5
    # archive: the record is gone from reads
    assert all(r.ok for r in a.archive_many("contact", [contacts[1].external_id]))
    assert a.get_many("contact", [contacts[1].external_id]) == []


def test_moving_associations_in_one_batch_keeps_the_good_pairs_and_reports_the_bad(hs):
    a = hs.adapter
    ada, bob, cy = (hs.client.create_object("contacts", {"email": f"{n}@example.com"})["id"] for n in ("ada", "bob", "cy"))
    deals = a.create_many("deal", [OutboundRecord(f"d{i}", {"name": f"Deal {i}", "pipeline": "default"},
                                                  associations={"contact_id": ada}) for i in range(3)])
    hs.client.request("POST", "/crm/v3/objects/contacts/gdpr-delete", json={"objectId": cy})  # gone for good
    before = hs.app.counters(0)["total"]
    out = a.update_many("deal", [
        OutboundRecord("d0", {"amount": 1.0}, external_id=deals[0].external_id, associations={"contact_id": bob}),
        OutboundRecord("d1", {"amount": 2.0}, external_id=deals[1].external_id, associations={"contact_id": cy}),
        OutboundRecord("d2", {"amount": 3.0}, external_id=deals[2].external_id, associations={"contact_id": None})])
    # batch update, association reads (company, contact), one batch/create for both adds and one
    # batch/archive for both drops
    assert hs.app.counters(0)["total"] - before == 5
    assert all(r.ok for r in out)
    assert (out[0].association_errors, out[2].association_errors) == ({}, {})
    err = out[1].association_errors["contact_id"]
    assert isinstance(err, NotFound) and cy in str(err)
    # the refused move keeps the old contact, the others moved, and every record's fields were written
    assert [r.record.associations["contact_id"] for r in out] == [bob, ada, None]
    got = {r.external_id: r for r in a.get_many("deal", [d.external_id for d in deals])}
    assert [got[d.external_id].associations["contact_id"] for d in deals] == [bob, ada, None]
    assert [got[d.external_id].fields["amount"] for d in deals] == [1.0, 2.0, 3.0]


def test_create_conflict_is_a_per_record_error_with_the_existing_id(hs):
    first = hs.client.create_object("contacts", {"email": "dup@example.com"})
    out = hs.adapter.create_many("contact", [OutboundRecord("x", {"email": "dup@example.com"}),
                                             OutboundRecord("y", {"email": "y@example.com"})])
    assert isinstance(out[0].error, Conflict) and out[0].external_id == first["id"]
    assert out[1].ok


def test_find_existing(hs):
    a = hs.adapter
    c = hs.client.create_object("contacts", {"email": "found@example.com"})
    co = hs.client.create_object("companies", {"name": "Found Inc", "domain": "found.example"})
    d = hs.client.create_object("deals", {"dealname": "Found deal", "dealstage": "qualifiedtobuy", "pipeline": "default"})
    assert a.find_existing("contact", OutboundRecord("l", {"email": "found@example.com"})) == c["id"]
    assert a.find_existing("contact", OutboundRecord("l", {"email": "nobody@example.com"})) is None
    assert a.find_existing("company", OutboundRecord("l", {"domain": "found.example", "name": "X"})) == co["id"]
    assert a.find_existing("deal", OutboundRecord("l", {"name": "Found deal", "pipeline": "default"})) == d["id"]
    assert a.find_existing("deal", OutboundRecord("l", {"name": "Other"})) is None


def test_account_id_and_metadata(hs):
    assert hs.adapter.account_id() == str(hs.app.options.portal_id)
    assert "crm_tier" in hs.adapter.properties("contacts")
    assert hs.adapter.pipelines()[0]["id"] == "default"
    calls = hs.app.counters(0)["total"]
    hs.adapter.properties("contacts")
    assert hs.app.counters(0)["total"] == calls  # cached
    assert m.modified_property("contacts") == "lastmodifieddate"


def test_ensure_marker_property_then_creates_are_found_by_it(hs):
    a = hs.adapter
    stale = type(a)(credentials={"token": hs.token}, base_url=hs.base_url)
    assert "crmsync_id" not in stale.properties("contacts")       # cached before the property exists
    assert a.ensure_marker_property("contacts") == "created"
    prop = hs.client.get_properties("contacts")
    assert next(p for p in prop if p["name"] == "crmsync_id")["groupName"] == "contactinformation"
    calls = hs.app.counters(0)["total"]
    assert a.ensure_marker_property("contacts") == "present"         # already there: nothing sent
    assert hs.app.counters(0)["total"] == calls + 1               # only the property list, re-read once
    assert stale.ensure_marker_property("contacts") == "present"     # its POST gets 409: the property exists
    [made] = a.create_many("contact", [OutboundRecord("local-7", {"email": "marked@example.com"})])
    assert hs.state.records["contacts"][int(made.external_id)].props["crmsync_id"] == "local-7"
    # a retried create with no email to go by is found by the marker
    assert a.find_existing("contact", OutboundRecord("local-7", {"first_name": "X"})) == made.external_id
    stale.client.close()


def test_a_first_create_adds_the_marker_and_a_refusal_is_not_asked_again(hs):
    """A config made before `configs create` added the marker gets it at its first create."""
    def property_posts():
        return hs.app.counters(0)["by_endpoint"].get("POST /crm/v3/properties/{type}", 0)

    hs.app.configure(schema_write=False)
    for n in (1, 2):
        [made] = hs.adapter.create_many("company", [OutboundRecord(f"local-c{n}", {"name": f"Co {n}"})])
        assert made.ok and "crmsync_id" not in hs.state.records["companies"][int(made.external_id)].props
    assert property_posts() == 1                                  # refused once, remembered
    hs.app.configure(schema_write=True)
    fresh = type(hs.adapter)(credentials={"token": hs.token}, base_url=hs.base_url)
    [made] = fresh.create_many("contact", [OutboundRecord("local-9", {"email": "late@example.com"})])
    assert hs.state.records["contacts"][int(made.external_id)].props["crmsync_id"] == "local-9"
    assert fresh.ensure_markers(["contact", "company", "activity"]) == {"contacts": "present", "companies": "created"}
    fresh.client.close()

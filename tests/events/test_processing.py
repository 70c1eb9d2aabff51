"""process_event against the HubSpot sandbox: the event is received through the app, processing fetches
the record's current state and runs the merge path; duplicates, stale and out-of-order events are
harmless; deletions are confirmed by the fetch; bursts for one record cost one fetch."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import Contact, WebhookEvent
from crmsync.events.processing import process_event
from tests.fixtures.factories import make_secret
from tests.fixtures.ingest import hubspot_event, hubspot_headers, hubspot_portal

URI = "http://localhost/webhooks/hubspot"


@pytest.fixture
def hs(ingest_env, hubspot_sandbox, db_url):
    with session_scope(db_url) as s:
        creds = make_secret(s, {"token": hubspot_sandbox.token})
        return hubspot_portal(s, portal_id=str(hubspot_sandbox.app.options.portal_id),
                                credentials_vault_id=creds.id, api_base_url=hubspot_sandbox.base_url,
                                entities=["contacts", "companies"])


@pytest.fixture
def deliver(ingest_client, ingest_queue):
    def post(portal, *events):
        ingest_queue.clear()
        body = json.dumps(list(events)).encode()
        res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, portal.secret))
        assert res.status_code == 200, res.json
        assert ingest_queue.run("crmsync.events.split") == [res.json["deliveries"]]
        return [args[0] for _, args in ingest_queue.tasks()]
    return post


def _process(db_url, event_id):
    with session_scope(db_url) as s:
        process_event(s, event_id)
    with session_scope(db_url) as s:
        return s.get(WebhookEvent, event_id)


def _outcomes(db_url, external_id) -> dict[str, int]:
    with session_scope(db_url) as s:
        out: dict[str, int] = {}
        for e in s.scalars(select(WebhookEvent).where(WebhookEvent.external_id == str(external_id))):
            out[e.outcome] = out.get(e.outcome, 0) + 1
        return out


def _contacts(db_url, tenant_id):
    with session_scope(db_url) as s:
        return s.scalars(select(Contact).where(Contact.tenant_id == tenant_id)).all()


def _create_contact(sandbox, **props) -> str:
    res = sandbox.api("POST", "/crm/v3/objects/contacts", json={"properties": props})
    assert res.status_code == 201, res.text
    return res.json()["id"]


def test_creation_update_and_deletion_flow_through_the_merge_path(hs, hubspot_sandbox, deliver, db_url):
    cid = _create_contact(hubspot_sandbox, email="ada@example.org", firstname="Ada")
    [created] = deliver(hs, hubspot_event(hs.account_id, int(cid), subscription="contact.creation"))
    event = _process(db_url, created)
    assert (event.processed, event.outcome) == (True, "applied")
    [row] = _contacts(db_url, hs.tenant.id)
    assert (row.email, row.first_name) == ("ada@example.org", "Ada")

    # Processing again (a redelivered message) changes nothing.
    assert _process(db_url, created).outcome == "applied"

    # A burst of property changes in one delivery: one task, one fetch, every event applied.
    hubspot_sandbox.edit("contacts", cid, {"firstname": "Ada L.", "lastname": "Lovelace"})
    [leader] = deliver(hs, *[hubspot_event(hs.account_id, int(cid), propertyName=p)
                             for p in ("firstname", "lastname")])
    assert _process(db_url, leader).outcome == "applied"
    assert _outcomes(db_url, cid) == {"applied": 3}  # the creation's and the two changes'
    [row] = _contacts(db_url, hs.tenant.id)
    assert (row.first_name, row.last_name) == ("Ada L.", "Lovelace")
    # ... and in separate deliveries: the first task takes every pending event of the config; the
    # second delivery's task then finds its event done.
    hubspot_sandbox.edit("contacts", cid, {"jobtitle": "Countess"})
    [first] = deliver(hs, hubspot_event(hs.account_id, int(cid), propertyName="jobtitle"))
    [second] = deliver(hs, hubspot_event(hs.account_id, int(cid), propertyName="jobtitle"))
    assert _process(db_url, first).outcome == "applied"
    before = hubspot_sandbox.requests_log(0)["total"]
    assert _process(db_url, second).outcome == "applied"   # by the first task, with the same fetch
    assert hubspot_sandbox.requests_log(0)["total"] == before
    assert _contacts(db_url, hs.tenant.id)[0].job_title == "Countess"

    # An old event arriving late reads the current state: nothing goes back.
    [late] = deliver(hs, hubspot_event(hs.account_id, int(cid), occurred_at=1_600_000_000_000))
    assert _process(db_url, late).outcome == "unchanged"
    assert _contacts(db_url, hs.tenant.id)[0].first_name == "Ada L."

    # A deletion event while the record still exists (restored since) deletes nothing.
    [early_delete] = deliver(hs, hubspot_event(hs.account_id, int(cid), subscription="contact.deletion"))
    assert _process(db_url, early_delete).outcome == "unchanged"
    assert _contacts(db_url, hs.tenant.id)[0].deleted_at is None

    hubspot_sandbox.delete("contacts", cid)
    [deleted] = deliver(hs, hubspot_event(hs.account_id, int(cid), subscription="contact.deletion"))
    assert _process(db_url, deleted).outcome == "deleted"
    assert _contacts(db_url, hs.tenant.id)[0].deleted_at is not None

    # A change event for a record gone since: nothing to apply.
    [gone] = deliver(hs, hubspot_event(hs.account_id, int(cid)))
    assert _process(db_url, gone).outcome == "missing"


def test_events_for_objects_or_directions_not_synced_are_ignored(hs, deliver, db_url):
    [leader] = deliver(hs, hubspot_event(hs.account_id, 5, subscription="deal.creation"),
                       hubspot_event(hs.account_id, 6, subscription="ticket.creation"))
    _process(db_url, leader)
    assert _outcomes(db_url, 5) == {"ignored": 1} and _outcomes(db_url, 6) == {"ignored": 1}
    with session_scope(db_url) as s:
        s.get(type(hs.config), hs.config.id).enabled = False
    [off] = deliver(hs, hubspot_event(hs.account_id, 7, subscription="contact.creation"))
    event = _process(db_url, off)
    assert event.outcome == "ignored" and event.error == "the config is disabled"


def test_one_tenants_event_never_touches_another_tenants_rows(hs, hubspot_sandbox, deliver, db_url):
    with session_scope(db_url) as s:
        other = hubspot_portal(s)
        s.add(Contact(tenant_id=other.tenant.id, email="ada@example.org", first_name="Other"))
    cid = _create_contact(hubspot_sandbox, email="ada@example.org", firstname="Ada")
    [created] = deliver(hs, hubspot_event(hs.account_id, int(cid), subscription="contact.creation"))
    assert _process(db_url, created).outcome == "applied"
    [theirs] = _contacts(db_url, other.tenant.id)
    assert (theirs.first_name, theirs.deleted_at) == ("Other", None)
    assert [c.first_name for c in _contacts(db_url, hs.tenant.id)] == ["Ada"]


def test_product_events_are_handed_to_automation(ingest_env, ingest_client, ingest_queue, db_url):
    from crmsync.credentials import create_api_key
    from tests.fixtures.factories import make_tenant
    with session_scope(db_url) as s:
        _, key = create_api_key(s, make_tenant(s).id)
    res = ingest_client.post("/events/email_replied", json={"sender_email": "ada@example.org"},
                             headers={"Authorization": f"Bearer {key}"})
    assert res.status_code == 202
    ingest_queue.clear()
    event = _process(db_url, res.json["id"])  # as the outbox sweeper's re-enqueue would run it
    assert event.processed is False
    assert ingest_queue.tasks() == [("crmsync.automation.run", [res.json["id"]])]


def test_a_100_event_delivery_is_one_task_and_one_batch_read(hs, hubspot_sandbox, deliver, db_url):
    res = hubspot_sandbox.api("POST", "/crm/v3/objects/contacts/batch/create", json={"inputs": [
        {"properties": {"email": f"p{i}@example.org", "firstname": f"P{i}"}} for i in range(100)]})
    assert res.status_code == 201, res.text
    ids = [r["id"] for r in res.json()["results"]]
    before = hubspot_sandbox.requests_log(0)["total"]
    [leader] = deliver(hs, *[hubspot_event(hs.account_id, int(i), subscription="contact.creation") for i in ids])
    _process(db_url, leader)
    assert len(_contacts(db_url, hs.tenant.id)) == 100
    with session_scope(db_url) as s:
        outcomes = s.execute(select(WebhookEvent.outcome).where(WebhookEvent.tenant_id == hs.tenant.id)).scalars()
        assert set(outcomes) == {"applied"}
    # One batch read of the 100 (plus what connecting costs), not 100 reads.
    assert hubspot_sandbox.requests_log(0)["total"] - before <= 3


def test_a_permanent_error_fails_the_whole_group_with_its_reason(hs, hubspot_sandbox, deliver, db_url):
    from crmsync.credentials import Vault
    with session_scope(db_url) as s:
        Vault().replace(s, hs.config.credentials_vault_id, {"token": "revoked-token"}, tenant_id=hs.config.tenant_id)
    [leader] = deliver(hs, hubspot_event(hs.account_id, 1), hubspot_event(hs.account_id, 2))
    _process(db_url, leader)
    with session_scope(db_url) as s:
        events = s.scalars(select(WebhookEvent)).all()
    assert [(e.processed, e.outcome) for e in events] == [(True, "failed")] * 2
    assert all(e.error.startswith("AuthenticationError") and "revoked-token" not in e.error for e in events)


def test_an_event_of_a_record_our_columns_cannot_hold_fails_with_why(hs, hubspot_sandbox, deliver, db_url):
    """Not "unchanged" (nothing would tell it from a no-op): failed, with the reason and no value, so
    it shows among the failed events; the other events of the delivery apply."""
    bad = _create_contact(hubspot_sandbox, email="bad@example.org", firstname="x" * 300)
    good = _create_contact(hubspot_sandbox, email="good@example.org", firstname="Grace")
    [leader] = deliver(hs, *[hubspot_event(hs.account_id, int(i), subscription="contact.creation")
                             for i in (bad, good)])
    _process(db_url, leader)
    with session_scope(db_url) as s:
        events = {e.external_id: e for e in s.scalars(select(WebhookEvent).where(
            WebhookEvent.external_id.in_([bad, good])))}
        assert (events[bad].outcome, events[good].outcome) == ("failed", "applied")
        assert events[bad].error == "not stored: first_name has 300 characters, more than the 200 stored here"
    assert [c.email for c in _contacts(db_url, hs.tenant.id)] == ["good@example.org"]


def test_the_failure_hook_fails_the_leaders_whole_group(hs, hubspot_sandbox, deliver, db_url):
    """The runner gave up on a leader (retries spent, or its runs died with their worker): its task
    ran the whole group, so the group fails alike, as a permanent error fails it, instead of the
    others coming back from the sweeper one by one to fail, or kill a worker, again."""
    from crmsync.events.processing import fail_event
    ids = [_create_contact(hubspot_sandbox, email=f"p{n}@example.org") for n in range(3)]
    [leader] = deliver(hs, *[hubspot_event(hs.account_id, int(i), subscription="contact.creation") for i in ids])
    with session_scope(db_url) as s:
        fail_event(s, leader, "WorkerLost: its worker process died 3 times while running it")
    with session_scope(db_url) as s:
        events = s.scalars(select(WebhookEvent).where(WebhookEvent.external_id.in_(ids))).all()
        assert len(events) == 3
        assert {(e.processed, e.outcome, e.error) for e in events} == {
            (True, "failed", "WorkerLost: its worker process died 3 times while running it")}

"""POST /events/<type>: a tenant's API key, a marshmallow-validated body, an optional Idempotency-Key;
stored as a product event and handed to automation."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crmsync.credentials import create_api_key
from crmsync.db import session_scope
from crmsync.db.models import WebhookEvent
from tests.fixtures.factories import make_tenant


@pytest.fixture
def tenant_key(ingest_env, db_url):
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        _, key = create_api_key(s, tenant.id)
    return tenant.id, key


def _post(client, event_type, doc, key, **headers):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(f"/events/{event_type}", data=body,
                       headers={"Content-Type": "application/json", **auth, **headers})


def _rows(db_url):
    with session_scope(db_url) as s:
        return s.scalars(select(WebhookEvent)).all()


def test_valid_events_are_stored_for_the_keys_tenant_and_handed_to_automation(
        tenant_key, ingest_client, ingest_queue, db_url):
    tenant_id, key = tenant_key
    res = _post(ingest_client, "email_replied", {"sender_email": "Ada@Example.org", "subject": "Re: offer",
                                                 "sender_name": "Ada Lovelace",
                                                 "received_at": "2025-03-01T10:00:00+01:00"}, key)
    assert res.status_code == 202, res.json
    res2 = _post(ingest_client, "meeting_scheduled", {"contact_email": "bo@example.org", "contact_name": "Bo Li",
                                                      "meeting_date": "2025-03-02T09:30:00Z", "deal_id": "d-1",
                                                      "properties": {"source": "calendly"}}, key)
    assert res2.status_code == 202, res2.json
    rows = {r.id: r for r in _rows(db_url)}
    replied = rows[res.json["id"]]
    assert (replied.platform, replied.account_id, replied.tenant_id, replied.event_type, replied.config_id) == (
        "product", tenant_id, tenant_id, "email_replied", None)
    assert replied.payload["sender_email"] == "ada@example.org"
    assert replied.payload["received_at"].startswith("2025-03-01T10:00:00")
    assert rows[res2.json["id"]].payload["properties"] == {"source": "calendly"}
    # the names rules show as {contact_name} (crmsync.automation.context) are kept at the top level
    assert (replied.payload["sender_name"], rows[res2.json["id"]].payload["contact_name"]) == ("Ada Lovelace", "Bo Li")
    assert sorted(ingest_queue.tasks("events")) == sorted(
        [("crmsync.automation.run", [res.json["id"]]), ("crmsync.automation.run", [res2.json["id"]])])


def test_idempotency_key_stores_once(tenant_key, ingest_client, ingest_queue, db_url):
    _, key = tenant_key
    doc = {"sender_email": "ada@example.org"}
    first = _post(ingest_client, "email_replied", doc, key, **{"Idempotency-Key": "msg-123"})
    again = _post(ingest_client, "email_replied", doc, key, **{"Idempotency-Key": "msg-123"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json == {"id": first.json["id"], "event_type": "email_replied", "duplicate": True}
    assert len(_rows(db_url)) == 1 and len(ingest_queue.tasks()) == 1
    bad = _post(ingest_client, "email_replied", doc, key, **{"Idempotency-Key": "has space"})
    assert bad.status_code == 400 and bad.json["error"] == "bad_idempotency_key"


def test_authentication(tenant_key, ingest_client, db_url):
    doc = {"sender_email": "ada@example.org"}
    for key in [None, "crm_wrong", ""]:
        res = _post(ingest_client, "email_replied", doc, key)
        assert res.status_code == 401 and res.json["error"] == "unauthenticated", key
    res = ingest_client.post("/events/email_replied", data=json.dumps(doc),
                             headers={"Content-Type": "application/json", "Authorization": "Basic abc"})
    assert res.status_code == 401
    # An unknown type is only revealed to a caller with a valid key.
    assert _post(ingest_client, "nope", doc, "crm_wrong").status_code == 401
    assert _post(ingest_client, "nope", doc, tenant_key[1]).status_code == 404
    assert _rows(db_url) == []


def test_validation(tenant_key, ingest_client, db_url):
    _, key = tenant_key
    cases = [
        ("email_replied", {}, "sender_email"),
        ("email_replied", {"sender_email": "not-an-email"}, "sender_email"),
        ("email_replied", {"sender_email": "a@b.org", "colour": "red"}, "colour"),
        ("email_replied", {"sender_email": "a@b.org", "received_at": "yesterday"}, "received_at"),
        ("email_replied", {"sender_email": "a@b.org", "received_at": "2025-01-01T00:00:00"}, "received_at"),
        ("meeting_scheduled", {"contact_email": "a@b.org"}, "meeting_date"),
        ("meeting_scheduled", {"meeting_date": "2025-01-01T00:00:00Z"}, "contact_email"),
        ("meeting_scheduled", {"contact_email": "a@b.org", "meeting_date": "2025-01-01T00:00:00Z",
                               "duration_minutes": -5}, "duration_minutes"),
        # the document says integer: 2.5e-42 was truncated to 0 and accepted
        ("meeting_scheduled", {"contact_email": "a@b.org", "meeting_date": "2025-01-01T00:00:00Z",
                               "duration_minutes": 2.5e-42}, "duration_minutes"),
        ("meeting_scheduled", {"contact_email": "a@b.org", "meeting_date": "2025-01-01T00:00:00Z",
                               "duration_minutes": True}, "duration_minutes"),
        ("email_replied", [], "_schema"),
        ("email_replied", "text", "_schema"),
    ]
    for event_type, doc, field in cases:
        res = _post(ingest_client, event_type, doc, key)
        assert res.status_code == 422, (doc, res.json)
        assert res.json["error"] == "invalid_event" and field in res.json["details"], (doc, res.json)
    assert _post(ingest_client, "email_replied", b"{nope", key).status_code == 400
    assert _post(ingest_client, "email_replied", b"", key).status_code == 400
    res = ingest_client.post("/events/email_replied", data=b"sender_email=a@b.org",
                             headers={"Authorization": f"Bearer {key}",
                                      "Content-Type": "application/x-www-form-urlencoded"})
    assert res.status_code == 415
    assert _rows(db_url) == []


@pytest.mark.parametrize("event_type,field,value", [
    ("email_replied", "occurred_at", "9999-12-31T23:59:59-12:00"),   # year 10000 once in UTC
    ("email_replied", "received_at", "0001-01-01T00:00:00+01:00"),   # 1 BC once in UTC
    ("meeting_scheduled", "meeting_date", "0000-06-01T00:00:00Z"),   # year 0
    ("email_opened", "opened_at", "9999-12-31T23:59:59-00:01"),
])
def test_instants_outside_the_years_1_to_9999_in_utc_are_refused_naming_the_field(
        event_type, field, value, tenant_key, ingest_client, ingest_queue, db_url):
    # PostgreSQL stored them (202), then no reader could load the row: `webhooks list` failed for
    # every tenant and automation retried the event forever.
    _, key = tenant_key
    required = {"email_replied": {"sender_email": "ada@example.org"}, "email_opened": {"recipient_email": "a@b.org"},
                "meeting_scheduled": {"contact_email": "ada@example.org", "meeting_date": "2025-03-01T10:00:00Z"}}
    res = _post(ingest_client, event_type, {**required[event_type], field: value}, key)
    assert res.status_code == 422 and res.json["error"] == "invalid_event", res.json
    assert list(res.json["details"]) == [field]
    assert _rows(db_url) == [] and ingest_queue.tasks() == []
    # The edge itself is fine.
    res = _post(ingest_client, event_type, {**required[event_type], field: "9999-12-31T23:59:59+00:00"}, key)
    assert res.status_code == 202, res.json
    assert [r.event_type for r in _rows(db_url)] == [event_type]


def test_whole_numbers_and_far_offsets_are_taken_as_the_document_says(tenant_key, ingest_client, ingest_queue,
                                                                      db_url):
    _, key = tenant_key
    res = _post(ingest_client, "meeting_scheduled", {"contact_email": "a@b.org", "duration_minutes": 90.0,
                                                     "meeting_date": "2025-01-01T00:00:00Z",
                                                     "occurred_at": "2025-01-01T23:30:00+23:19"}, key)
    # +23:19 is valid ISO 8601 but beyond PostgreSQL's 15:59: it was a 400 "cannot be stored".
    assert res.status_code == 202, res.json
    [row] = _rows(db_url)
    assert row.payload["duration_minutes"] == 90
    assert row.occurred_at.isoformat() == "2025-01-01T00:11:00+00:00"
    assert len(ingest_queue.tasks()) == 1

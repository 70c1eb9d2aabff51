"""POST /webhooks/pipedrive/<config id>: HTTP Basic auth against the config's webhook secret; v2 and v1
payloads; stored whole, then split into one row per event, deduplicated; the company must be the config's."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from crmsync.db import session_scope
from crmsync.db.models import WebhookDelivery, WebhookEvent
from tests.fixtures.ingest import basic_auth, hubspot_portal, pipedrive_account


@pytest.fixture
def account(ingest_env, db_url):
    with session_scope(db_url) as s:
        return pipedrive_account(s)


def v2_event(company_id, entity_id="1201", action="change", event_id=None) -> dict:
    return {"meta": {"action": action, "entity": "person", "entity_id": entity_id,
                     "id": event_id or str(uuid.uuid4()), "company_id": str(company_id), "user_id": "55",
                     "timestamp": "2025-02-14T16:40:03.512Z", "type": "general", "version": "2.0",
                     "webhook_id": "91", "change_source": "api", "attempt": 1},
            "data": {"id": int(entity_id), "name": "Liis Tamm", "first_name": "Liis", "last_name": "Tamm",
                     "emails": [{"value": "liis@northwind.test", "primary": True}],
                     "update_time": "2025-02-14T16:40:03Z"},
            "previous": {"name": "Liis Tamme"}}


def v1_event(company_id, object_id=1201) -> dict:
    return {"v": 1, "meta": {"v": 1, "action": "updated", "object": "person", "id": object_id,
                             "company_id": int(company_id), "user_id": 55, "timestamp": 1739550003,
                             "timestamp_micro": 1739550003123456, "webhook_id": "91"},
            "retry": 0, "current": {"id": object_id, "name": "Liis Tamm", "update_time": "2025-02-14 16:40:03"},
            "previous": {"id": object_id, "name": "Liis Tamme"}, "event": "updated.person"}


def _post(client, config_id, doc, credentials, **kw):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = {"Content-Type": "application/json", **(basic_auth(credentials) if credentials else {})}
    return client.post(f"/webhooks/pipedrive/{config_id}", data=body, headers=headers, **kw)


def _rows(db_url):
    with session_scope(db_url) as s:
        return s.scalars(select(WebhookEvent)).all()


def _stored(client, queue, db_url, config_id, doc, credentials) -> int:
    """POST, then split the delivery as a worker does: how many new events it stored."""
    before = len(_rows(db_url))
    res = _post(client, config_id, doc, credentials)
    assert res.status_code == 200 and res.json["received"] == 1, res.json
    assert queue.run("crmsync.events.split") == [res.json["deliveries"]]
    return len(_rows(db_url)) - before


def test_v2_and_v1_payloads_with_basic_auth_are_stored_and_enqueued(account, ingest_client, ingest_queue, db_url):
    for doc in (v2_event(account.account_id, "1201"), v1_event(account.account_id, 1202)):
        assert _stored(ingest_client, ingest_queue, db_url, account.config.id, doc, account.secret) == 1
    rows = _rows(db_url)
    assert {(r.external_id, r.entity_type, r.event_type) for r in rows} == {
        ("1201", "contact", "contact.updated"), ("1202", "contact", "contact.updated")}
    assert {(r.tenant_id, r.config_id, r.platform, r.account_id) for r in rows} == {
        (account.tenant.id, account.config.id, "pipedrive", account.account_id)}
    assert sorted(ingest_queue.tasks("events")) == sorted(("crmsync.events.process", [r.id]) for r in rows)


def test_a_resent_event_is_stored_once(account, ingest_client, ingest_queue, db_url):
    def stored(doc) -> int:
        return _stored(ingest_client, ingest_queue, db_url, account.config.id, doc, account.secret)
    doc = v2_event(account.account_id, event_id="6f1c2a9e-3b7d-4c11-9a0e-2f5b8c7d1e40")
    assert stored(doc) == 1
    doc["meta"]["attempt"] = 2
    assert stored(doc) == 0
    v1 = v1_event(account.account_id)
    assert stored(v1) == 1
    assert stored({**v1, "retry": 1}) == 0
    assert len(_rows(db_url)) == 2 and len(ingest_queue.tasks()) == 2


def test_v1_events_naming_no_time_are_told_apart_and_their_resends_are_not(account, ingest_client, ingest_queue,
                                                                           db_url):
    """A v1 body may carry no timestamp at all (nor an update_time in its record): each change of
    the record is still its own event, while a resend of one (only `retry` differs) is not."""
    def stored(doc) -> int:
        return _stored(ingest_client, ingest_queue, db_url, account.config.id, doc, account.secret)

    def untimed(name: str) -> dict:
        doc = v1_event(account.account_id)
        for key in ("timestamp", "timestamp_micro"):
            del doc["meta"][key]
        doc["current"] = {"id": 1201, "name": name}
        return doc
    assert stored(untimed("Liis Tamm")) == 1
    assert stored(untimed("Liis Tamm-Kask")) == 1           # a later change of the same person
    assert stored({**untimed("Liis Tamm-Kask"), "retry": 1}) == 0
    keys = [r.event_key for r in _rows(db_url)]
    assert len(set(keys)) == 2 and not [k for k in keys if k.endswith(":None")], keys


def test_wrong_or_missing_credentials_are_401(account, ingest_client, ingest_queue, db_url):
    user, password = account.secret.split(":")
    doc = v2_event(account.account_id)
    for credentials in [None, f"{user}:{password}x", f"{user}x:{password}", f"{user}:", password, ""]:
        res = _post(ingest_client, account.config.id, doc, credentials)
        assert res.status_code == 401, credentials
        assert res.json["error"] == "signature_rejected"
    for header in ["Bearer abc", "Basic !!!notbase64", "Basic", "Digest x"]:
        res = ingest_client.post(f"/webhooks/pipedrive/{account.config.id}", data=json.dumps(doc),
                                 headers={"Content-Type": "application/json", "Authorization": header})
        assert res.status_code == 401, header
    assert _rows(db_url) == [] and ingest_queue.tasks() == []


def test_an_id_that_names_no_pipedrive_config_is_answered_as_a_wrong_secret(account, ingest_client, db_url):
    # A different answer (404 here, 401 there) would let anyone probe which config ids exist.
    with session_scope(db_url) as s:
        hubspot_config_id = hubspot_portal(s).config.id
    wrong = _post(ingest_client, account.config.id, v2_event(account.account_id), "pd-hook:not-the-password")
    assert wrong.status_code == 401
    for config_id in [str(uuid.uuid4()), "not-a-uuid", hubspot_config_id]:
        res = _post(ingest_client, config_id, v2_event(account.account_id), account.secret)
        assert (res.status_code, res.json) == (wrong.status_code, wrong.json), config_id
    assert _rows(db_url) == []


def test_another_companys_event_is_refused(account, ingest_client, db_url):
    res = _post(ingest_client, account.config.id, v2_event("99999999"), account.secret)
    assert res.status_code == 403 and res.json["error"] == "account_mismatch"
    assert _rows(db_url) == []


def test_bad_bodies_are_4xx_after_auth(account, ingest_client, db_url):
    for body in [b"", b"{", b"[]", b"{}", b'{"meta": {"version": "2.0"}}', b'{"event": "x"}',
                 b'{"meta": {"version": "2.0"}, "data": {"value": 1e999}}', b'{"meta": NaN}']:
        res = _post(ingest_client, account.config.id, body, account.secret)
        assert res.status_code == 400 and res.json["error"] == "malformed_body", body
    res = ingest_client.post(f"/webhooks/pipedrive/{account.config.id}", data=b"x=1",
                             headers={"Content-Type": "application/x-www-form-urlencoded",
                                      **basic_auth(account.secret)})
    assert res.status_code == 415
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 0
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 0

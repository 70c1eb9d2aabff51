"""POST /webhooks/salesforce/<config id>: Outbound Messages (SOAP) as the Salesforce sandbox renders
them; answered with the Ack, stored whole, split into one event per notification (deduplicated by
notification id), the org id checked, hostile XML refused; processing re-reads the record."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import Contact, WebhookDelivery, WebhookEvent
from crmsync.events.processing import process_event
from tests.fixtures.factories import make_config, make_secret, make_tenant

XML = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
TOKEN = "om-token-123"   # the config's webhook secret, on the endpoint URL set in Salesforce's Setup


def url(config_id: str, token: str | None = TOKEN) -> str:
    return f"/webhooks/salesforce/{config_id}" + (f"?token={token}" if token is not None else "")


@pytest.fixture
def org(ingest_env, db_url, salesforce_sandbox):
    app = salesforce_sandbox.app
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        creds = make_secret(s, {"client_id": app.options.client_id, "client_secret": app.options.client_secret,
                                "refresh_token": app.options.refresh_token}, platform="salesforce")
        hook = make_secret(s, {"secret": TOKEN}, platform="webhook", tenant_id=tenant.id)
        config = make_config(s, tenant, platform="salesforce", account_id=app.options.org_id,
                             credentials_vault_id=creds.id, api_base_url=salesforce_sandbox.base_url,
                             entities=["contacts", "companies"], webhook_secret_vault_id=hook.id)
        return config.id, tenant.id


def message(sandbox, obj: str, ids: list[str]) -> bytes:
    """An Outbound Message exactly as the sandbox sends it (fresh notification ids)."""
    import itertools
    counter = itertools.count(len(sandbox.app.state.records[obj]) * 1000)
    from crmsync.sandbox.salesforce.values import make_id
    return sandbox.app.outbound.envelope(obj, [{"id": i, "notification": make_id("04l", next(counter))} for i in ids])


def _events(db_url):
    with session_scope(db_url) as s:
        return s.scalars(select(WebhookEvent)).all()


def _deliveries(db_url):
    with session_scope(db_url) as s:
        return s.scalars(select(WebhookDelivery)).all()


def test_a_message_is_acknowledged_stored_and_split_per_notification(org, salesforce_sandbox, ingest_client,
                                                                     ingest_queue, db_url):
    config_id, tenant_id = org
    ids = [c["Id"] for c in salesforce_sandbox.records("Contact")[:3]]
    body = message(salesforce_sandbox, "Contact", ids)
    res = ingest_client.post(url(config_id), data=body, headers=XML)
    assert res.status_code == 200 and res.mimetype == "text/xml"
    assert b"<Ack>true</Ack>" in res.data
    [delivery] = ingest_queue.run("crmsync.events.split")
    assert len(delivery) == 1
    rows = _events(db_url)
    assert sorted(r.external_id for r in rows) == sorted(ids)
    assert {(r.platform, r.entity_type, r.event_type, r.tenant_id) for r in rows} == {
        ("salesforce", "contact", "contact.updated", tenant_id)}
    assert all(r.event_key.startswith("04l") for r in rows)
    again = ingest_client.post(url(config_id), data=body, headers=XML)   # a retry
    assert again.status_code == 200
    ingest_queue.run("crmsync.events.split")
    assert len(_events(db_url)) == 3 and _deliveries(db_url) == []


def test_processing_reads_the_record_and_applies_it(org, salesforce_sandbox, ingest_client, ingest_queue, db_url):
    config_id, tenant_id = org
    rid = salesforce_sandbox.records("Contact")[0]["Id"]
    salesforce_sandbox.edit("Contact", rid, {"Title": "Chief Webhook Officer"})
    ingest_client.post(url(config_id), data=message(salesforce_sandbox, "Contact", [rid]),
                       headers=XML)
    ingest_queue.run("crmsync.events.split")
    [event] = _events(db_url)
    with session_scope(db_url) as s:
        process_event(s, event.id)
    with session_scope(db_url) as s:
        stored = s.get(WebhookEvent, event.id)
        contact = s.scalars(select(Contact).where(Contact.tenant_id == tenant_id)).one()
        assert (stored.outcome, contact.job_title) == ("applied", "Chief Webhook Officer")


def test_another_orgs_message_is_forbidden_and_nothing_is_stored(org, salesforce_sandbox, ingest_client, db_url):
    config_id, _ = org
    body = message(salesforce_sandbox, "Contact", [salesforce_sandbox.records("Contact")[0]["Id"]])
    forged = body.replace(salesforce_sandbox.app.options.org_id.encode(), b"00DXX0000000001AAA")
    res = ingest_client.post(url(config_id), data=forged, headers=XML)
    assert res.status_code == 403 and res.json["error"] == "account_mismatch"
    assert _deliveries(db_url) == []


@pytest.mark.parametrize("body", [
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&lol2;'
    b"</soapenv:Body></soapenv:Envelope>"),
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>',
    b"<not-soap/>", b"{}", b"",
])
def test_hostile_or_foreign_xml_is_a_400(org, ingest_client, db_url, body):
    config_id, _ = org
    res = ingest_client.post(url(config_id), data=body, headers=XML)
    assert res.status_code == 400 and res.json["error"] == "malformed_body"
    assert _deliveries(db_url) == []


def test_wrong_type_unknown_config_and_the_token(org, salesforce_sandbox, ingest_client, db_url):
    config_id, _ = org
    body = message(salesforce_sandbox, "Account", [salesforce_sandbox.records("Account")[0]["Id"]])
    assert ingest_client.post(url(config_id), data=body, headers={"Content-Type": "application/json"}).status_code == 415
    assert ingest_client.post(url(config_id, None), data=body, headers=XML).status_code == 401
    wrong = ingest_client.post(url(config_id, "wrong"), data=body, headers=XML)
    assert wrong.status_code == 401
    # An id that names no config is answered as a wrong token: nobody can probe which ids exist.
    unknown = ingest_client.post(url("5d0c2a9e-3b7d-4c11-9a0e-2f5b8c7d1e40"), data=body, headers=XML)
    assert (unknown.status_code, unknown.json) == (wrong.status_code, wrong.json)
    assert _deliveries(db_url) == []
    from crmsync.db.models import SyncConfig
    with session_scope(db_url) as s:
        s.get(SyncConfig, config_id).webhook_secret_vault_id = None
    # A config without a webhook secret refuses every message, whatever token it carries.
    assert ingest_client.post(url(config_id), data=body, headers=XML).status_code == 401
    assert _deliveries(db_url) == []

"""Webhook deliveries: payloads, v3 signatures checked with the official SDK, retries, duplicates, order."""
from __future__ import annotations

import json

from hubspot.utils.signature import Signature

from crmsync.sandbox.hubspot.signing import sign_v1


def _setup(sb, receiver, **extra):
    sb.configure(webhook_url=receiver.url, webhook_secret="app-secret", **extra)


def test_api_and_ui_changes_are_delivered_signed(hubspot_sandbox, hubspot_webhook_receiver):
    sb, rx = hubspot_sandbox, hubspot_webhook_receiver
    _setup(sb, rx)
    c = sb.api("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "w@example.com"}}).json()
    sb.edit("contacts", c["id"], {"firstname": "Wes"})
    sb.api("DELETE", f"/crm/v3/objects/contacts/{c['id']}")
    assert sb.flush_webhooks()["drained"]
    assert rx.wait_for(lambda reqs: sum(len(json.loads(r["body"])) for r in reqs) >= 3)
    for req in rx.requests:
        h = req["headers"]
        assert Signature.is_valid(signature=h["x-hubspot-signature-v3"], client_secret="app-secret",
                                  request_body=req["body"].decode(), http_uri=req["url"], http_method="POST",
                                  signature_version="v3", timestamp=h["x-hubspot-request-timestamp"])
        assert h["x-hubspot-signature"] == sign_v1("app-secret", req["body"])
        assert h["x-hubspot-signature-version"] == "v1"
    events = {e["subscriptionType"]: e for e in rx.events()}
    assert set(events) == {"contact.creation", "contact.propertyChange", "contact.deletion"}
    change = events["contact.propertyChange"]
    assert change["propertyName"] == "firstname" and change["propertyValue"] == "Wes"
    assert change["changeSource"] == "CRM_UI" and change["objectId"] == int(c["id"])
    assert events["contact.creation"]["changeSource"] == "API" and events["contact.creation"]["changeFlag"] == "NEW"
    for e in events.values():
        assert e["portalId"] == sb.app.options.portal_id and e["attemptNumber"] == 0
        assert isinstance(e["eventId"], int) and isinstance(e["occurredAt"], int) and e["subscriptionId"]


def test_batches_of_at_most_100(hubspot_sandbox, hubspot_webhook_receiver):
    sb, rx = hubspot_sandbox, hubspot_webhook_receiver
    _setup(sb, rx)
    inputs = [{"properties": {"email": f"n{i}@example.com"}} for i in range(100)]
    sb.api("POST", "/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    sb.api("POST", "/crm/v3/objects/contacts/batch/create",
           json={"inputs": [{"properties": {"email": f"m{i}@example.com"}} for i in range(50)]})
    assert sb.flush_webhooks()["drained"]
    sizes = [len(json.loads(r["body"])) for r in rx.requests]
    assert sum(sizes) == 150 and max(sizes) <= 100


def test_retries_with_increasing_attempt_number(hubspot_sandbox, hubspot_webhook_receiver):
    sb, rx = hubspot_sandbox, hubspot_webhook_receiver
    _setup(sb, rx, webhook_retry_delay=0.01)
    rx.statuses = [500, 503, 404]
    sb.api("POST", "/crm/v3/objects/companies", json={"properties": {"name": "Retry Inc"}})
    assert sb.flush_webhooks()["drained"]
    attempts = [json.loads(r["body"])[0]["attemptNumber"] for r in rx.requests]
    assert attempts == [0, 1, 2, 3]
    stamps = [r["headers"]["x-hubspot-request-timestamp"] for r in rx.requests]
    assert len(set(stamps)) >= 2  # each attempt is signed afresh
    assert rx.events()[0]["subscriptionType"] == "company.creation"


def test_gives_up_after_max_retries(hubspot_sandbox, hubspot_webhook_receiver):
    sb, rx = hubspot_sandbox, hubspot_webhook_receiver
    _setup(sb, rx, webhook_retry_delay=0.005, webhook_max_retries=2)
    rx.status = 500
    sb.api("POST", "/crm/v3/objects/companies", json={"properties": {"name": "Down Inc"}})
    snap = sb.flush_webhooks()
    assert snap["drained"] and snap["counters"]["given_up"] == 1 and len(rx.requests) == 3


def test_duplicates_out_of_order_and_merge(hubspot_sandbox, hubspot_webhook_receiver):
    sb, rx = hubspot_sandbox, hubspot_webhook_receiver
    _setup(sb, rx, webhook_duplicate_rate=1.0, webhook_out_of_order=True, webhook_batch_size=1)
    a = sb.api("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "a@example.com"}}).json()
    b = sb.api("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "b@example.com"}}).json()
    sb.merge("contacts", a["id"], b["id"])
    assert sb.flush_webhooks()["drained"]
    events = rx.events()
    ids = [e["eventId"] for e in events]
    assert len(ids) == 2 * len(set(ids))  # every batch delivered twice
    merge = next(e for e in events if e["subscriptionType"] == "contact.merge")
    assert merge["primaryObjectId"] == int(a["id"]) and merge["mergedObjectIds"] == [int(b["id"])]
    assert any(e["subscriptionType"] == "contact.deletion" and e["objectId"] == int(b["id"]) for e in events)


def test_v2_signature_when_configured(hubspot_sandbox, hubspot_webhook_receiver):
    sb, rx = hubspot_sandbox, hubspot_webhook_receiver
    _setup(sb, rx, signature_version="v2")
    sb.api("POST", "/crm/v3/objects/deals", json={"properties": {"dealname": "D", "pipeline": "default",
                                                                  "dealstage": "closedwon"}})
    assert sb.flush_webhooks()["drained"]
    req = rx.requests[0]
    assert req["headers"]["x-hubspot-signature-version"] == "v2"
    assert Signature.is_valid(signature=req["headers"]["x-hubspot-signature"], client_secret="app-secret",
                              request_body=req["body"].decode(), http_uri=req["url"], http_method="POST",
                              signature_version="v2")

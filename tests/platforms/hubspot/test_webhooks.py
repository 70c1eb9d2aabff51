"""Webhook signatures made by HubSpot's own SDK (`hubspot.utils.signature.Signature`) are accepted;
any change to body, URI, timestamp or secret is refused; deliveries parse into events."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from hubspot.utils.signature import Signature

from crmsync.platforms.base import WebhookRequest
from crmsync.platforms.errors import WebhookRejected
from crmsync.platforms.hubspot import HubSpotAdapter
from crmsync.platforms.hubspot.webhooks import normalize_uri

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URI = "https://crmsync.example.com/webhooks/hubspot"
BODY = json.dumps([{"eventId": 1, "subscriptionId": 12345, "portalId": 62515, "occurredAt": 1564113600000,
                    "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": 123,
                    "changeSource": "CRM", "changeFlag": "NEW", "appId": 54321}], separators=(",", ":"))


def v3_request(body=BODY, uri=URI, secret=SECRET, ts=None, method="POST", header_uri=None):
    ts = ts if ts is not None else str(int(time.time() * 1000))
    sig = Signature.get_signature(secret, body, "v3", http_uri=uri, http_method=method, timestamp=ts)
    headers = {"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts,
               "Content-Type": "application/json"}
    return WebhookRequest(method=method, url=header_uri or uri, headers=headers, body=body.encode())


def legacy_request(version, body=BODY, uri=URI, secret=SECRET, method="POST"):
    sig = Signature.get_signature(secret, body, version, http_uri=uri, http_method=method)
    headers = {"X-HubSpot-Signature": sig, "X-HubSpot-Signature-Version": version}
    return WebhookRequest(method=method, url=uri, headers=headers, body=body.encode())


def rejected(request, secret=SECRET, **kw) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        HubSpotAdapter.verify_webhook(request, secret, **kw)
    return info.value


def test_sdk_signatures_of_every_version_are_accepted():
    HubSpotAdapter.verify_webhook(v3_request(), SECRET)
    HubSpotAdapter.verify_webhook(legacy_request("v1"), SECRET, legacy_signatures=True)
    HubSpotAdapter.verify_webhook(legacy_request("v2"), SECRET, legacy_signatures=True)
    # and the SDK agrees with itself on the same request (sanity of the test vectors)
    req = v3_request()
    assert Signature.is_valid(req.headers["X-HubSpot-Signature-v3"], SECRET, BODY, URI, "POST", "v3",
                              req.headers["X-HubSpot-Request-Timestamp"])


def test_reference_vector_v3_at_its_own_time():
    body = "{'example_field':'example_value'}"
    req = WebhookRequest("POST", "https://www.example.com/webhook_uri",
                         {"x-hubspot-signature-v3": "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
                          "x-hubspot-request-timestamp": "1693657560000"}, body.encode())
    HubSpotAdapter.verify_webhook(req, SECRET, now=datetime.fromtimestamp(1693657560, UTC) + timedelta(seconds=5))


@pytest.mark.parametrize("change", ["body", "uri", "secret", "method"])
def test_any_change_is_rejected_v3(change):
    req = v3_request()
    if change == "body":
        req.body = req.body.replace(b'"objectId":123', b'"objectId":124')
    elif change == "uri":
        req.url = URI + "/"
    elif change == "method":
        req.method = "PUT"
    secret = "other-secret" if change == "secret" else SECRET
    assert rejected(req, secret).http_status == 401


def test_changed_timestamp_is_rejected_even_when_fresh():
    req = v3_request()
    req.headers["X-HubSpot-Request-Timestamp"] = str(int(req.headers["X-HubSpot-Request-Timestamp"]) + 1)
    assert rejected(req).http_status == 401


def test_stale_and_future_timestamps_are_rejected():
    old = str(int((time.time() - 301) * 1000))
    assert "older" in rejected(v3_request(ts=old)).message
    ahead = str(int((time.time() + 120) * 1000))
    assert "future" in rejected(v3_request(ts=ahead)).message
    HubSpotAdapter.verify_webhook(v3_request(ts=str(int((time.time() - 250) * 1000))), SECRET)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("change", ["body", "uri", "secret"])
def test_any_change_is_rejected_v1_v2(version, change):
    req = legacy_request(version)
    if change == "body":
        req.body = req.body + b" "
    elif change == "uri":
        req.url = URI + "?x=1"
    secret = "other" if change == "secret" else SECRET
    if version == "v1" and change == "uri":
        HubSpotAdapter.verify_webhook(req, secret, legacy_signatures=True)  # v1 does not sign the URI
        return
    assert rejected(req, secret, legacy_signatures=True).http_status == 401


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_legacy_signatures_only_when_allowed(version):
    # No timestamp is signed, so a captured v1/v2 delivery could be replayed forever.
    assert "v1/v2" in rejected(legacy_request(version)).message
    # A request that carries v3 is judged by v3 alone, whatever else it carries.
    both = v3_request()
    both.headers.update(legacy_request(version).headers)
    HubSpotAdapter.verify_webhook(both, SECRET)
    both.headers["X-HubSpot-Request-Timestamp"] = str(int((time.time() - 400) * 1000))
    assert "older" in rejected(both, legacy_signatures=True).message


def test_max_age_narrows_but_never_widens_the_window():
    old = str(int((time.time() - 120) * 1000))
    assert "older than 60 seconds" in rejected(v3_request(ts=old), max_age_seconds=60).message
    HubSpotAdapter.verify_webhook(v3_request(ts=old), SECRET, max_age_seconds=300)
    older = str(int((time.time() - 400) * 1000))
    assert "older than 300 seconds" in rejected(v3_request(ts=older), max_age_seconds=3600).message


def test_missing_headers_are_rejected():
    req = v3_request()
    del req.headers["X-HubSpot-Request-Timestamp"]
    assert rejected(req).http_status == 401
    assert rejected(WebhookRequest("POST", URI, {}, BODY.encode())).http_status == 401
    bad = legacy_request("v1")
    bad.headers["X-HubSpot-Signature-Version"] = "v9"
    assert rejected(bad).http_status == 401


def test_uri_encodings_hubspot_decodes():
    raw = "https://example.com/hubspot/webhooks?src=hs%3Aapp%2Fv3&q=a%20b"
    assert normalize_uri(raw) == "https://example.com/hubspot/webhooks?src=hs:app/v3&q=a%20b"
    req = v3_request(uri=normalize_uri(raw), header_uri=raw)
    HubSpotAdapter.verify_webhook(req, SECRET)


def test_parse_events():
    body = json.dumps([
        {"eventId": 3816279340, "subscriptionId": 25, "portalId": 33, "appId": 1, "occurredAt": 1462216307945,
         "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 1246965,
         "propertyName": "lifecyclestage", "propertyValue": "subscriber", "changeSource": "CRM_UI"},
        {"eventId": 11, "subscriptionId": 60, "portalId": 33, "appId": 1, "occurredAt": 1715050000000,
         "subscriptionType": "contact.merge", "attemptNumber": 0, "objectId": 100, "primaryObjectId": 100,
         "mergedObjectIds": [200, 300], "newObjectId": 100},
        {"eventId": 13, "subscriptionId": 80, "portalId": 33, "appId": 1, "occurredAt": 1715100000500,
         "subscriptionType": "object.creation", "objectTypeId": "0-27", "attemptNumber": 0, "objectId": 777},
        {"eventId": 14, "portalId": 33, "occurredAt": 1715100000500, "subscriptionType": "object.deletion",
         "objectTypeId": "0-48", "attemptNumber": 0, "objectId": 778},
        {"eventId": 15, "portalId": 33, "occurredAt": 1, "eventType": "deal.deletion", "objectId": 5},
        {"eventId": 16, "portalId": 33, "occurredAt": 1, "subscriptionType": "ticket.creation", "objectId": 6},
        {"eventId": 17, "portalId": 33, "occurredAt": 1, "subscriptionType": "company.restore", "objectId": 7},
    ]).encode()
    events = HubSpotAdapter.parse_webhook(body)
    change, merge, task, call, deal, ticket, company = events
    assert (change.entity, change.action, change.external_id, change.account_id) == \
        ("contact", "updated", "1246965", "33")
    assert change.property_name == "lifecyclestage" and change.property_value == "subscriber"
    assert change.occurred_at == datetime.fromtimestamp(1462216307.945, UTC)
    assert (merge.action, merge.external_id, merge.merged_ids) == ("merged", "100", ["200", "300"])
    assert (task.entity, task.action, task.external_id) == ("task", "created", "777")
    assert (call.entity, call.action, call.external_id) == ("activity", "deleted", "call:778")
    assert (deal.entity, deal.action) == ("deal", "deleted")
    assert ticket.entity is None
    assert (company.entity, company.action) == ("company", "restored")
    assert len({e.event_key for e in events}) == len(events)


def test_retry_of_one_event_keeps_its_key():
    one = {"eventId": 5, "portalId": 33, "occurredAt": 10, "subscriptionType": "contact.creation", "objectId": 9,
           "attemptNumber": 0}
    first = HubSpotAdapter.parse_webhook(json.dumps([one]).encode())[0]
    again = HubSpotAdapter.parse_webhook(json.dumps([{**one, "attemptNumber": 3}]).encode())[0]
    assert first.event_key == again.event_key


@pytest.mark.parametrize("body", [b"not json", b'{"eventId": 1}', b'[1]', b'[{"eventId": 1, "portalId": 2}]',
                                  b'[{"eventId": 1, "portalId": 2, "objectId": 3, "subscriptionType": "x"}]',
                                  json.dumps([{"eventId": i, "portalId": 1, "objectId": i,
                                               "subscriptionType": "contact.creation"} for i in range(101)]).encode()])
def test_malformed_bodies_are_400(body):
    with pytest.raises(WebhookRejected) as info:
        HubSpotAdapter.parse_webhook(body)
    assert info.value.http_status == 400

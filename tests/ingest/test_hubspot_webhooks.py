"""POST /webhooks/hubspot: signatures made by HubSpot's own Python helper are accepted, any change to
body, URI, timestamp or secret is refused; a delivery is routed by portalId and stored whole, then
split by a worker into events stored once and enqueued."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from crmsync.db import session_scope
from crmsync.db.models import WebhookDelivery, WebhookEvent
from tests.fixtures.ingest import hubspot_event, hubspot_headers, hubspot_portal

URI = "http://localhost/webhooks/hubspot"


@pytest.fixture
def portal(ingest_env, db_url):
    with session_scope(db_url) as s:
        return hubspot_portal(s)


def _body(*events) -> bytes:
    return json.dumps(list(events), separators=(",", ":")).encode()


def _events(db_url):
    with session_scope(db_url) as s:
        return s.scalars(select(WebhookEvent).order_by(WebhookEvent.received_at)).all()


def _count(db_url) -> int:
    """Events and deliveries not yet split: what a refused request must never have written."""
    with session_scope(db_url) as s:
        return (s.scalar(select(func.count()).select_from(WebhookEvent))
                + s.scalar(select(func.count()).select_from(WebhookDelivery)))


@pytest.fixture
def legacy_portal(ingest_env, db_url):
    """A config of an app that cannot sign with v3: it opts in to v1/v2."""
    with session_scope(db_url) as s:
        return hubspot_portal(s, webhook_legacy_signatures=True)


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_official_signatures_are_accepted_and_events_stored_then_enqueued(
        version, portal, legacy_portal, ingest_client, ingest_queue, db_url):
    portal = legacy_portal if version != "v3" else portal
    events = [hubspot_event(portal.account_id, 101 + i) for i in range(3)]
    body = _body(*events)
    res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, portal.secret, version))
    assert res.status_code == 200, res.json
    [delivery] = res.json["deliveries"]
    assert res.json == {"received": 3, "deliveries": [delivery]}
    # The request stored the delivery whole and asked for its split; nothing else yet.
    assert _events(db_url) == []
    assert ingest_queue.tasks() == [("crmsync.events.split", [delivery])]
    assert ingest_queue.run("crmsync.events.split") == [[delivery]]
    rows = _events(db_url)
    assert {r.external_id for r in rows} == {"101", "102", "103"}
    assert {(r.tenant_id, r.config_id, r.platform, r.account_id) for r in rows} == {
        (portal.tenant.id, portal.config.id, "hubspot", portal.account_id)}
    assert all(r.event_type == "contact.updated" and r.entity_type == "contact" and not r.processed for r in rows)
    # One task per delivery (per config): its first event; the task takes the rest of the delivery.
    first = next(r for r in rows if r.external_id == "101")
    assert ingest_queue.tasks("events") == [("crmsync.events.process", [first.id])]


# What each version signs: v1 secret + body; v2 adds method and URI; v3 adds the timestamp.
SIGNED_PARTS = [("v1", c) for c in ("body", "secret")] + [("v2", c) for c in ("body", "uri", "secret")] + [
    ("v3", c) for c in ("body", "uri", "timestamp", "secret")]


def test_any_change_is_rejected(legacy_portal, ingest_client, ingest_queue, db_url):
    # One test over the whole matrix: each case writes nothing, so no reset is needed between them.
    portal = legacy_portal
    for version, change in SIGNED_PARTS:
        body = _body(hubspot_event(portal.account_id))
        signed_body, uri, secret = body, URI, portal.secret
        if change == "body":
            signed_body = body.replace(b"ada@", b"eve@")
        elif change == "uri":
            uri = "https://localhost/webhooks/hubspot"
        elif change == "secret":
            secret = portal.secret + "x"
        headers = hubspot_headers(signed_body, uri, secret, version)
        if change == "timestamp":
            headers["X-HubSpot-Request-Timestamp"] = str(int(headers["X-HubSpot-Request-Timestamp"]) + 1)
        res = ingest_client.post("/webhooks/hubspot", data=body, headers=headers)
        assert res.status_code == 401, (version, change, res.json)
        assert res.json["error"] == "signature_rejected" and res.json["message"]
    assert _count(db_url) == 0
    assert ingest_queue.tasks() == []


def test_stale_or_future_v3_timestamp_is_rejected(portal, ingest_client, db_url):
    for age_seconds in (301, 3600, -120):
        body = _body(hubspot_event(portal.account_id))
        stamp = str(int((time.time() - age_seconds) * 1000))
        res = ingest_client.post("/webhooks/hubspot", data=body,
                                 headers=hubspot_headers(body, URI, portal.secret, "v3", timestamp=stamp))
        assert res.status_code == 401, age_seconds
    assert _count(db_url) == 0


def test_missing_signature_is_rejected(portal, ingest_client, db_url):
    body = _body(hubspot_event(portal.account_id))
    res = ingest_client.post("/webhooks/hubspot", data=body, content_type="application/json")
    assert res.status_code == 401 and res.json["error"] == "signature_rejected"
    assert _count(db_url) == 0


def test_query_string_is_signed_with_hubspots_decodings(portal, ingest_client, db_url):
    # HubSpot decodes %3A and %2F (among a few) before signing; the official helper takes the URI as given.
    body = _body(hubspot_event(portal.account_id))
    headers = hubspot_headers(body, URI + "?src=hs:app/v3&x=a%20b", portal.secret, "v3")
    res = ingest_client.post("/webhooks/hubspot?src=hs%3Aapp%2Fv3&x=a%20b", data=body, headers=headers)
    assert res.status_code == 200, res.json


def test_duplicates_are_stored_and_enqueued_once(portal, ingest_client, ingest_queue, db_url):
    a, b = hubspot_event(portal.account_id, 1), hubspot_event(portal.account_id, 2)
    first = _body(a, b)
    assert ingest_client.post("/webhooks/hubspot", data=first,
                              headers=hubspot_headers(first, URI, portal.secret)).json["received"] == 2
    ingest_queue.run("crmsync.events.split")
    # HubSpot's retry: same events, higher attemptNumber, fresh signature; plus one event twice in a batch.
    retry = _body({**a, "attemptNumber": 1}, {**b, "attemptNumber": 1}, a)
    res = ingest_client.post("/webhooks/hubspot", data=retry, headers=hubspot_headers(retry, URI, portal.secret))
    assert res.status_code == 200 and res.json["received"] == 3
    ingest_queue.run("crmsync.events.split")
    assert _count(db_url) == 2   # the events once each; both deliveries gone with their split
    # the retry stored nothing new, so enqueued nothing
    assert [name for name, _ in ingest_queue.tasks()] == ["crmsync.events.process"]


def test_unknown_portal_is_answered_as_a_wrong_signature_and_writes_nothing(portal, ingest_client, ingest_queue,
                                                                            db_url):
    # A different answer (it was 404 "no HubSpot config for portal ...") let anyone list the
    # configured portals by posting unsigned deliveries.
    wrong = _body(hubspot_event(portal.account_id))
    wrong_answer = ingest_client.post("/webhooks/hubspot", data=wrong,
                                      headers=hubspot_headers(wrong, URI, "not-the-secret"))
    for body in (_body(hubspot_event(portal.account_id), hubspot_event("999000111")),
                 _body(hubspot_event("999000111"))):
        res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, portal.secret))
        assert (res.status_code, res.json) == (wrong_answer.status_code, wrong_answer.json) == (401, {
            "error": "signature_rejected", "message": "webhook signature (v3) does not match"})
        stale = hubspot_headers(body, URI, portal.secret, timestamp=str(int((time.time() - 400) * 1000)))
        assert ingest_client.post("/webhooks/hubspot", data=body, headers=stale).json == {
            "error": "signature_rejected", "message": "webhook timestamp is older than 300 seconds"}
    assert _count(db_url) == 0 and ingest_queue.tasks() == []


def test_config_without_webhook_secret_is_answered_as_a_wrong_signature(ingest_env, ingest_client, db_url):
    with session_scope(db_url) as s:
        bare = hubspot_portal(s)
        bare.config.webhook_secret_vault_id = None
    body = _body(hubspot_event(bare.account_id))
    res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, bare.secret))
    # Not "config <uuid> has no webhook secret": the config's id is nobody's business outside.
    assert (res.status_code, res.json) == (401, {"error": "signature_rejected",
                                                 "message": "webhook signature (v3) does not match"})
    assert bare.config.id not in res.text and _count(db_url) == 0


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_legacy_signatures_are_refused_unless_the_config_opts_in(version, portal, legacy_portal, ingest_client,
                                                                 ingest_queue, db_url):
    # v1/v2 sign no timestamp: a delivery captured once, its v3 headers dropped, replayed forever.
    body = _body(hubspot_event(portal.account_id))
    v3 = hubspot_headers(body, URI, portal.secret, "v3")
    replay = {**hubspot_headers(body, URI, portal.secret, version)}
    assert ingest_client.post("/webhooks/hubspot", data=body, headers={**v3, **replay}).status_code == 200
    res = ingest_client.post("/webhooks/hubspot", data=body, headers=replay)
    assert res.status_code == 401 and res.json["error"] == "signature_rejected"
    assert "v1/v2" in res.json["message"]
    # An app that cannot sign with v3 opts in per config.
    body = _body(hubspot_event(legacy_portal.account_id))
    res = ingest_client.post("/webhooks/hubspot", data=body,
                             headers=hubspot_headers(body, URI, legacy_portal.secret, version))
    assert res.status_code == 200, res.json
    assert _count(db_url) == 2 and sum(len(ids) for _, ids in ingest_queue.tasks()) == 2


def test_tolerance_setting_narrows_the_v3_window(portal, ingest_env, ingest_client, ingest_queue, monkeypatch):
    from crmsync import settings
    from crmsync.ingest import create_app
    monkeypatch.setenv("CRMSYNC_WEBHOOK_TOLERANCE_SECONDS", "60")
    settings.get_settings.cache_clear()
    narrow = create_app().test_client()
    body = _body(hubspot_event(portal.account_id))
    headers = hubspot_headers(body, URI, portal.secret, timestamp=str(int((time.time() - 120) * 1000)))
    res = narrow.post("/webhooks/hubspot", data=body, headers=headers)
    assert res.status_code == 401 and res.json["message"] == "webhook timestamp is older than 60 seconds"
    assert ingest_client.post("/webhooks/hubspot", data=body, headers=headers).status_code == 200
    assert len(ingest_queue.tasks()) == 1


def test_deep_nesting_is_400_before_any_parser_recursion(portal, ingest_client, ingest_queue, db_url):
    # 100,000 levels raised RecursionError (500) in the parser, before the signature was checked.
    for body in (b"[" * 100_000 + b"]" * 100_000,
                 _body({**hubspot_event(portal.account_id), "propertyValue": json.loads("[" * 40 + "]" * 40)})):
        res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, portal.secret))
        assert res.status_code == 400, res.json
        assert res.json["error"] == "malformed_body" and "deeper than 32" in res.json["message"]
    nested = _body({**hubspot_event(portal.account_id), "propertyValue": json.loads("[" * 20 + "]" * 20)})
    res = ingest_client.post("/webhooks/hubspot", data=nested, headers=hubspot_headers(nested, URI, portal.secret))
    assert res.status_code == 200, res.json
    assert _count(db_url) == 1 and len(ingest_queue.tasks()) == 1


def test_event_shape_is_checked_only_after_the_signature(portal, ingest_client, db_url):
    # An unauthenticated caller learns nothing of what a valid event looks like.
    body = _body({"portalId": int(portal.account_id), "objectId": 1})
    unsigned = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, "guess"))
    assert unsigned.status_code == 401
    signed = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, portal.secret))
    assert signed.status_code == 400 and "lacks" in signed.json["message"]
    assert _count(db_url) == 0


def test_portal_a_signature_never_reaches_tenant_b(ingest_env, ingest_client, ingest_queue, db_url):
    with session_scope(db_url) as s:
        a, b = hubspot_portal(s), hubspot_portal(s)
    # B's event signed with A's secret, alone or hidden in a batch with A's events: refused whole.
    for events in ([hubspot_event(b.account_id)], [hubspot_event(a.account_id), hubspot_event(b.account_id)]):
        body = _body(*events)
        res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, a.secret))
        assert res.status_code == 401
    assert _count(db_url) == 0
    # A's own event lands on A only.
    body = _body(hubspot_event(a.account_id))
    assert ingest_client.post("/webhooks/hubspot", data=body,
                              headers=hubspot_headers(body, URI, a.secret)).status_code == 200
    ingest_queue.run("crmsync.events.split")
    assert {(e.tenant_id, e.config_id) for e in _events(db_url)} == {(a.tenant.id, a.config.id)}


def test_one_delivery_for_two_portals_of_one_app_is_routed_per_portal(ingest_env, ingest_client, ingest_queue,
                                                                     db_url):
    # One HubSpot app installed in two portals signs both with the app secret.
    with session_scope(db_url) as s:
        a, b = hubspot_portal(s, secret="app-secret"), hubspot_portal(s, secret="app-secret")
    body = _body(hubspot_event(a.account_id, 1), hubspot_event(b.account_id, 2), hubspot_event(a.account_id, 3))
    res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, "app-secret"))
    assert res.status_code == 200 and res.json["received"] == 3
    # One delivery row per config it touches, each split into that config's events only.
    assert len(res.json["deliveries"]) == 2
    assert [sorted(args) for args in ingest_queue.run("crmsync.events.split")] == [sorted(res.json["deliveries"])]
    rows = {e.external_id: e for e in _events(db_url)}
    assert {k: (e.tenant_id, e.config_id) for k, e in rows.items()} == {
        "1": (a.tenant.id, a.config.id), "2": (b.tenant.id, b.config.id), "3": (a.tenant.id, a.config.id)}
    assert sorted(ingest_queue.tasks()) == sorted([("crmsync.events.process", [rows["1"].id]),
                                                   ("crmsync.events.process", [rows["2"].id])])


def test_body_over_the_limit_is_413(portal, ingest_client, db_url):
    big = b"[" + b" " * (1_048_576) + b"]"
    res = ingest_client.post("/webhooks/hubspot", data=big, headers=hubspot_headers(big, URI, portal.secret))
    assert res.status_code == 413 and res.json["error"] == "body_too_large"
    assert _count(db_url) == 0


def test_wrong_content_type_is_415(portal, ingest_client, db_url):
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]:
        body = _body(hubspot_event(portal.account_id))
        headers = hubspot_headers(body, URI, portal.secret)
        headers.pop("Content-Type")
        if content_type:
            headers["Content-Type"] = content_type
        res = ingest_client.post("/webhooks/hubspot", data=body, headers=headers)
        assert res.status_code == 415 and res.json["error"] == "unsupported_content_type", content_type
    assert _count(db_url) == 0


def test_malformed_bodies_are_400(portal, ingest_client, db_url):
    # Numbers jsonb cannot store are refused at the door, not when the events are written.
    good = _body(hubspot_event(portal.account_id, 1)).replace(b'"objectId":1', b'"objectId":1,"x":VALUE')
    for body in [b"", b"{", b"{}", b"[1]", b'[{"portalId": %s}]' % portal.account_id.encode(), b"[NaN]", b'"x"', b"\xff\xfe",
                 _body(*[hubspot_event(portal.account_id, i) for i in range(101)]),
                 good.replace(b"VALUE", b"1e999"), good.replace(b"VALUE", b"-1e999"), good.replace(b"VALUE", b"NaN"),
                 good.replace(b"VALUE", b"Infinity"), good.replace(b"VALUE", b'"a\\u0000b"')]:
        res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(
            body, URI, portal.secret) if body.isascii() else {"Content-Type": "application/json"})
        assert res.status_code == 400 and res.json["error"] == "malformed_body", body[:40]
    assert _count(db_url) == 0


def test_trusted_proxy_headers_give_the_uri_hubspot_called(ingest_env, db_url):
    from crmsync.ingest import create_app
    with session_scope(db_url) as s:
        portal = hubspot_portal(s)
    public = "https://hooks.example.com/webhooks/hubspot"
    body = _body(hubspot_event(portal.account_id))
    headers = {**hubspot_headers(body, public, portal.secret), "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "hooks.example.com"}
    # Not trusted by default: the forwarded headers are ignored and the signature does not match.
    assert create_app().test_client().post("/webhooks/hubspot", data=body, headers=headers).status_code == 401
    res = create_app(proxy_hops=1).test_client().post("/webhooks/hubspot", data=body, headers=headers)
    assert res.status_code == 200, res.json
    headers = hubspot_headers(body, public, portal.secret)
    res = create_app(public_url="https://hooks.example.com").test_client().post(
        "/webhooks/hubspot", data=body, headers=headers)
    assert res.status_code == 200, res.json


def test_rotated_secret_is_picked_up_at_once(portal, ingest_app, db_url):
    from crmsync.credentials import Vault
    ingest_app.extensions["crmsync_ingest"].secrets.refresh_after = 0  # else once per 2 s per secret
    ingest_client = ingest_app.test_client()
    body = _body(hubspot_event(portal.account_id))
    assert ingest_client.post("/webhooks/hubspot", data=body,
                              headers=hubspot_headers(body, URI, portal.secret)).status_code == 200
    with session_scope(db_url) as s:
        Vault().replace(s, portal.config.webhook_secret_vault_id, {"secret": "rotated-secret"},
                        tenant_id=portal.config.tenant_id)
    body = _body(hubspot_event(portal.account_id))
    assert ingest_client.post("/webhooks/hubspot", data=body,
                              headers=hubspot_headers(body, URI, "rotated-secret")).status_code == 200
    body = _body(hubspot_event(portal.account_id))
    assert ingest_client.post("/webhooks/hubspot", data=body,
                              headers=hubspot_headers(body, URI, portal.secret)).status_code == 401


def test_a_failed_enqueue_loses_nothing(monkeypatch, ingest_env, ingest_queue, db_url):
    """Broker down: the rows are committed, the answer is still 2xx; the sweeper re-enqueues them."""
    from crmsync import settings
    from crmsync.ingest import create_app
    from crmsync.sync.schedule import sweep_outbox
    from crmsync.tasks.producer import reset_producer
    from tests.fixtures.workers import free_port
    monkeypatch.setenv("CRMSYNC_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    settings.get_settings.cache_clear()
    reset_producer()
    with session_scope(db_url) as s:
        portal = hubspot_portal(s)
    body = _body(hubspot_event(portal.account_id, 1), hubspot_event(portal.account_id, 2))
    started = time.monotonic()
    app = create_app()
    res = app.test_client().post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, portal.secret))
    assert app.extensions["crmsync_ingest"].relay.flush()  # its publish failed, and was logged
    assert res.status_code == 200 and res.json["received"] == 2
    assert time.monotonic() - started < 5
    with session_scope(db_url) as s:
        assert [d.id for d in s.scalars(select(WebhookDelivery))] == res.json["deliveries"]
    # What the sweeper finds once outbox_after_seconds have passed.
    from datetime import timedelta

    from crmsync.db.types import utcnow
    with session_scope(db_url) as s:
        monkeypatch.setenv("CRMSYNC_BROKER_URL", ingest_env["CRMSYNC_BROKER_URL"])
        settings.get_settings.cache_clear()
        reset_producer()
        counts = sweep_outbox(s, now=utcnow() + timedelta(seconds=settings.get_settings().outbox_after_seconds + 1))
    assert counts["deliveries"] == 1
    assert ingest_queue.tasks() == [("crmsync.events.split", res.json["deliveries"])]


def test_the_embedded_sqlite_default_stores_and_deduplicates_too(monkeypatch, ingest_env, sqlite_url, ingest_queue):
    from crmsync import settings
    from crmsync.ingest import create_app
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", sqlite_url)
    settings.get_settings.cache_clear()
    with session_scope(sqlite_url) as s:
        portal = hubspot_portal(s)
    app = create_app()
    ingest_queue.flushers.append(app.extensions["crmsync_ingest"].relay.flush)
    body = _body(hubspot_event(portal.account_id, 1), hubspot_event(portal.account_id, 2))
    for _ in range(2):
        res = app.test_client().post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, portal.secret))
        assert res.status_code == 200 and res.json["received"] == 2
        ingest_queue.run("crmsync.events.split")
    assert _count(sqlite_url) == 2
    assert [name for name, _ in ingest_queue.tasks()] == ["crmsync.events.process"]


@pytest.mark.parametrize("portal_id", [0, -5, True, "abc", 1.5, None, 0.0])
def test_a_portal_id_that_is_not_a_positive_whole_number_is_400(portal_id, portal, ingest_client, db_url):
    # The document says portalId >= 1; 0 was routed as an unknown portal.
    body = _body({**hubspot_event(portal.account_id), "portalId": portal_id})
    res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, portal.secret))
    assert res.status_code == 400 and res.json["error"] == "malformed_body", res.json
    assert "portal" in res.json["message"]
    assert _count(db_url) == 0

"""Pipedrive webhook verification (HTTP Basic) and parsing of v1 and v2 payloads."""
from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from crmsync.platforms import adapter_class
from crmsync.platforms.base import OutboundRecord, WebhookRequest
from crmsync.platforms.errors import WebhookRejected
from crmsync.sandbox.server import SandboxServer

Adapter = adapter_class("pipedrive")
SECRET = "pd-hook:s3cr3t:with-colon"

V2_CHANGE = {
    "meta": {"action": "change", "entity": "person", "entity_id": "1201",
             "id": "6f1c2a9e-3b7d-4c11-9a0e-2f5b8c7d1e40", "correlation_id": "0b9d5f3a-8c21-4e6b-a7f0-19d2c4e8b613",
             "company_id": "7788", "user_id": "55", "is_bulk_edit": False, "timestamp": "2025-02-14T16:40:03.512Z",
             "type": "general", "version": "2.0", "webhook_id": "91", "webhook_owner_id": "55",
             "change_source": "api", "attempt": 1, "host": "acme-3f9a1c.pipedrive.com"},
    "data": {"id": 1201, "name": "Liis Tamm", "emails": [], "update_time": "2025-02-14T16:40:03Z"},
    "previous": {"name": "Liis Tamme"},
}
V1_UPDATE = {
    "v": 1, "matches_filters": {"current": [], "previous": []},
    "meta": {"v": 1, "action": "updated", "object": "person", "change_source": "api", "id": 1201,
             "company_id": 7788, "user_id": 55, "host": "acme-3f9a1c.pipedrive.com", "timestamp": 1739550003,
             "timestamp_micro": 1739550003123456, "webhook_id": "91"},
    "retry": 0,
    "current": {"id": 1201, "name": "Liis Tamm", "org_id": 301, "update_time": "2025-02-14 16:40:03"},
    "previous": {"id": 1201, "name": "Liis Tamme", "org_id": 301, "update_time": "2025-01-03 09:00:00"},
    "event": "updated.person",
}


def _request(auth: str | None) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    return WebhookRequest("POST", "https://sync.example.com/webhooks/pipedrive/1", headers, b"{}")


def _basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def test_basic_auth_accepted():
    Adapter.verify_webhook(_request(_basic(SECRET)), SECRET)
    # header names are case-insensitive
    Adapter.verify_webhook(WebhookRequest("POST", "u", {"authorization": _basic(SECRET)}, b""), SECRET)


@pytest.mark.parametrize("auth", [None, "", "Bearer abc", "Basic !!!notbase64", _basic("pd-hook:wrong"),
                                  _basic("other:s3cr3t:with-colon"), _basic(SECRET + "x")])
def test_bad_basic_auth_rejected_401(auth):
    with pytest.raises(WebhookRejected) as caught:
        Adapter.verify_webhook(_request(auth), SECRET)
    assert caught.value.http_status == 401
    assert "s3cr3t" not in str(caught.value)


def test_v2_change_event():
    [event] = Adapter.parse_webhook(json.dumps(V2_CHANGE).encode())
    assert (event.platform, event.account_id, event.entity, event.action, event.external_id) == \
        ("pipedrive", "7788", "contact", "updated", "1201")
    assert event.event_key == "v2:6f1c2a9e-3b7d-4c11-9a0e-2f5b8c7d1e40"
    assert event.occurred_at == datetime(2025, 2, 14, 16, 40, 3, 512000, tzinfo=UTC)
    assert event.payload["data"]["name"] == "Liis Tamm"


def test_v2_retry_has_the_same_event_key():
    retry = json.loads(json.dumps(V2_CHANGE))
    retry["meta"]["attempt"] = 2
    assert Adapter.parse_webhook(json.dumps(retry).encode())[0].event_key == \
        Adapter.parse_webhook(json.dumps(V2_CHANGE).encode())[0].event_key


def test_v2_delete_activity_and_merge():
    delete = {"meta": dict(V2_CHANGE["meta"], action="delete", entity="activity", entity_id="5012", id="e2"),
              "data": None, "previous": {"id": 5012, "type": "deadline", "subject": "Send offer"}}
    [event] = Adapter.parse_webhook(json.dumps(delete).encode())
    assert (event.entity, event.action, event.external_id) == ("task", "deleted", "5012")

    merged = {"meta": dict(V2_CHANGE["meta"], action="delete", entity_id="1300", id="e3", merged_to_id="1201"),
              "data": None, "previous": {"id": 1300}}
    [event] = Adapter.parse_webhook(json.dumps(merged).encode())
    assert (event.action, event.external_id, event.merged_ids) == ("merged", "1201", ["1300"])

    create = {"meta": dict(V2_CHANGE["meta"], action="create", entity="deal", entity_id="880", id="e4"),
              "data": {"id": 880, "title": "x"}, "previous": None}
    [event] = Adapter.parse_webhook(json.dumps(create).encode())
    assert (event.entity, event.action) == ("deal", "created")


def test_v1_update_event():
    [event] = Adapter.parse_webhook(json.dumps(V1_UPDATE).encode())
    assert (event.account_id, event.entity, event.action, event.external_id) == ("7788", "contact", "updated", "1201")
    assert event.event_key == "v1:person:1201:updated:1739550003123456"
    assert event.occurred_at == datetime.fromtimestamp(1739550003, UTC)
    # a v1 resend of the same change carries the same key; another change a new one
    resend = dict(V1_UPDATE, retry=1)
    assert Adapter.parse_webhook(json.dumps(resend).encode())[0].event_key == event.event_key
    later = dict(V1_UPDATE, meta=dict(V1_UPDATE["meta"], timestamp_micro=1739550009000000))
    assert Adapter.parse_webhook(json.dumps(later).encode())[0].event_key != event.event_key


def test_v1_delete_organization_and_other_objects():
    body = dict(V1_UPDATE, event="deleted.organization", current=None, previous={"id": 301, "name": "N"},
                meta=dict(V1_UPDATE["meta"], action="deleted", object="organization", id=301))
    [event] = Adapter.parse_webhook(json.dumps(body).encode())
    assert (event.entity, event.action, event.external_id) == ("company", "deleted", "301")
    note = dict(V1_UPDATE, event="added.note", meta=dict(V1_UPDATE["meta"], action="added", object="note", id=5))
    [event] = Adapter.parse_webhook(json.dumps(note).encode())
    assert event.entity is None and event.action == "created"


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"x"', b"{}", b'{"meta": {"entity": "person"}}',
                                  b'{"meta": {"action": "change", "entity": "person"}}',
                                  b'{"event": "exploded.person", "meta": {"id": 1}}',
                                  (b'{"meta": {"version": "2.0", "action": "change", "entity": "person", '
                                  b'"entity_id": null}}'), b"\xff\xfe"])
def test_malformed_bodies_rejected_400(body):
    with pytest.raises(WebhookRejected) as caught:
        Adapter.parse_webhook(body)
    assert caught.value.http_status == 400


# ------------------------------------------------------------------ deliveries from the sandbox
class _Receiver:
    """A real HTTP endpoint that keeps what Pipedrive posts to it."""

    def __init__(self):
        self.requests: list[WebhookRequest] = []

    def __call__(self, environ, start_response):
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        self.requests.append(WebhookRequest(environ["REQUEST_METHOD"], environ["PATH_INFO"], headers,
                                            environ["sandbox.body"]))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]


@pytest.mark.parametrize("version", ["2.0", "1.0"])
def test_sandbox_deliveries_verify_and_parse(pd_sandbox, adapter, version):
    receiver = _Receiver()
    with SandboxServer(receiver) as hook_url:
        pd_sandbox.configure(webhook_url=hook_url + "/webhooks/pipedrive/1", webhook_auth=SECRET,
                             webhook_version=version)
        [made] = adapter.create_many("contact", [OutboundRecord("L1", {"first_name": "Web", "last_name": "Hook"})])
        adapter.update_many("contact", [OutboundRecord("L1", {"last_name": "Hooked"}, made.external_id)])
        adapter.archive_many("contact", [made.external_id])
        assert pd_sandbox.app.webhooks.flush(5.0)
    events = []
    for request in receiver.requests:
        Adapter.verify_webhook(request, SECRET)
        events.extend(Adapter.parse_webhook(request.body))
    mine = [e for e in events if e.external_id == made.external_id]
    assert [e.action for e in mine] == ["created", "updated", "deleted"]
    assert {e.entity for e in mine} == {"contact"} and {e.account_id for e in mine} == {"7788"}
    assert len({e.event_key for e in mine}) == 3
    with pytest.raises(WebhookRejected):
        Adapter.verify_webhook(receiver.requests[0], "pd-hook:another")

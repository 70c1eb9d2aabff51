"""Outbound Messages: a SOAP ``notifications`` call POSTed to a configured URL when a record is
created or edited, as a workflow rule / flow with an outbound message action sends it.

Behaviour followed ("Outbound Messaging", https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging.htm;
"Understanding Notifications", .../sforce_api_om_outboundmessaging_notifications.htm;
"Outbound Message Considerations", https://help.salesforce.com/s/articleView?id=platform.workflow_om_considerations.htm):
* one message carries up to 100 ``Notification`` elements of one outbound message (one sObject
  type, one ``ActionId``), each with its own notification ``Id`` and the record's selected fields
  (``Id`` always), plus ``OrganizationId``, ``ActionId``, ``SessionId`` (nil unless asked for),
  ``EnterpriseUrl`` and ``PartnerUrl``;
* the record is read when the message is sent, not when the change happened: only the latest data
  is delivered; a record deleted meanwhile is sent with its ``Id`` only;
* delivery is at least once: a message counts as delivered only when the listener answers a
  ``notificationsResponse`` with ``<Ack>true</Ack>``; otherwise it is retried with growing
  intervals (real: up to 2 hours apart, for 24 hours; here on a short clock) and may arrive out of
  order or twice (``duplicate_rate``, ``out_of_order``) — listeners dedupe by notification id;
* deletions send nothing (outbound messages fire on create and edit only).
"""
from __future__ import annotations

import itertools
import re
from xml.sax.saxutils import escape

from ..webhooks import DispatcherPool, WebhookDispatcher, WebhookSettings
from .schema import OBJECTS
from .store import OrgState
from .values import format_datetime, make_id

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
_ACK = re.compile(rb"<(?:[\w.-]+:)?Ack>\s*true\s*</(?:[\w.-]+:)?Ack>")
MAX_NOTIFICATIONS = 100


def acknowledged(response) -> bool:
    return 200 <= response.status_code < 300 and bool(_ACK.search(response.content or b""))


def _soap_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "hour"):
        return format_datetime(value).replace("+0000", "Z")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


class OutboundMessages:
    """One dispatcher per sObject type (one outbound message definition each)."""

    def __init__(self, state: OrgState, base_url: str = "https://sandbox.my.salesforce.com"):
        self.state = state
        self.base_url = base_url
        self.url: str | None = None
        self.objects: tuple[str, ...] = tuple(OBJECTS)
        self.fields: dict[str, tuple[str, ...]] = {}     # object -> fields sent (default: all)
        self.enabled = True
        self.api_version = "62.0"
        self.time_scale = 0.01          # retry clock: a first retry after 0.5 s * time_scale * 100
        self.duplicate_rate = 0.0
        self.out_of_order = False
        self._ids = itertools.count(1)
        self.senders = DispatcherPool()
        state.listeners.append(self._on_change)

    def action_id(self, obj: str) -> str:
        return make_id("04k", 1 + sorted(OBJECTS).index(obj))

    def settings(self) -> dict:
        return {"url": self.url, "objects": list(self.objects), "enabled": self.enabled,
                "fields": {k: list(v) for k, v in self.fields.items()}, "time_scale": self.time_scale,
                "duplicate_rate": self.duplicate_rate, "out_of_order": self.out_of_order}

    def configure(self, **changes) -> dict:
        known = {"url", "objects", "fields", "enabled", "time_scale", "duplicate_rate", "out_of_order"}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown outbound message settings: {sorted(unknown)}")
        for key, value in changes.items():
            if key == "objects":
                value = tuple(OBJECTS[o].name for o in value)
            if key == "fields":
                value = {o: tuple(f) for o, f in value.items()}
            setattr(self, key, value)
        self.senders.configure(**self._dispatcher_settings())
        return self.settings()

    def _dispatcher_settings(self) -> dict:
        return {"url": self.url, "batch_size": MAX_NOTIFICATIONS, "max_retries": 12,
                "retry_delay": 50 * self.time_scale, "max_retry_delay": 7200 * self.time_scale,
                "duplicate_rate": self.duplicate_rate, "out_of_order": self.out_of_order,
                "batch_window": 0.02, "concurrency": 1, "timeout": 60.0}

    def _dispatcher(self, obj: str) -> WebhookDispatcher:
        return self.senders.get(obj, lambda: WebhookDispatcher(
            self._preparer(obj), WebhookSettings(**self._dispatcher_settings()), accept=acknowledged))

    def _on_change(self, obj: str, rid: str, action: str) -> None:
        if not self.enabled or not self.url or action == "deleted" or obj not in self.objects:
            return
        self._dispatcher(obj).enqueue([{"id": rid, "notification": make_id("04l", next(self._ids))}])

    def _preparer(self, obj: str):
        def prepare(url: str, events: list, attempt: int) -> tuple[bytes, dict]:
            return self.envelope(obj, events), {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        return prepare

    def envelope(self, obj: str, events: list[dict]) -> bytes:
        org = self.state.org_id
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
             'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'),
            "<soapenv:Body>", f'<notifications xmlns="{OUTBOUND_NS}">',
            f"<OrganizationId>{org}</OrganizationId>", f"<ActionId>{self.action_id(obj)}</ActionId>",
            '<SessionId xsi:nil="true"/>',
            f"<EnterpriseUrl>{escape(self.base_url)}/services/Soap/c/{self.api_version}/{org[:15]}</EnterpriseUrl>",
            f"<PartnerUrl>{escape(self.base_url)}/services/Soap/u/{self.api_version}/{org[:15]}</PartnerUrl>",
        ]
        wanted = self.fields.get(obj)
        for event in events[:MAX_NOTIFICATIONS]:
            with self.state.lock:
                rec = self.state.records[obj].get(event["id"])
                rec = dict(rec) if rec is not None and not rec["IsDeleted"] else {"Id": event["id"]}
            names = ["Id", *[f for f in (wanted or [f.name for f in OBJECTS[obj].fields]) if f != "Id"]]
            body = "".join(f"<sf:{n}>{escape(_soap_value(rec[n]))}</sf:{n}>" for n in names if rec.get(n) is not None)
            parts.append(f"<Notification><Id>{event['notification']}</Id>"
                         f'<sObject xsi:type="sf:{obj}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
                         f"{body}</sObject></Notification>")
        parts += ["</notifications>", "</soapenv:Body>", "</soapenv:Envelope>"]
        return "".join(parts).encode("utf-8")

    # ----- observation -----------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        return self.senders.flush(timeout)

    def deliveries(self) -> list[dict]:
        return self.senders.deliveries("object")

    def counters(self) -> dict:
        return self.senders.counters()

    def reset(self) -> None:
        self.senders.reset()

    stop = reset

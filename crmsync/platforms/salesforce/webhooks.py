"""Outbound Messages: the SOAP `notifications` call Salesforce POSTs when a workflow rule or flow
fires on a record's create or edit, and the acknowledgement it waits for.

From "Outbound Messaging" (https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging.htm)
and "Understanding Notifications" (…/sforce_api_om_outboundmessaging_notifications.htm):
* one message holds up to 100 `Notification`s, each with its own notification `Id` and an
  `sObject` (xsi:type `sf:Contact`, …) carrying the record's `Id` and the fields chosen in Setup,
  read when the message was sent;
* delivery is at least once and may be out of order; a message is retried (for up to 24 hours)
  until the listener answers `<Ack>true</Ack>` — so the notification id is the event key that
  deduplicates, and processing re-reads the record instead of trusting the payload;
* nothing is signed: the org is proven by `OrganizationId` (checked against the config's org id
  by the ingest route), optionally by a `token` query parameter on the endpoint URL set in Setup
  (checked here against the config's webhook secret), and by the unguessable config id in the path.

The body is untrusted XML: parsed with defusedxml, which refuses DTDs, entity declarations and
external references (no billion laughs, no XXE).
"""
from __future__ import annotations

import hmac
from urllib.parse import parse_qs, urlsplit

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from crmsync.platforms.base import WebhookEvent, WebhookRequest
from crmsync.platforms.errors import WebhookRejected

from .errors import PLATFORM
from .mapping import parse_datetime

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ENTITY_BY_OBJECT = {"Contact": "contact", "Account": "company", "Opportunity": "deal", "Event": "activity",
                    "Task": "task", "Note": "activity"}
MAX_NOTIFICATIONS = 100
ACK = ('<?xml version="1.0" encoding="UTF-8"?>'
       f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}"><soapenv:Body>'
       f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
       "</soapenv:Body></soapenv:Envelope>")


def _reject(message: str) -> WebhookRejected:
    return WebhookRejected(message, platform=PLATFORM, http_status=400)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def verify_token(request: WebhookRequest, secret: str) -> None:
    """Raise `WebhookRejected(401)` unless the URL's `token` parameter is the config's secret."""
    if not secret:
        raise WebhookRejected("webhook secret is empty", platform=PLATFORM)
    given = (parse_qs(urlsplit(request.url).query).get("token") or [""])[-1]
    if not given:
        raise WebhookRejected("the endpoint URL carries no token parameter", platform=PLATFORM)
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise WebhookRejected("wrong webhook token", platform=PLATFORM)


def _notifications(body: bytes):
    if not body:
        raise _reject("the body is empty; expected a SOAP notifications message")
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as err:
        raise _reject(f"not XML this endpoint reads ({type(err).__name__})") from None
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise _reject("not a SOAP envelope")
    message = root.find(f"{{{SOAP_NS}}}Body/{{{OUTBOUND_NS}}}notifications")
    if message is None:
        raise _reject("no notifications element in the SOAP body")
    org = (message.findtext(f"{{{OUTBOUND_NS}}}OrganizationId") or "").strip()
    if not org:
        raise _reject("the message names no OrganizationId")
    notes = message.findall(f"{{{OUTBOUND_NS}}}Notification")
    if not notes:
        raise _reject("the message holds no Notification")
    if len(notes) > MAX_NOTIFICATIONS:
        raise _reject(f"more than {MAX_NOTIFICATIONS} notifications in one message")
    return org, message.findtext(f"{{{OUTBOUND_NS}}}ActionId"), notes


def parse(body: bytes) -> list[WebhookEvent]:
    org, action_id, notes = _notifications(body)
    events = []
    for note in notes:
        note_id = (note.findtext(f"{{{OUTBOUND_NS}}}Id") or "").strip()
        sobject = note.find(f"{{{OUTBOUND_NS}}}sObject")
        if not note_id or sobject is None:
            raise _reject("a Notification lacks its Id or sObject")
        obj = (sobject.get(f"{{{XSI_NS}}}type") or "").rpartition(":")[2]
        values = {_local(child.tag): (child.text or "") for child in sobject}
        record_id = values.get("Id", "").strip()
        if not record_id or len(note_id) > 200:
            raise _reject("a notification's sObject has no Id")
        entity = ENTITY_BY_OBJECT.get(obj)
        if obj == "Task" and (values.get("TaskSubtype") == "Call" or values.get("Type") == "Call"):
            entity = "activity"
        stamp = values.get("SystemModstamp") or values.get("LastModifiedDate")
        events.append(WebhookEvent(
            platform=PLATFORM, account_id=org, event_key=note_id, entity=entity,
            # Outbound messages fire on create and edit alike and do not say which: processing
            # re-reads the record either way.
            action="updated", external_id=record_id, occurred_at=parse_datetime(stamp) if stamp else None,
            payload={"notification_id": note_id, "action_id": action_id, "object": obj, "fields": values}))
    return events


def accounts(body: bytes) -> list[str]:
    org, _, notes = _notifications(body)
    return [org] * len(notes)

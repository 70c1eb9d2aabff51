"""Pipedrive webhook deliveries: HTTP Basic verification and v1/v2 payload parsing.

Pipedrive signs nothing: the only proof of origin is the user/password registered with the webhook
(`http_auth_user`/`http_auth_password`), sent as `Authorization: Basic` (docs/pipedrive.md §8.2). The
config's webhook secret holds "user:password". There is no timestamp to check freshness against;
duplicates (v1 resends, retries at +3/+30/+150 s) are caught by `event_key`.

v2 (`meta.version` "2.0"): `meta.action` create|change|delete, `meta.entity`, `meta.entity_id`
(string), `meta.id` (a UUID per event -> event_key), `data` (null on delete), `previous`.
v1: `event` "updated.person", `meta.action` added|updated|merged|deleted, `meta.object`, `meta.id`,
`current`/`previous`; it has no event id, so the key is built from object, id, action and
`timestamp_micro`, which a retry of the same event repeats (a body naming no time at all: a digest
of the body without its `retry` counter).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from crmsync.platforms.base import WebhookEvent, WebhookRequest, strict_json
from crmsync.platforms.errors import WebhookRejected
from crmsync.platforms.pipedrive.mapping import classify_pipedrive_activity, parse_time

PLATFORM = "pipedrive"
UNIFIED_BY_OBJECT = {"person": "contact", "organization": "company", "deal": "deal"}
V2_ACTIONS = {"create": "created", "change": "updated", "delete": "deleted"}
V1_ACTIONS = {"added": "created", "updated": "updated", "deleted": "deleted", "merged": "merged"}


def verify_basic_auth(request: WebhookRequest, secret: str) -> None:
    """Raise `WebhookRejected(401)` unless the request carries exactly the "user:password" of `secret`."""
    if not secret or ":" not in secret:
        raise WebhookRejected("webhook secret is not configured as user:password", platform=PLATFORM)
    header = next((v for k, v in request.headers.items() if k.lower() == "authorization"), None)
    if not header:
        raise WebhookRejected("missing Authorization header", platform=PLATFORM)
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise WebhookRejected("Authorization is not HTTP Basic", platform=PLATFORM)
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("Authorization is not valid base64", platform=PLATFORM) from None
    # Constant time over the whole "user:password", so neither part leaks through timing.
    if not hmac.compare_digest(given, secret.encode("utf-8")):
        raise WebhookRejected("wrong webhook credentials", platform=PLATFORM)


def _unified_entity(obj: str | None, state: Mapping | None) -> str | None:
    if obj == "activity":
        # A to-do type (task, deadline...) is a unified task; without the record's type we cannot
        # tell, and a call/meeting/email activity is the likelier kind to be deleted by a webhook.
        return classify_pipedrive_activity(state) if state and state.get("type") else "activity"
    return UNIFIED_BY_OBJECT.get(obj or "")


def _str_id(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, Mapping):
        value = value.get("value", value.get("id"))
    return str(value)


def _reject(message: str) -> WebhookRejected:
    return WebhookRejected(message, platform=PLATFORM, http_status=400)


def _parse_v2(doc: Mapping) -> WebhookEvent:
    meta = doc["meta"]
    action = V2_ACTIONS.get(str(meta.get("action")))
    entity_id = _str_id(meta.get("entity_id"))
    if action is None or entity_id is None or not meta.get("entity"):
        raise _reject("v2 webhook without action/entity/entity_id")
    data = doc.get("data") if isinstance(doc.get("data"), Mapping) else None
    previous = doc.get("previous") if isinstance(doc.get("previous"), Mapping) else None
    state = data or previous
    event_id = meta.get("id") or meta.get("correlation_id")
    external_id, merged = entity_id, []
    if action == "deleted" and meta.get("merged_to_id") not in (None, ""):
        # The loser of a merge: its links move to the survivor.
        action, external_id, merged = "merged", str(meta["merged_to_id"]), [entity_id]
    if not event_id:
        event_id = f"{meta['entity']}:{entity_id}:{meta.get('action')}:{meta.get('timestamp')}"
    return WebhookEvent(
        platform=PLATFORM, account_id=str(meta.get("company_id") or ""), event_key=f"v2:{event_id}",
        entity=_unified_entity(str(meta["entity"]), state), action=action, external_id=external_id,
        occurred_at=parse_time(meta.get("timestamp")), merged_ids=merged, payload=dict(doc))


def _parse_v1(doc: Mapping) -> WebhookEvent:
    meta = doc.get("meta") if isinstance(doc.get("meta"), Mapping) else {}
    event = str(doc.get("event") or "")
    raw_action, _, obj = event.partition(".")
    raw_action = meta.get("action") or raw_action
    obj = meta.get("object") or obj
    action = V1_ACTIONS.get(str(raw_action))
    current = doc.get("current") if isinstance(doc.get("current"), Mapping) else None
    previous = doc.get("previous") if isinstance(doc.get("previous"), Mapping) else None
    if isinstance(doc.get("current"), list) and doc["current"]:  # user objects come as arrays
        current = doc["current"][0] if isinstance(doc["current"][0], Mapping) else None
    state = current or previous
    external_id = _str_id(meta.get("id")) or _str_id((state or {}).get("id"))
    if action is None or not obj or external_id is None:
        raise _reject("v1 webhook without event/action, object or id")
    merged: list[str] = []
    if action == "merged":
        merged = [str(m) for m in ((current or {}).get("merged_ids") or []) if str(m) != external_id]
    stamp = meta.get("timestamp_micro") or meta.get("timestamp") or (state or {}).get("update_time")
    if stamp in (None, ""):
        stamp = _body_digest(doc)
    return WebhookEvent(
        platform=PLATFORM, account_id=str(meta.get("company_id") or ""),
        event_key=f"v1:{obj}:{external_id}:{raw_action}:{stamp}",
        entity=_unified_entity(str(obj), state), action=action, external_id=external_id,
        occurred_at=parse_time(meta.get("timestamp")), merged_ids=merged, payload=dict(doc))


def _body_digest(doc: Mapping) -> str:
    """A v1 delivery's key part when it names no time: without one, every later event of the same
    record and action would share the first one's key and be dropped as its duplicate. A digest of
    the body tells two events apart while a redelivery, the same body but for its `retry` counter,
    keeps the first one's key."""
    same = {k: v for k, v in doc.items() if k != "retry"}
    if isinstance(same.get("meta"), Mapping):
        same["meta"] = {k: v for k, v in same["meta"].items() if k not in ("retry", "attempt")}
    text = json.dumps(same, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "body-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def parse_webhook_body(body: bytes) -> list[WebhookEvent]:
    """The normalized event of one delivery (Pipedrive sends one event per request)."""
    try:
        doc = strict_json(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise _reject(f"webhook body is not JSON ({err})") from None
    if not isinstance(doc, Mapping):
        raise _reject("webhook body is not a JSON object")
    meta = doc.get("meta")
    try:
        if isinstance(meta, Mapping) and ("entity" in meta or str(meta.get("version", "")).startswith("2")):
            return [_parse_v2(doc)]
        if "event" in doc or (isinstance(meta, Mapping) and "object" in meta):
            return [_parse_v1(doc)]
    except (KeyError, TypeError, AttributeError) as exc:
        raise _reject(f"malformed webhook: {type(exc).__name__}") from None
    raise _reject("not a Pipedrive webhook payload (no meta.entity nor event)")

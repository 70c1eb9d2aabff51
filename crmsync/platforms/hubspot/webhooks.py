"""HubSpot webhook deliveries: signature checks (v1, v2, v3) and normalized events.

v3 (X-HubSpot-Signature-v3 + X-HubSpot-Request-Timestamp in ms): base64 HMAC-SHA256 keyed by
the app secret over METHOD + URI + raw body + timestamp, where the URI has only HubSpot's short
list of percent-encodings decoded. Timestamps older than 5 minutes are refused (replay; HubSpot's
"reject the request if the timestamp is older than 5 minutes"; CRMSYNC_WEBHOOK_TOLERANCE_SECONDS
can narrow the window), and so are timestamps more than a minute ahead (a clock that far off is
not HubSpot's).
v1/v2 (X-HubSpot-Signature + X-HubSpot-Signature-Version): hex SHA-256 of secret + body (v1) or
secret + METHOD + URI + body (v2). They carry no timestamp, so a captured delivery stays valid
forever: they are refused unless the caller allows them (a config of an app that cannot sign
with v3). HubSpot sends v3 alongside v1, and a request carrying v3 is judged by v3 alone.

Event identity: HubSpot retries a delivery with the same `eventId` and a higher
`attemptNumber`, and says eventId alone is "not guaranteed to be unique", so `event_key` is
subscriptionType + objectTypeId + objectId + eventId + occurredAt - everything that names the
change and nothing that changes between attempts.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from crmsync.platforms.base import WebhookEvent, WebhookRequest, strict_json
from crmsync.platforms.errors import WebhookRejected

from .errors import PLATFORM
from .mapping import ENTITY_BY_OBJECT, OBJECT_BY_TYPE_ID, SINGULAR

MAX_AGE_SECONDS = 300
MAX_SKEW_AHEAD_SECONDS = 60
MAX_EVENTS = 100
# The only encodings HubSpot decodes before signing the URI (validating-requests guide).
_URI_DECODES = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
ACTIONS = {"creation": "created", "propertyChange": "updated", "deletion": "deleted",
           "privacyDeletion": "deleted", "merge": "merged", "restore": "restored",
           "associationChange": "updated"}
_OBJECT_BY_SINGULAR = {v: k for k, v in SINGULAR.items()}


def normalize_uri(uri: str) -> str:
    out = []
    i = 0
    while i < len(uri):
        chunk = uri[i:i + 3]
        if chunk[:1] == "%" and chunk.upper() in _URI_DECODES:
            out.append(_URI_DECODES[chunk.upper()])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def _reject(message: str, status: int = 401) -> WebhookRejected:
    return WebhookRejected(message, http_status=status, platform=PLATFORM)


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = (method.upper() + normalize_uri(uri)).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def signature_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def signature_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.upper().encode() + uri.encode() + body).hexdigest()


def verify(request: WebhookRequest, secret: str, *, now: datetime | None = None,
           max_age_seconds: float = MAX_AGE_SECONDS, legacy_signatures: bool = False) -> str:
    """Raise WebhookRejected(401) unless authentic and fresh (v3), or authentic by v1/v2 when
    `legacy_signatures` allows them; returns the version checked."""
    if not secret:
        raise _reject("no webhook secret is configured")
    headers = {str(k).lower(): str(v) for k, v in (request.headers or {}).items()}
    body = request.body or b""
    v3 = headers.get("x-hubspot-signature-v3")
    if v3 is not None:
        stamp = headers.get("x-hubspot-request-timestamp", "").strip()
        if not stamp.isdigit():
            raise _reject("missing or malformed X-HubSpot-Request-Timestamp")
        now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
        age_ms = now_ms - int(stamp)
        if age_ms > min(max_age_seconds, MAX_AGE_SECONDS) * 1000:
            raise _reject(f"webhook timestamp is older than {min(max_age_seconds, MAX_AGE_SECONDS):g} seconds")
        if -age_ms > MAX_SKEW_AHEAD_SECONDS * 1000:
            raise _reject("webhook timestamp is in the future")
        expected = signature_v3(secret, request.method, request.url, body, stamp)
        if not hmac.compare_digest(expected.encode(), v3.strip().encode()):
            raise _reject("webhook signature (v3) does not match")
        return "v3"
    given = headers.get("x-hubspot-signature")
    if given is None:
        raise _reject("webhook carries no HubSpot signature")
    if not legacy_signatures:
        raise _reject("webhook carries no v3 signature; v1/v2 signatures have no timestamp and are not accepted")
    version = headers.get("x-hubspot-signature-version", "v1").strip().lower()
    if version == "v1":
        expected = signature_v1(secret, body)
    elif version == "v2":
        expected = signature_v2(secret, request.method, request.url, body)
    else:
        raise _reject(f"unsupported signature version {version[:10]!r}")
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise _reject(f"webhook signature ({version}) does not match")
    return version


def _object_type(event: dict, subscription: str) -> str | None:
    prefix = subscription.split(".", 1)[0]
    if prefix == "object":
        return OBJECT_BY_TYPE_ID.get(str(event.get("objectTypeId") or ""))
    return _OBJECT_BY_SINGULAR.get(prefix)


def _external_id(object_type: str | None, object_id: Any) -> str:
    # Activities span four object types with separate id spaces, so their ids carry the type.
    entity = ENTITY_BY_OBJECT.get(object_type or "")
    if entity == "activity":
        return f"{SINGULAR[object_type]}:{object_id}"
    return str(object_id)


def _when(ms: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _json(body: bytes) -> Any:
    try:
        return strict_json(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise WebhookRejected(f"webhook body is not JSON ({err})", http_status=400, platform=PLATFORM) from None


def signing_portals(body: bytes) -> set[str]:
    """The portals whose app secrets must sign this delivery: all that is read of it before the
    signature is checked. The events themselves are checked (`checked_events`) only after."""
    data = _json(body)
    if not isinstance(data, list):
        raise WebhookRejected("webhook body must be a JSON array of events", http_status=400, platform=PLATFORM)
    portals = set()
    for n, event in enumerate(data):
        if isinstance(event, dict) and "portalId" in event:
            portal = portal_id(event["portalId"])
            if portal is None:
                raise WebhookRejected(f"event {n}: portalId must be a positive whole number", http_status=400,
                                      platform=PLATFORM)
            portals.add(portal)
    if not portals:
        raise WebhookRejected("no event names a HubSpot portal (portalId)", http_status=400, platform=PLATFORM)
    return portals


def portal_id(value: Any) -> str | None:
    """A HubSpot account id (a positive integer; sent as a JSON number) as text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():   # 42.0 is an integer to JSON Schema too
        value = int(value)
    if isinstance(value, int):
        return str(value) if value > 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) > 0:
        return str(int(value))
    return None


def checked_events(body: bytes) -> list[dict]:
    """The delivery's events as sent, refused (400) unless each has what `parse` relies on."""
    data = _json(body)
    if not isinstance(data, list):
        raise WebhookRejected("webhook body must be a JSON array of events", http_status=400, platform=PLATFORM)
    if len(data) > MAX_EVENTS:
        raise WebhookRejected(f"webhook body has {len(data)} events; HubSpot sends at most {MAX_EVENTS}",
                              http_status=400, platform=PLATFORM)
    for n, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise WebhookRejected(f"event {n} is not an object", http_status=400, platform=PLATFORM)
        subscription = raw.get("subscriptionType") or raw.get("eventType")
        if (not isinstance(subscription, str) or "." not in subscription or raw.get("objectId") is None
                or portal_id(raw.get("portalId")) is None or raw.get("eventId") is None):
            missing = [k for k, v in (("subscriptionType", subscription), ("objectId", raw.get("objectId")),
                                      ("portalId", portal_id(raw.get("portalId"))), ("eventId", raw.get("eventId")))
                       if v is None]
            raise WebhookRejected(f"event {n} lacks {', '.join(missing) or 'a valid subscriptionType'}",
                                  http_status=400, platform=PLATFORM)
        merged = raw.get("mergedObjectIds")
        if merged is not None and not isinstance(merged, list):
            raise WebhookRejected(f"event {n}: mergedObjectIds must be a list", http_status=400, platform=PLATFORM)
    return data


def parse(body: bytes) -> list[WebhookEvent]:
    return [_event(raw) for raw in checked_events(body)]


def _event(raw: dict) -> WebhookEvent:
    subscription = raw.get("subscriptionType") or raw.get("eventType")
    object_type = _object_type(raw, subscription)
    entity = ENTITY_BY_OBJECT.get(object_type or "")
    kind = subscription.split(".", 1)[1]
    action = ACTIONS.get(kind, "updated")
    object_id = raw["objectId"]
    merged: list[str] = []
    if kind == "merge":
        survivor = raw.get("newObjectId") or raw.get("primaryObjectId") or object_id
        gone = [*(raw.get("mergedObjectIds") or []), raw.get("primaryObjectId"), object_id]
        merged = sorted({_external_id(object_type, g) for g in gone if g is not None and str(g) != str(survivor)})
        object_id = survivor
    key = ":".join(str(p) for p in (subscription, raw.get("objectTypeId") or "", raw["objectId"],
                                    raw["eventId"], raw.get("occurredAt") or ""))
    return WebhookEvent(
        platform=PLATFORM, account_id=portal_id(raw["portalId"]), event_key=key, entity=entity, action=action,
        external_id=_external_id(object_type, object_id), occurred_at=_when(raw.get("occurredAt")),
        property_name=raw.get("propertyName"), property_value=raw.get("propertyValue"),
        merged_ids=merged, payload=raw)

"""The one place where a Salesforce answer becomes a `crmsync.platforms.errors` error: a non-2xx
REST answer (`error_for`) and one failed record of an sObject Collections call (`record_error`).

Salesforce answers an error with a JSON array of ``{"message", "errorCode", "fields"?}``
("Status Codes and Error Responses",
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm); inside
sObject Collections results the same codes appear per record as ``errors[].statusCode``.
Messages carry the call, Salesforce's code and its message, never a session id.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from crmsync.platforms.errors import (
    AuthenticationError,
    Conflict,
    NotFound,
    PlatformError,
    RateLimited,
    TransientError,
    ValidationError,
)

from .limits import seconds_to_recheck

PLATFORM = "salesforce"
# ConcurrentPerOrgLongTxn: too many requests of 20 s or more run at once in the org; one of them
# finishing frees a slot, so a short wait helps (unlike a spent allocation).
CONCURRENT_WAIT = 30.0
CONCURRENT = "concurrent"
DAILY = "daily"


def first_error(body: Any) -> dict:
    """The first ``{"errorCode", "message"}`` of an error answer's JSON ({} when it is not one)."""
    return body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}


def error_code(body: Any) -> str | None:
    return first_error(body).get("errorCode")


def error_for(status: int, body: Any, *, where: str, reason: str | None = None, entity: str | None = None,
              external_id: str | None = None) -> PlatformError:
    """The typed error of a non-2xx answer; `body` is its decoded JSON (None if not JSON), `where`
    the call ("GET /services/data/v62.0/query")."""
    first = first_error(body)
    code = str(first.get("errorCode") or "")
    text = str(first.get("message") or "")
    message = f"{where}: {code or reason or 'error'}: {text[:200]}"
    kw = {"platform": PLATFORM, "status": status, "entity": entity, "external_id": external_id}
    if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
        # Never a 429 and never a Retry-After: "TotalRequests Limit exceeded." means the org's
        # allocation is spent and retrying soon is pointless; ConcurrentPerOrgLongTxn is short.
        if "concurrent" in text.lower():
            return RateLimited(message, retry_after=CONCURRENT_WAIT, policy=CONCURRENT, **kw)
        # A rolling 24 hours names no reset: the org is parked until the budget's window re-opens
        # (within the hour, limits.RECHECK_SECONDS), when one call finds out whether calls have aged out.
        wait = seconds_to_recheck()
        return RateLimited(message, retry_after=wait, policy=DAILY,
                           resume_at=datetime.fromtimestamp(time.time() + wait, UTC), **kw)
    if status in (401, 403):
        return AuthenticationError(message, **kw)
    if status == 300:  # an upsert's external id matched several records
        return Conflict(f"{where}: the external id matches several records", **kw)
    if status == 404:
        return NotFound(message, **kw)
    if status == 409 or code == "DUPLICATE_VALUE":
        return Conflict(message, **kw)
    if status >= 500 or status == 429:
        return TransientError(message, **kw)
    return ValidationError(message, **kw)


def record_error(result: dict, *, entity: str | None = None, external_id: str | None = None) -> PlatformError:
    """The error of one failed record of an sObject Collections call (`statusCode` errors)."""
    errors = result.get("errors") or [{}]
    code = str(errors[0].get("statusCode") or "UNKNOWN")
    message = f"{code}: {str(errors[0].get('message') or '')[:200]}"
    kw = {"platform": PLATFORM, "entity": entity, "external_id": external_id}
    if code in ("ENTITY_IS_DELETED", "NOT_FOUND"):
        return NotFound(message, **kw)
    if code == "DUPLICATE_VALUE":
        return Conflict(message, **kw)
    if code == "REQUEST_LIMIT_EXCEEDED":
        return RateLimited(message, retry_after=CONCURRENT_WAIT, policy=CONCURRENT, **kw)
    return ValidationError(message, **kw)

"""The one place where a HubSpot HTTP answer becomes a `crmsync.platforms.errors` error.

Messages carry HubSpot's own `message`/`category` and the correlation id (useful to HubSpot
support), never request headers, tokens or form bodies.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from requests.structures import CaseInsensitiveDict

from crmsync.platforms.errors import (
    AuthenticationError,
    Conflict,
    NotFound,
    PlatformError,
    RateLimited,
    TransientError,
    ValidationError,
)
from crmsync.platforms.http import retry_after_seconds

PLATFORM = "hubspot"
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")
# Without any other hint, a ten-secondly 429 clears within the window; a search 429 within 1 s.
DEFAULT_WINDOW_SECONDS = 10.0
SEARCH_WINDOW_SECONDS = 1.0


def parse_body(text: str | bytes | None) -> dict:
    if not text:
        return {}
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def existing_id_from(message: str | None) -> str | None:
    """HubSpot puts the id of the record a 409 collided with only inside the message."""
    match = _EXISTING_ID.search(message or "")
    return match.group(1) if match else None


def next_midnight(now: datetime, tz_name: str | None) -> datetime:
    """HubSpot's daily quota resets at midnight in the account's time zone (account-info
    `timeZone`); without one we assume UTC."""
    tz = UTC
    if tz_name:
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):  # unknown zone name: fall back to UTC rather than fail the sync
            tz = UTC
    local = now.astimezone(tz)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(UTC)


def rate_limit_kind(body: Mapping[str, Any]) -> str:
    """Which bucket a 429 belongs to: 'daily', 'search' (the secondly search limit) or 'standard'."""
    policy = str(body.get("policyName") or "").upper()
    if policy == "DAILY":
        return "daily"
    if policy in ("TEN_SECONDLY_ROLLING", "TEN_SECONDLY"):
        return "standard"
    message = str(body.get("message") or "").lower()
    if policy == "SECONDLY" or body.get("category") == "RATE_LIMITS" or "secondly limit" in message:
        return "search"
    return "standard"


def error_for(status: int, body_text: str | bytes | None, headers: Mapping[str, str] | None = None, *,
              search: bool = False, entity: str | None = None, external_id: str | None = None,
              time_zone: str | None = None, now: datetime | None = None) -> PlatformError:
    """The typed error for a non-2xx HubSpot answer."""
    headers = CaseInsensitiveDict(headers or {})
    body = parse_body(body_text)
    message = str(body.get("message") or body.get("error_description") or f"HTTP {status}")
    category = body.get("category") or body.get("status") or body.get("error")
    correlation = body.get("correlationId")
    detail = message + (f" [{category}]" if category and category != "error" else "") + \
        (f" (correlation {correlation})" if correlation else "")
    kw = {"platform": PLATFORM, "status": status, "entity": entity, "external_id": external_id}
    if status == 401 or status == 403:
        return AuthenticationError(detail, **kw)
    if status == 404:
        return NotFound(detail, **kw)
    if status == 409:
        return Conflict(detail, existing_id=existing_id_from(message), **kw)
    if status == 429:
        kind = rate_limit_kind(body) if body else ("search" if search else "standard")
        if search and kind == "standard" and not body.get("policyName"):
            kind = "search"
        retry_after = _retry_after(headers)
        if kind == "daily":
            now = now or datetime.now(UTC)
            resume_at = next_midnight(now, time_zone)
            return RateLimited(detail, retry_after=max(1.0, (resume_at - now).total_seconds()),
                               resume_at=resume_at, policy="daily", **kw)
        if retry_after is None:
            interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
            retry_after = (SEARCH_WINDOW_SECONDS if kind == "search"
                           else float(interval) / 1000 if interval and interval.isdigit() else DEFAULT_WINDOW_SECONDS)
        return RateLimited(detail, retry_after=retry_after, policy=kind, **kw)
    if status in (400, 414, 422) or (400 <= status < 500 and status not in (408, 423, 477)):
        return ValidationError(detail, **kw)
    err = TransientError(detail, **kw)
    # 423 Locked: HubSpot's upsert locks last 2 s; 477 and 503 may carry Retry-After.
    err.retry_after = _retry_after(headers) or (2.0 if status == 423 else None)
    return err


def _retry_after(headers: Mapping[str, str]) -> float | None:
    return retry_after_seconds(headers.get("Retry-After")) if headers else None


def batch_item_error(error: Mapping[str, Any], *, entity: str | None = None,
                     external_id: str | None = None) -> PlatformError:
    """One entry of a 207 body's `errors[]` as a typed error."""
    category = str(error.get("category") or "")
    message = str(error.get("message") or category or "batch item failed")
    kw = {"platform": PLATFORM, "entity": entity, "external_id": external_id}
    if category == "OBJECT_NOT_FOUND":
        return NotFound(message, status=404, **kw)
    if category == "CONFLICT":
        return Conflict(message, existing_id=existing_id_from(message), status=409, **kw)
    if category in ("RATE_LIMITS", "RATE_LIMIT"):
        return RateLimited(message, status=429, **kw)
    if category.startswith("INVALID_AUTH") or category in ("MISSING_SCOPES", "EXPIRED_AUTHENTICATION"):
        return AuthenticationError(message, status=401, **kw)
    status = error.get("status")
    if isinstance(status, int) and status >= 500:
        return TransientError(message, status=status, **kw)
    return ValidationError(message, status=400, **kw)

"""The one place where a Pipedrive HTTP answer becomes a `crmsync.platforms.errors` error.

Messages carry Pipedrive's own `error` text and the call's method and path, never a token: a
legacy `api_token=` in a text is scrubbed.
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping
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
from crmsync.platforms.http import lower_keys, retry_after_seconds

PLATFORM = "pipedrive"
# A 429 that names no wait: the burst window is 2 s.
BURST_WINDOW_SECONDS = 2.0
# A Cloudflare block (403 HTML page after ignored 429s) lasts a while: back off a minute.
ABUSE_BACKOFF_SECONDS = 60.0

_SECRET_QUERY = re.compile(r"(api_token|access_token|refresh_token|client_secret)=[^&\s]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """Remove credentials that might sit in a URL's query (the legacy `api_token=` form)."""
    return _SECRET_QUERY.sub(r"\1=***", text)


def message_of(body: Any, default: str) -> str:
    if isinstance(body, dict):
        text = body.get("error") or body.get("message") or default
        info = body.get("error_info")
        if info and "developers.pipedrive.com" not in str(info):
            text = f"{text}: {info}"
        return scrub(str(text))[:300]
    return default


def seconds_to_midnight_utc() -> float:
    # The token budget resets at midnight server time; without a Retry-After we assume UTC.
    now = time.time()
    return 86400.0 - (now % 86400.0)


def error_for(status: int, body: Any, headers: Mapping[str, Any], *, where: str, reason: str | None = None,
              entity: str | None = None, external_id: str | None = None) -> PlatformError:
    """The typed error of a non-2xx Pipedrive answer; `body` is its decoded JSON (None if not JSON),
    `where` the call ("GET /api/v2/persons")."""
    message = f"{scrub(where)}: " + message_of(body, reason or "error")
    kw = {"platform": PLATFORM, "status": status, "entity": entity, "external_id": external_id}
    h = lower_keys(headers)
    if status == 429:
        retry_after = retry_after_seconds(h.get("retry-after"))
        text = (body or {}).get("error", "") if isinstance(body, dict) else ""
        if "daily" in str(text).lower() or h.get("x-daily-ratelimit-token-remaining") == "0":
            wait = retry_after if retry_after is not None else seconds_to_midnight_utc()
            return RateLimited(message, retry_after=wait, policy="daily",
                               resume_at=datetime.fromtimestamp(time.time() + wait, UTC), **kw)
        reset = retry_after_seconds(h.get("x-ratelimit-reset"))
        wait = retry_after if retry_after is not None else (reset if reset is not None else BURST_WINDOW_SECONDS)
        return RateLimited(message, retry_after=max(wait, 0.05), policy="standard", **kw)
    if status == 401:
        return AuthenticationError(message, **kw)
    if status == 402:
        return AuthenticationError(message + " (company account not open)", **kw)
    if status == 403:
        if body is None:  # Cloudflare's HTML page: the abuse block after ignoring 429s
            return RateLimited(message + " (blocked; back off)", retry_after=ABUSE_BACKOFF_SECONDS, policy="abuse",
                               **kw)
        if isinstance(body, dict) and body.get("code"):
            return ValidationError(message, **kw)  # an account limit such as open deals
        return AuthenticationError(message, **kw)
    if status in (404, 410):
        return NotFound(message, **kw)
    if status == 409:
        return Conflict(message, **kw)
    if status >= 500:
        return TransientError(message, **kw)
    return ValidationError(message, **kw)

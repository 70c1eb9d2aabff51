"""Timestamps as Pipedrive writes them: v2 RFC 3339 (``2025-02-14T16:40:03Z``), v1 ``2025-02-14 16:40:03``.

The sandbox keeps times as whole epoch seconds, the precision Pipedrive shows, so records edited in the
same second share an ``update_time`` exactly as on the real API.
"""
from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from .errors import BadRequest


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


def v1_time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ts)))


def iso_millis(ts: float) -> str:
    """Webhook meta timestamps carry milliseconds (``2025-02-14T16:40:03.512Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"


def parse_rfc3339(value: str, name: str) -> int:
    """Parse a query/body timestamp; 400 with the parameter's name when it is not RFC 3339."""
    try:
        dt = datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        raise BadRequest(f"Invalid value for {name}: expected RFC3339 date-time, e.g. 2025-01-01T10:20:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")


def check_date(value, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _DATE.match(value):
        raise BadRequest(f"Invalid value for {name}: expected YYYY-MM-DD")
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise BadRequest(f"Invalid value for {name}: not a calendar date") from None
    return value


def check_clock_time(value, name: str) -> str | None:
    """``HH:MM`` or ``HH:MM:SS`` in; ``HH:MM:SS`` out (v2 responses carry seconds)."""
    if value is None or value == "":
        return None
    m = _TIME.match(value) if isinstance(value, str) else None
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise BadRequest(f"Invalid value for {name}: expected HH:MM or HH:MM:SS")
    return f"{m.group(1)}:{m.group(2)}:{m.group(3) or '00'}"

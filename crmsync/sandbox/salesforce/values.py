"""Field values on the wire: datetimes, dates, 18-character record ids, and the checks a write
applies to each field type.

* JSON datetimes look like ``2025-02-14T16:40:03.000+0000`` (UTC, offset without a colon); dates
  ``2025-02-14`` ("Valid Date and DateTime Formats",
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_valid_date_formats.htm).
* Record ids: 15 case-sensitive characters starting with the object's key prefix, plus a
  3-character case-safe suffix computed from where the capitals are (the 18-character form the API
  returns; https://help.salesforce.com/s/articleView?id=000385585&type=1).
* Multi-select picklists travel as one string, the values joined by ``;``.
* Write errors are Salesforce's status codes: REQUIRED_FIELD_MISSING, INVALID_FIELD,
  INVALID_FIELD_FOR_INSERT_UPDATE, INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST, STRING_TOO_LONG,
  INVALID_EMAIL_ADDRESS, MALFORMED_ID, INVALID_CROSS_REFERENCE_KEY, INVALID_TYPE_ON_FIELD_IN_RECORD
  ("Status Codes and Error Responses",
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm).
"""
from __future__ import annotations

import re
from datetime import UTC, date, datetime

from .schema import Field

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-5]{3})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?$")


class FieldProblem(ValueError):
    """One field of a write is wrong; ``code`` is Salesforce's status code."""

    def __init__(self, code: str, message: str, fields: list[str]):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields

    def as_error(self) -> dict:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


def id18(id15: str) -> str:
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(id15[start:start + 5]) if "A" <= ch <= "Z")
        suffix += _ALPHABET[bits]
    return id15 + suffix


def make_id(prefix: str, number: int, pod: str = "Hn") -> str:
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return id18(prefix + pod + digits.rjust(10, "0"))


def normalize_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id; None when it is not an id."""
    if not isinstance(value, str) or not _ID.match(value):
        return None
    full = id18(value[:15])
    return full if len(value) == 15 or full.lower() == value.lower() else None


def format_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    m = _DATETIME.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not an ISO 8601 date-time")
    day, clock, frac, zone = m.groups()
    zone = zone or "Z"
    if zone != "Z" and ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    parsed = datetime.fromisoformat(f"{day}T{clock}{(frac or '')[:7]}{'+00:00' if zone == 'Z' else zone}")
    return parsed.astimezone(UTC)


def render(f: Field, value):
    """A stored value as JSON shows it."""
    if value is None:
        return None
    if f.type == "datetime":
        return format_datetime(value)
    if f.type == "date":
        return value.isoformat()
    return value


def coerce(f: Field, value, find_object):
    """A value from a request body as the store keeps it; raises FieldProblem. ``find_object(id)``
    names the object of an existing id (None when there is none)."""
    if value is None or value == "":
        if not f.nillable and f.default is None:
            raise FieldProblem("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{f.name}]", [f.name])
        return None
    kind = f.type
    try:
        if kind in ("string", "textarea", "combobox", "phone", "url", "email"):
            if not isinstance(value, str):
                raise TypeError
            if f.length and len(value) > f.length:
                raise FieldProblem("STRING_TOO_LONG", f"{f.label or f.name}: data value too large: {value[:40]} "
                                   f"(max length={f.length})", [f.name])
            if kind == "email" and not _EMAIL.match(value):
                raise FieldProblem("INVALID_EMAIL_ADDRESS", f"{f.label or f.name}: invalid email address: {value}",
                                   [f.name])
            return value
        if kind in ("picklist", "multipicklist"):
            if not isinstance(value, str):
                raise TypeError
            chosen = [v for v in value.split(";")] if kind == "multipicklist" else [value]
            if f.restricted and any(v not in f.picklist for v in chosen):
                bad = next(v for v in chosen if v not in f.picklist)
                raise FieldProblem("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                   f"{f.label or f.name}: bad value for restricted picklist field: {bad}", [f.name])
            return ";".join(dict.fromkeys(chosen)) if kind == "multipicklist" else value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise TypeError
            return int(value)
        if kind in ("double", "currency", "percent"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if kind == "date":
            if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}$", value):
                raise TypeError
            return date.fromisoformat(value)
        if kind == "datetime":
            return parse_datetime(value)
        if kind == "reference":
            ref = normalize_id(value)
            if ref is None:
                raise FieldProblem("MALFORMED_ID", f"{f.label or f.name}: id value of incorrect type: {value}",
                                   [f.name])
            target = find_object(ref)
            if target is None or (f.reference_to and target not in f.reference_to and "User" not in f.reference_to):
                raise FieldProblem("INVALID_CROSS_REFERENCE_KEY",
                                   f"{f.label or f.name}: id value of incorrect type: {value}", [f.name])
            return ref
    except (TypeError, ValueError) as exc:
        if isinstance(exc, FieldProblem):
            raise
        raise FieldProblem("INVALID_TYPE_ON_FIELD_IN_RECORD",
                           f"{f.label or f.name}: value not of required type: {str(value)[:60]}", [f.name]) from None
    return value

"""Why the ingest app refuses a request. Each error carries its HTTP status and a stable code; the app
answers every one of them as `{"error": code, "message": ...}` and writes nothing.

Messages name what was wrong with the request, never a secret or a stack trace. Resending the same
request is refused the same way (`crmsync.errors.Fatal`).
"""
from __future__ import annotations

from typing import Any

from crmsync.errors import Fatal


class IngestError(Fatal):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: Any = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.details = details

    def body(self) -> dict:
        out = {"error": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


class MalformedBody(IngestError):
    """Not JSON, not the JSON shape the endpoint takes, or not a payload the CRM sends."""
    code = "malformed_body"


class UnsupportedContentType(IngestError):
    status = 415
    code = "unsupported_content_type"


class BodyTooLarge(IngestError):
    status = 413
    code = "body_too_large"


class Unauthenticated(IngestError):
    """Missing or wrong signature, credentials, API key or bearer token; a stale timestamp."""
    status = 401
    code = "unauthenticated"


class Forbidden(IngestError):
    status = 403
    code = "forbidden"


class UnknownTenant(IngestError):
    """No config answers for this CRM account (HubSpot portalId, Pipedrive config id)."""
    status = 404
    code = "unknown_tenant"


class UnknownEventType(IngestError):
    status = 404
    code = "unknown_event_type"


class InvalidEvent(IngestError):
    """A product event whose fields fail validation; `details` maps field -> messages."""
    status = 422
    code = "invalid_event"


class NotConfigured(IngestError):
    """The deployment lacks a setting the endpoint needs (e.g. no cron secret)."""
    status = 503
    code = "not_configured"

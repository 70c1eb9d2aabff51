"""Errors a CRM adapter raises. Each platform decides, in one place (its `errors.py`), which HTTP
answer becomes which error; the sync engine and the workers only look at these types.

Each is rooted in `crmsync.errors` by consequence: `TransientError` and `RateLimited` are
`Retryable`, `AuthenticationError` and `WebhookRejected` are `Fatal`, and what the CRM says about
one record (`NotFound`, `Conflict`, `ValidationError`) is `SkipRecord`.
"""
from __future__ import annotations

from datetime import datetime

from crmsync.errors import CrmsyncError, Fatal, Retryable, SkipRecord


class PlatformError(CrmsyncError):
    """Base of the CRM errors; carries where it happened (platform, entity, record, HTTP status)."""

    def __init__(self, message: str, *, platform: str | None = None, status: int | None = None,
                 entity: str | None = None, external_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.platform = platform
        self.status = status
        self.entity = entity
        self.external_id = external_id

    def __str__(self) -> str:
        where = " ".join(p for p in (self.platform, self.entity, self.external_id) if p)
        code = f" (HTTP {self.status})" if self.status else ""
        return f"{where + ': ' if where else ''}{self.message}{code}"


class AuthenticationError(PlatformError, Fatal):
    """The token is missing, wrong, expired beyond refresh, or lacks a scope."""


class NotFound(PlatformError, SkipRecord):
    """The record is not (or no longer) in the CRM."""


class Conflict(PlatformError, SkipRecord):
    """The CRM already holds a record with this unique value (HubSpot 409 on a duplicate email)."""

    def __init__(self, message: str, *, existing_id: str | None = None, **kw):
        super().__init__(message, **kw)
        self.existing_id = existing_id


class ValidationError(PlatformError, SkipRecord):
    """The CRM refused the input (HubSpot 400 VALIDATION_ERROR, Pipedrive 400)."""


class TransientError(PlatformError, Retryable):
    """5xx, timeouts, dropped connections: the same call may succeed later."""


class RateLimited(TransientError):
    """The account's budget (ours or the CRM's 429) says wait. `retry_after` in seconds;
    `resume_at` is set when a daily quota is spent and only its reset helps. A wait, not a failure:
    it does not use up the retries."""
    counts_as_attempt = False

    def __init__(self, message: str, *, retry_after: float = 1.0, resume_at: datetime | None = None,
                 policy: str | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.resume_at = resume_at
        self.policy = policy


class PagingStuck(PlatformError, Fatal):
    """The CRM answered a listing page with the cursor it was asked with, or with one read before
    in the same unit (A -> B -> A): following it would read the same pages for ever (a CRM or
    proxy bug). Nothing of the unit is written."""


class WebhookRejected(PlatformError, Fatal):
    """A webhook request failed verification (signature, timestamp, auth) or could not be parsed."""

    def __init__(self, message: str, *, http_status: int = 401, **kw):
        super().__init__(message, **kw)
        self.http_status = http_status

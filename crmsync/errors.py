"""One error tree for all of crmsync, by consequence: what the code that catches an error should
do next, not where it came from.

    CrmsyncError
    ├── Retryable     the same work may succeed later: retry it (backoff, or the wait it names)
    ├── Fatal         trying again fails the same way: stop and store the reason for a person
    └── SkipRecord    this one record cannot be carried: note it on the record, go on with the rest

Every package's errors subclass one of the three roots (`platforms/errors.py`, `sync/errors.py`,
`automation/errors.py`, `ingest/errors.py`, `ratelimit.py`, `tasks/`, `configs.py`,
`credentials.py`, `settings.py`), so the task runner's retry classification
(`crmsync.tasks.retry.classify`) is one `isinstance` check, and a client cannot forget to
translate a case: a Redis blip in the rate budget (`RateBudgetUnavailable`) is `Retryable` where
it is raised, whichever CRM client it passes through.

A `Retryable` says how long to wait: `retry_after` (seconds) and `resume_at` (a spent daily quota
resets then). `counts_as_attempt = False` marks a rate-limit wait, which is not a failure and does
not use up the retries. A `SkipRecord` that escapes its record's loop (a single-record task) ends
that task like a `Fatal`: retrying would fail the same way.

Errors raised by libraries are not in the tree; the few that mean "infrastructure blip" (the
database, Redis or the network went away) are listed once, in `crmsync.tasks.retry`.
"""
from __future__ import annotations

from datetime import datetime


class CrmsyncError(Exception):
    """Root of every error crmsync raises on purpose. Messages carry enough context to act and
    never a secret."""
    retryable = False


class Retryable(CrmsyncError):
    """The same work may succeed later: a 5xx, a timeout, a dropped connection, the rate budget's
    store away for a moment, a CRM rate limit."""
    retryable = True
    retry_after: float | None = None     # seconds the cause itself asks us to wait (None: back off)
    resume_at: datetime | None = None    # when a spent daily quota resets
    counts_as_attempt = True             # False for rate-limit waits: they never use up the retries


class Fatal(CrmsyncError):
    """Trying again fails the same way until a person changes something (credentials, a config, a
    rule, the input): stop and store the reason."""
    retryable = False


class SkipRecord(CrmsyncError):
    """One record cannot be carried (the CRM refused its values, it is gone, it collides with
    another): recorded against that record while the rest of the page or batch goes on."""
    retryable = False

"""Library-shaped functions (session first, then string ids) that tests register in
`crmsync.tasks.names.TASKS` under test-only names, to watch the inline runner's ordering, retries and
failure hooks. Production's table never names them."""
from __future__ import annotations

import inspect

from crmsync.platforms.errors import RateLimited, TransientError, ValidationError

CALLS: list[tuple[str, int]] = []          # (label, stack depth)
PLAN: dict[str, list[str]] = {}            # label -> labels it enqueues
FAILURES: dict[str, list[BaseException]] = {}  # label -> errors to raise, one per call
FAILED: list[tuple[str, str]] = []         # (label, reason) given to the failure hook


def reset() -> None:
    CALLS.clear()
    PLAN.clear()
    FAILURES.clear()
    FAILED.clear()


def record(session, label: str) -> None:
    from crmsync.tasks import enqueue
    CALLS.append((label, len(inspect.stack())))
    errors = FAILURES.get(label)
    if errors:
        raise errors.pop(0)
    for child in PLAN.get(label, []):
        enqueue("test.record", child)


def on_failure(session, label: str, reason: str) -> None:
    FAILED.append((label, reason))


def transient(message: str = "502 from the CRM") -> TransientError:
    return TransientError(message, platform="hubspot", status=502)


def rate_limited(seconds: float) -> RateLimited:
    return RateLimited("budget spent", retry_after=seconds, platform="hubspot", status=429)


def invalid() -> ValidationError:
    return ValidationError("email is not valid", platform="hubspot", status=400)

"""What to do after a task raised: retry (when) or fail for good. Shared by the Celery base task
(`workers/base.py`) and the inline runner (`crmsync.tasks.inline`).

The answer is read off the error tree (`crmsync.errors`): a `Retryable` is retried, anything else
fails at once with its reason stored by the task's failure hook. A rate-limit wait
(`counts_as_attempt = False`) waits what the budget or the CRM says and does not use up the
retries; other retryables back off exponentially with full jitter, at most `MAX_RETRIES` times.
Library errors are not in the tree: the few that mean an infrastructure blip are listed once here.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from crmsync.errors import Retryable

MAX_RETRIES = 8                # transient errors; rate-limit waits have no count (they are not failures)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0
# A countdown is an ETA message held in worker RAM and in Redis' unacked hash; one longer than the
# visibility timeout is redelivered. Longer waits live in PostgreSQL (paused_until) and are re-armed
# every MAX_COUNTDOWN_SECONDS or picked up by the sweeper.
MAX_COUNTDOWN_SECONDS = 600.0


@dataclass(frozen=True)
class Decision:
    action: str          # "retry" | "fail"
    delay: float = 0.0
    counts: bool = True  # whether this retry counts against MAX_RETRIES (rate waits do not)
    reason: str = ""


@cache
def infrastructure_blips() -> tuple[type[BaseException], ...]:
    """Library errors worth another try: the database, Redis or the network went away, a duplicate
    delivery lost a race on a unique key. A bug (AttributeError, TypeError, ...) is not: it fails at
    once with its reason stored instead of retrying for hours."""
    import redis
    from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
    return (Retryable, OSError, OperationalError, InterfaceError, IntegrityError, redis.RedisError)


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** attempt)))


def classify(exc: BaseException, attempt: int, *, now: datetime | None = None) -> Decision:
    """What to do after a task raised `exc` on its `attempt`-th retry (0 = first run)."""
    reason = reason_of(exc)
    if not isinstance(exc, infrastructure_blips()):
        return Decision("fail", reason=reason)
    if not getattr(exc, "counts_as_attempt", True):
        delay = float(exc.retry_after or 0.0)
        if exc.resume_at is not None:
            delay = max(delay, (exc.resume_at - (now or datetime.now(UTC))).total_seconds())
        delay = min(max(delay, 0.0), MAX_COUNTDOWN_SECONDS)
        # a little jitter so the workers of one account do not all wake in the same millisecond
        return Decision("retry", delay + random.uniform(0, min(1.0, 0.1 * delay + 0.05)), counts=False,
                        reason=reason)
    if attempt >= MAX_RETRIES:
        return Decision("fail", reason=f"gave up after {attempt + 1} attempts: {reason}")
    return Decision("retry", backoff(attempt), reason=reason)


def reason_of(exc: BaseException) -> str:
    # str() of our own errors never holds secrets (PlatformError formats platform/entity/status only).
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:2000]

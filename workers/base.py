"""The base class of every crmsync task: owns the session scope, the retry classification and the
logging context, so the tasks themselves are one call into the library."""
from __future__ import annotations

import logging

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from crmsync.tasks.errors import UnitTimedOut
from crmsync.tasks.execution import describe, execute, fail_permanently
from crmsync.tasks.retry import classify

log = logging.getLogger("crmsync.tasks")

# Message header counting rate-limit waits, which are not failures and do not use up max retries.
RATE_WAITS = "crmsync_rate_waits"


class CrmsyncTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    max_retries = None  # `classify` decides when to give up

    def run_library(self, *ids: str) -> str:
        """Run this task's library function (TASKS[self.name]) on `ids`; on error retry later
        (rate limit: when the budget allows; transient: backoff with jitter) or fail for good.
        Returns "succeeded" or "failed" (given up, its reason stored), for the task metrics."""
        ids = tuple(str(i) for i in ids)
        try:
            execute(self.name, ids)
        except SoftTimeLimitExceeded as exc:
            # The transaction was rolled back; the next attempt resumes from the last saved page.
            return self._retry_or_fail(ids, UnitTimedOut(f"stopped at the soft time limit ({exc})"))
        except Exception as exc:  # noqa: BLE001  every error is classified: retry or fail for good
            return self._retry_or_fail(ids, exc)
        return "succeeded"

    def _retry_or_fail(self, ids: tuple[str, ...], exc: BaseException) -> str:
        rate_waits = int(self._header(RATE_WAITS) or 0)
        attempt = max(0, (self.request.retries or 0) - rate_waits)
        decision = classify(exc, attempt)
        if decision.action == "retry":
            if not decision.counts:
                rate_waits += 1
            log.info("retrying %s in %.1f s: %s", describe(self.name, ids), decision.delay, decision.reason)
            raise self.retry(countdown=decision.delay, max_retries=None, headers={RATE_WAITS: rate_waits})
        fail_permanently(self.name, ids, decision.reason)
        return "failed"

    def _header(self, key: str):
        value = getattr(self.request, key, None)
        if value is None:
            value = (self.request.headers or {}).get(key) if isinstance(self.request.headers, dict) else None
        return value

"""The base class of every crmsync task: owns the session scope, the retry classification and the
logging context, so the tasks themselves are one call into the library."""
from __future__ import annotations

import inspect
import logging
from datetime import timedelta
from functools import cache

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from crmsync.db.types import utcnow
from crmsync.settings import get_settings
from crmsync.tasks.errors import BadTaskArguments, UnitTimedOut
from crmsync.tasks.execution import check_arguments, check_ids, defer, describe, execute, fail_permanently
from crmsync.tasks.retry import classify

log = logging.getLogger("crmsync.tasks")

# Message header counting rate-limit waits, which are not failures and do not use up max retries.
RATE_WAITS = "crmsync_rate_waits"
# Redis counter of a message's deaths: no count survives the process that died, so it lives outside.
DEATHS_KEY = "crmsync:task-deaths:{id}:{retries}"
# Set when a run of the message starts, deleted when it ends: a start that finds it still there
# follows a run that never ended. (The broker's `redelivered` flag is not enough: kombu sets it on
# every message given back, those a dying process only held, with a countdown, and never ran.)
RUNNING_KEY = "crmsync:task-running:{id}:{retries}"
DEATHS_TTL_SECONDS = 86_400


class CrmsyncTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    max_retries = None  # `classify` decides when to give up
    # A unit past the hard time limit is requeued as if its process died (Celery acks it by
    # default, and only the sweeper's fresh copy, with no death count, would run it again).
    acks_on_timeout = False

    def __call__(self, *args, **kwargs):
        # Celery's tracer calls `run` through here once a task class has its own __call__. Anyone
        # who can publish may send any arguments: too many or too few are refused, not retried,
        # like ids that are not ids, before Celery's call of `run` would raise a TypeError.
        takes = self.__dict__.get("_takes")
        if takes is None:        # a task is one object per worker process: its parameters are read once
            takes = self.__dict__["_takes"] = inspect.signature(self.run)
        try:
            check_arguments(self.name, takes, args, kwargs)
        except BadTaskArguments as exc:
            log.error("task %s refused: %s", describe(self.name, tuple(str(a) for a in args)), exc)
            return "failed"
        return super().__call__(*args, **kwargs)

    def run_library(self, *ids: str) -> str:
        """Run this task's library function (TASKS[self.name]) on `ids`; on error retry later
        (rate limit: when the budget allows; transient: backoff with jitter) or fail for good.
        Returns "succeeded" or "failed" (given up, its reason stored), for the task metrics."""
        ids = tuple(str(i) for i in ids)
        try:
            check_ids(self.name, ids)
        except BadTaskArguments as exc:
            # Not retried, and no failure hook: ids that name no row would only fail in it again.
            log.error("task %s refused: %s", describe(self.name, ids), exc)
            return "failed"
        deaths, running = self._start()
        try:
            if deaths >= get_settings().task_max_deaths:
                # Its process died (OOM, a native crash, the hard time limit) while running it that
                # many times: running it again would kill the next one too, for ever.
                fail_permanently(self.name, ids, f"WorkerLost: its worker process died {deaths} times while "
                                 "running it (out of memory, a native crash or the hard time limit)")
                return "failed"
            try:
                execute(self.name, ids)
            except SoftTimeLimitExceeded as exc:
                # The transaction was rolled back; the next attempt resumes from the last saved page.
                return self._retry_or_fail(ids, UnitTimedOut(f"stopped at the soft time limit ({exc})"))
            except Exception as exc:  # noqa: BLE001  every error is classified: retry or fail for good
                return self._retry_or_fail(ids, exc)
            return "succeeded"
        finally:
            self._end(running)

    def _retry_or_fail(self, ids: tuple[str, ...], exc: BaseException) -> str:
        rate_waits = int(self._header(RATE_WAITS) or 0)
        attempt = max(0, (self.request.retries or 0) - rate_waits)
        decision = classify(exc, attempt)
        if decision.action == "retry":
            if not decision.counts:
                rate_waits += 1
            log.info("retrying %s in %.1f s: %s", describe(self.name, ids), decision.delay, decision.reason)
            # The task's transaction was rolled back, so its rows look untouched since before it ran:
            # a backoff past CRMSYNC_OUTBOX_AFTER_SECONDS would have the sweeper start a copy (its
            # retry count at zero) beside this retry.
            defer(self.name, ids, utcnow() + timedelta(seconds=decision.delay))
            raise self.retry(countdown=decision.delay, max_retries=None, headers={RATE_WAITS: rate_waits})
        fail_permanently(self.name, ids, decision.reason)
        return "failed"

    def _start(self) -> tuple[int, str | None]:
        """How often a run of this message (this retry of it) started and never ended, its process
        dead; and the key that marks this run as started (None without Redis: the unit then simply
        runs, uncounted). One round trip, and one more at the end (`_end`)."""
        client = _death_counter()
        if client is None:
            return 0, None
        ids = {"id": self.request.id, "retries": self.request.retries or 0}
        running, deaths_key = RUNNING_KEY.format(**ids), DEATHS_KEY.format(**ids)
        try:
            with client.pipeline() as pipe:
                fresh, deaths = pipe.set(running, 1, nx=True, ex=DEATHS_TTL_SECONDS).get(deaths_key).execute()
                if not fresh:      # an earlier run of this message started and never reached its end
                    deaths, _ = pipe.incr(deaths_key).expire(deaths_key, DEATHS_TTL_SECONDS).execute()
        except redis.RedisError as err:
            log.warning("could not count the deaths of %s: %s", self.request.id, type(err).__name__)
            return 0, None
        return int(deaths or 0), running

    def _end(self, running: str | None) -> None:
        if running is None:
            return
        try:
            _death_counter().delete(running)
        except redis.RedisError as err:   # the key expires; a redelivery meanwhile would count one death
            log.warning("could not mark %s ended: %s", self.request.id, type(err).__name__)

    def _header(self, key: str):
        value = getattr(self.request, key, None)
        if value is None:
            value = (self.request.headers or {}).get(key) if isinstance(self.request.headers, dict) else None
        return value


@cache
def _death_counter() -> redis.Redis | None:
    """The shared Redis (CRMSYNC_REDIS_URL), else the broker's when it is Redis."""
    from crmsync.sync.connect import redis_client
    client = redis_client()
    url = get_settings().broker_url or ""
    if client is None and url.startswith(("redis://", "rediss://")):
        client = redis.Redis.from_url(url, socket_timeout=5)
    return client

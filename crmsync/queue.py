"""Tasks by name: the one table of task names -> library functions and queues, enqueueing, and
the inline runner used when no broker is configured.

crmsync never imports `workers/` or Celery. With a broker (CRMSYNC_BROKER_URL) a message is
published by task NAME: a Celery protocol-2 message made here and sent with kombu (one connection
and producer pool per process). Without one, `enqueue` runs the task in this
process by draining a FIFO: a task that enqueues its successor only appends, so chains of pages
never recurse.

Both execution paths (the Celery base task in workers/ and the inline runner here) share
`execute`, `classify` and `fail_permanently`: the same session scope, retry classification and
failure hooks.
"""
from __future__ import annotations

import contextvars
import functools
import importlib
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

log = logging.getLogger("crmsync.tasks")

EVENTS = "events"
SYNCS = "syncs"
BACKFILLS = "backfills"
QUEUES = (EVENTS, SYNCS, BACKFILLS)

# Retry policy (shared by Celery and inline).
MAX_RETRIES = 8                # transient errors; rate-limit waits have no count (they are not failures)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0
# A countdown is an ETA message held in worker RAM and in Redis' unacked hash; one longer than the
# visibility timeout is redelivered. Longer waits live in PostgreSQL (paused_until) and are re-armed
# every MAX_COUNTDOWN_SECONDS or picked up by the sweeper.
MAX_COUNTDOWN_SECONDS = 600.0
# Inline, a countdown is a sleep in the caller's process: bounded.
INLINE_MAX_WAIT_SECONDS = 120.0


class QueueError(Exception):
    pass


class UnknownTask(QueueError):
    def __init__(self, name: str):
        super().__init__(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
        self.name = name


class UnitTimedOut(QueueError):
    """The runner stopped a task at its soft time limit (the transaction was rolled back): worth
    another try, which resumes from the last saved page."""


class QueueUnavailable(QueueError):
    """The broker did not take the message (Redis down). The rows are in PostgreSQL; the outbox
    sweeper re-enqueues them once the broker is back."""


@dataclass(frozen=True)
class TaskRoute:
    target: str                     # "module:function", called as fn(session, *ids)
    queue: str
    on_failure: str | None = None   # "module:function", called as fn(session, *ids, error) on permanent failure
    description: str = ""


TASKS: dict[str, TaskRoute] = {
    "crmsync.sync.start_job": TaskRoute(
        "crmsync.sync.jobs:start_job", SYNCS, "crmsync.sync.jobs:fail_job",
        "plan a job's steps and enqueue the first"),
    "crmsync.sync.run_step": TaskRoute(
        "crmsync.sync.jobs:run_step", SYNCS, "crmsync.sync.jobs:fail_step",
        "one page pulled or one batch pushed (backfills queue when the job is full)"),
    "crmsync.events.split": TaskRoute(
        "crmsync.ingest.processing:split_deliveries", EVENTS, "crmsync.ingest.processing:fail_deliveries",
        "store webhook deliveries' events, deduplicated, and enqueue their processing"),
    "crmsync.events.process": TaskRoute(
        "crmsync.ingest.processing:process_event", EVENTS, "crmsync.queue:fail_event",
        "apply one webhook or product event"),
    "crmsync.automation.run": TaskRoute(
        "crmsync.automation.runner:run_for_event", EVENTS, None,
        "run the tenant's automation rules for one event"),
    "crmsync.schedule.dispatch_due_syncs": TaskRoute(
        "crmsync.sync.schedule:dispatch_due_syncs", SYNCS, None,
        "claim due configs and create their jobs"),
    "crmsync.schedule.sweep_outbox": TaskRoute(
        "crmsync.sync.schedule:sweep_outbox", SYNCS, None,
        "re-enqueue events and job steps Redis may have lost"),
}


def route(name: str) -> TaskRoute:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTask(name) from None


def resolve(target: str) -> Callable[..., Any]:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def queue_for(name: str, ids: tuple[str, ...], session: Session | None = None) -> str:
    """The one place that decides queues. A full job's steps go to `backfills` so a tenant's big
    backfill never sits in front of other tenants' scheduled syncs."""
    r = route(name)
    if name == "crmsync.sync.run_step" and ids:
        from sqlalchemy import select

        from crmsync.db.models import SyncJob, SyncJobStep
        query = select(SyncJob.full).join(SyncJobStep, SyncJobStep.job_id == SyncJob.id).where(
            SyncJobStep.id == ids[0])
        if session is not None:
            full = session.scalar(query)
        else:
            from crmsync.db import session_scope
            with session_scope() as s:
                full = s.scalar(query)
        if full:
            return BACKFILLS
    return r.queue


# --- logging context --------------------------------------------------------------------------
current_task: contextvars.ContextVar[str] = contextvars.ContextVar("crmsync_task", default="-")


class TaskContextFilter(logging.Filter):
    """Adds `record.task` ("name id,id" of the task being run, ids only, never secrets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.task = current_task.get()
        return True


def describe(name: str, ids: tuple[str, ...]) -> str:
    return f"{name}({', '.join(ids)})"


# --- executing one task (shared by the Celery base task and the inline runner) ---------------
def execute(name: str, ids: tuple[str, ...]) -> None:
    """Run the library function in its own session scope: commit on success, roll back on error."""
    from crmsync.db import session_scope
    fn = resolve(route(name).target)
    token = current_task.set(describe(name, ids))
    try:
        with session_scope() as session:
            fn(session, *ids)
    finally:
        current_task.reset(token)


@dataclass(frozen=True)
class Decision:
    action: str          # "retry" | "fail"
    delay: float = 0.0
    counts: bool = True  # whether this retry counts against MAX_RETRIES (rate waits do not)
    reason: str = ""


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** attempt)))


def classify(exc: BaseException, attempt: int, *, now: datetime | None = None) -> Decision:
    """What to do after a task raised `exc` on its `attempt`-th retry (0 = first run).

    RateLimited -> wait what the budget or the CRM says (resume_at for a spent daily quota), capped
    so the message stays a short ETA; TransientError and database/Redis/network blips ->
    exponential backoff with full jitter, at most MAX_RETRIES; anything else (other
    PlatformError/SyncError, a bug) -> permanent: the failure hook stores the reason."""
    from crmsync.platforms.errors import PlatformError, RateLimited, TransientError
    from crmsync.sync.errors import SyncError
    reason = _reason(exc)
    if isinstance(exc, RateLimited):
        delay = float(exc.retry_after or 0.0)
        if exc.resume_at is not None:
            now = now or datetime.now(UTC)
            delay = max(delay, (exc.resume_at - now).total_seconds())
        delay = min(max(delay, 0.0), MAX_COUNTDOWN_SECONDS)
        # a little jitter so the workers of one account do not all wake in the same millisecond
        return Decision("retry", delay + random.uniform(0, min(1.0, 0.1 * delay + 0.05)), counts=False,
                        reason=reason)
    if not isinstance(exc, TransientError) and (isinstance(exc, (PlatformError, SyncError))
                                                 or not _is_transient(exc)):
        return Decision("fail", reason=reason)
    if attempt >= MAX_RETRIES:
        return Decision("fail", reason=f"gave up after {attempt + 1} attempts: {reason}")
    return Decision("retry", backoff(attempt), reason=reason)


def _is_transient(exc: BaseException) -> bool:
    """Infrastructure blips worth another try: the database, Redis or the network went away, a
    duplicate delivery lost a race on a unique key, the soft time limit hit. A bug (AttributeError,
    TypeError, ...) is not: it fails at once with its reason stored instead of retrying for hours."""
    from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
    transient: tuple[type[BaseException], ...] = (OSError, OperationalError, InterfaceError, IntegrityError)
    try:
        import redis
        transient += (redis.RedisError,)
    except ImportError:  # redis is a dependency; keep classification importable without it
        pass
    return isinstance(exc, (*transient, UnitTimedOut))


def _reason(exc: BaseException) -> str:
    # str() of our own errors never holds secrets (PlatformError formats platform/entity/status only).
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:2000]


def fail_permanently(name: str, ids: tuple[str, ...], reason: str) -> None:
    """Call the task's failure hook in a fresh session (the task's own was rolled back)."""
    hook = route(name).on_failure
    log.error("task %s failed permanently: %s", describe(name, ids), reason)
    if hook is None:
        return
    from crmsync.db import session_scope
    try:
        fn = resolve(hook)
    except (ImportError, AttributeError):
        fn = _FALLBACK_HOOKS.get(hook)
        if fn is None:
            log.error("failure hook %s of %s is missing", hook, name)
            return
    with session_scope() as session:
        fn(session, *ids, reason)


def fail_event(session: Session, event_id: str, error: str) -> None:
    """An event that can never be applied: processed (so the sweeper leaves it) with outcome failed;
    `crmsync webhooks replay --failed` brings it back."""
    from crmsync.db.models import WebhookEvent
    from crmsync.db.types import utcnow
    row = session.get(WebhookEvent, event_id)
    if row is None:
        return
    row.processed = True
    row.processed_at = utcnow()
    row.outcome = "failed"
    row.error = error


def _fail_job_row(session: Session, job_id: str, error: str) -> None:
    """Fallback when the engine has no `fail_job`: the job is failed with its reason stored."""
    from crmsync.db.models import SyncJob
    from crmsync.db.types import utcnow
    job = session.get(SyncJob, job_id)
    if job is None or job.status in ("succeeded", "failed"):
        return
    job.status = "failed"
    job.error = error
    job.finished_at = utcnow()


_FALLBACK_HOOKS: dict[str, Callable[..., None]] = {"crmsync.sync.jobs:fail_job": _fail_job_row}


# --- enqueueing -------------------------------------------------------------------------------
def enqueue(name: str, *ids: str, countdown: float | None = None, queue: str | None = None,
            session: Session | None = None) -> None:
    """Run task `name` on `ids` soon: published to the broker, or (no broker) run in this process.
    `session`, when given, is only used to read what decides the queue."""
    from crmsync.settings import get_settings
    route(name)
    ids = tuple(str(i) for i in ids)
    if countdown is not None:
        countdown = min(max(float(countdown), 0.0), MAX_COUNTDOWN_SECONDS)
    if get_settings().inline:
        (getattr(_draining, "runner", None) or _inline).submit(name, ids, countdown)
        return
    q = queue or queue_for(name, ids, session)
    publish(name, ids, queue=q, countdown=countdown)


def enqueue_after_commit(session: Session, name: str, *ids: str, countdown: float | None = None,
                         queue: str | None = None) -> None:
    """Enqueue once `session`'s transaction commits; dropped if it rolls back. The rows the task
    reads are durable before the message exists (and the sweeper covers a crash in between)."""
    route(name)
    ids = tuple(str(i) for i in ids)
    from crmsync.settings import get_settings
    if queue is None and not get_settings().inline:
        queue = queue_for(name, ids, session)  # decided now: SQL cannot run inside after_commit
    from crmsync.db import after_commit
    after_commit(session, functools.partial(_enqueue_committed, name, ids, countdown, queue))


def _enqueue_committed(name: str, ids: tuple[str, ...], countdown: float | None, queue: str | None) -> None:
    try:
        enqueue(name, *ids, countdown=countdown, queue=queue)
    except QueueUnavailable as err:
        # The row is committed; the sweeper re-enqueues it. Raising here would leave the
        # session half-committed in the caller's eyes.
        log.warning("could not enqueue %s after commit (%s); the outbox sweeper will", describe(name, ids), err)


# --- publishing to the broker ----------------------------------------------------------------
# Messages are Celery's protocol 2, made here with kombu: crmsync needs no Celery to enqueue by name.
# The worker app in workers/ declares the same queues (`QUEUES`) and the same visibility timeout.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}
CONTROL_EXCHANGE = "celery"     # Celery's remote-control mailbox (ping), for `crmsync doctor`
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

_producer_lock = threading.Lock()
_broker: Any = None
_broker_pid: int | None = None
_clock = 0


def broker_transport_options(settings) -> dict[str, Any]:
    return {"visibility_timeout": settings.visibility_timeout}


def broker_connection():
    """The process-wide kombu connection to the broker (its producer pool is shared by every thread);
    made again after a fork."""
    global _broker, _broker_pid
    with _producer_lock:
        if _broker is None or _broker_pid != os.getpid():
            from kombu import Connection

            from crmsync.settings import get_settings
            settings = get_settings()
            if settings.inline:
                raise QueueError("no broker configured (CRMSYNC_BROKER_URL); tasks run inline")
            _broker = Connection(settings.broker_url, transport_options=broker_transport_options(settings))
            _broker_pid = os.getpid()
        return _broker


def reset_producer() -> None:
    """Forget the broker connection (after settings change, e.g. in tests; after a fork)."""
    global _broker, _broker_pid
    with _producer_lock:
        if _broker is not None and _broker_pid == os.getpid():
            try:
                _broker.release()
            except Exception as err:  # noqa: BLE001  closing a half-dead pool must not mask the caller's work
                log.debug("closing the broker connection: %s", type(err).__name__)
        _broker, _broker_pid = None, None


@functools.cache
def _hostname() -> str:
    import socket
    return socket.gethostname()


def _origin() -> str:
    return f"gen{os.getpid()}@{_hostname()}"   # as Celery names a producer (the pid changes after a fork)


def publish(name: str, ids: tuple[str, ...], *, queue: str, countdown: float | None = None,
            task_id: str | None = None) -> str:
    """Publish a Celery protocol-2 message for task `name` (JSON, args = ids) on `queue`, and the
    task-sent event Flower shows. Returns the task id."""
    import uuid

    from kombu import Exchange, pools
    global _clock
    if queue not in QUEUES:
        raise QueueError(f"unknown queue {queue!r}; expected one of {', '.join(QUEUES)}")
    task_id = task_id or str(uuid.uuid4())
    args = list(ids)
    eta = None
    if countdown:
        from datetime import timedelta
        eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat()
    origin = _origin()
    headers = {"lang": "py", "task": name, "id": task_id, "shadow": None, "eta": eta, "expires": None,
               "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
               "parent_id": None, "argsrepr": repr(args), "kwargsrepr": "{}", "origin": origin,
               "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}}
    with _producer_lock:
        _clock += 1
        clock = _clock
    sent = {"hostname": origin, "utcoffset": 0.0, "pid": os.getpid(), "clock": clock, "uuid": task_id,
            "root_id": task_id, "parent_id": None, "name": name, "args": repr(args), "kwargs": "{}", "retries": 0,
            "eta": eta, "expires": None, "queue": queue, "exchange": "", "routing_key": queue,
            "timestamp": time.time(), "type": "task-sent"}
    try:
        with pools.producers[broker_connection()].acquire(block=True, timeout=10) as producer:
            # The anonymous exchange routes by the queue's name (what Celery's routing resolves to).
            producer.publish([args, {}, _EMBED], exchange="", routing_key=queue, serializer="json",
                             headers=headers, correlation_id=task_id, delivery_mode=2, retry=True,
                             retry_policy=PUBLISH_RETRY_POLICY)
            producer.publish(sent, exchange=Exchange("celeryev", type="topic"), routing_key="task.sent",
                             serializer="json", headers={"hostname": origin}, delivery_mode=1)
    except Exception as err:  # kombu/redis raise many connection types; the caller needs one
        raise QueueUnavailable(f"broker did not take {describe(name, ids)}: {type(err).__name__}") from err
    return task_id


def ping_workers(timeout: float = 1.0) -> list[str]:
    """Names of the Celery workers that answer a remote-control ping within `timeout` seconds."""
    from kombu.pidbox import Mailbox
    mailbox = Mailbox(CONTROL_EXCHANGE, type="fanout", accept=["json"], serializer="json")
    with broker_connection().clone() as conn:
        replies = mailbox(conn)._broadcast("ping", reply=True, timeout=timeout) or []
    return sorted(name for reply in replies for name in reply)


def check_broker_connection() -> None:
    """Raise unless the broker accepts a connection (within a few seconds)."""
    with broker_connection().clone() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)


# --- the inline runner ----------------------------------------------------------------------
class InlineRunner:
    """Runs tasks in this thread, in FIFO order among those due. `submit` appends; only the
    outermost call drains, so a task enqueueing its successor never recurses."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self._local = threading.local()
        self.sleep = sleep
        self.clock = clock

    def _state(self):
        st = self._local
        if not hasattr(st, "queue"):
            st.queue = deque()
            st.draining = False
        return st

    @property
    def pending(self) -> int:
        return len(self._state().queue)

    def submit(self, name: str, ids: tuple[str, ...], countdown: float | None = None, attempt: int = 0) -> None:
        st = self._state()
        if countdown is not None and countdown > INLINE_MAX_WAIT_SECONDS:
            # Hours away (a spent daily quota): the state is in PostgreSQL (paused_until); the
            # sweeper or the next run picks it up. Sleeping that long would hang the caller.
            log.warning("inline: %s deferred %.0f s; not waiting for it", describe(name, ids), countdown)
            return
        st.queue.append((self.clock() + (countdown or 0.0), name, ids, attempt))
        if not st.draining:
            self.drain()

    def drain(self) -> None:
        st = self._state()
        st.draining = True
        outer = getattr(_draining, "runner", None)
        _draining.runner = self  # what the running tasks enqueue comes back to this runner
        try:
            while st.queue:
                item = self._next_due(st.queue)
                if item is None:
                    wait = min(due for due, *_ in st.queue) - self.clock()
                    self.sleep(min(max(wait, 0.0), INLINE_MAX_WAIT_SECONDS))
                    continue
                self._run(*item)
        finally:
            st.draining = False
            _draining.runner = outer

    def _next_due(self, queue: deque):
        now = self.clock()
        for index, item in enumerate(queue):
            if item[0] <= now:
                del queue[index]
                return item
        return None

    def _run(self, _due: float, name: str, ids: tuple[str, ...], attempt: int) -> None:
        try:
            execute(name, ids)
        except Exception as exc:  # noqa: BLE001  every error is classified: retry or fail for good
            decision = classify(exc, attempt)
            if decision.action == "retry":
                log.info("inline: retrying %s in %.1f s (%s)", describe(name, ids), decision.delay, decision.reason)
                # a backoff is bounded here (the caller is waiting); a rate wait beyond the bound is
                # left to the job's own state in PostgreSQL (see submit)
                delay = min(decision.delay, INLINE_MAX_WAIT_SECONDS) if decision.counts else decision.delay
                self.submit(name, ids, delay, attempt + (1 if decision.counts else 0))
            else:
                fail_permanently(name, ids, decision.reason)


_inline = InlineRunner()
_draining = threading.local()


def inline_runner() -> InlineRunner:
    return _inline

"""Enqueueing by task name: published to the broker (`crmsync.tasks.producer`) or, with no broker
configured, run in this process (`crmsync.tasks.inline`). `enqueue_after_commit` ties a message to
a session's transaction (`crmsync.db.after_commit`), so the rows a task reads are durable before
the message exists."""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from crmsync.tasks.errors import QueueUnavailable
from crmsync.tasks.execution import describe
from crmsync.tasks.names import queue_for, route
from crmsync.tasks.retry import MAX_COUNTDOWN_SECONDS

if TYPE_CHECKING:   # `import crmsync.tasks` (and so `crmsync.tasks.names`) loads no SQLAlchemy
    from sqlalchemy.orm import Session

log = logging.getLogger("crmsync.tasks")


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
        from crmsync.tasks.inline import inline_runner
        inline_runner().submit(name, ids, countdown)
        return
    from crmsync.tasks.producer import publish
    publish(name, ids, queue=queue or queue_for(name, ids, session), countdown=countdown)


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

"""Enqueueing by task name: published to the broker (`crmsync.tasks.producer`) or, with no broker
configured, run in this process (`crmsync.tasks.inline`). `enqueue_after_commit` ties a message to
a session's transaction, so the rows a task reads are durable before the message exists."""
from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session

from crmsync.tasks.errors import QueueUnavailable
from crmsync.tasks.execution import describe
from crmsync.tasks.names import queue_for, route
from crmsync.tasks.retry import MAX_COUNTDOWN_SECONDS

log = logging.getLogger("crmsync.tasks")

_PENDING = "crmsync.tasks.pending"
_HOOKED = "crmsync.tasks.hooked"


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
    pending = session.info.setdefault(_PENDING, [])
    # the SAVEPOINT (if any) it belongs to: rolling that back drops it, and only it
    pending.append((name, ids, countdown, queue, session.get_nested_transaction()))
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _after_rollback)


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        # SQLAlchemy fires after_commit when a SAVEPOINT is released too; the rows are not
        # durable until the outermost transaction commits.
        return
    pending = session.info.pop(_PENDING, [])
    for name, ids, countdown, queue, _savepoint in pending:
        try:
            enqueue(name, *ids, countdown=countdown, queue=queue)
        except QueueUnavailable as err:
            # The row is committed; the sweeper re-enqueues it. Raising here would leave the
            # session half-committed in the caller's eyes.
            log.warning("could not enqueue %s after commit (%s); the outbox sweeper will", describe(name, ids), err)


def _after_rollback(session: Session) -> None:
    savepoint = session.get_nested_transaction()
    if savepoint is None:
        session.info.pop(_PENDING, None)
        return
    # A SAVEPOINT rolled back (e.g. a refused job in the dispatcher): drop what was enqueued
    # inside it, keep what the enclosing transaction enqueued.
    session.info[_PENDING] = [item for item in session.info.get(_PENDING, [])
                              if not _inside(item[4], savepoint)]


def _inside(transaction, savepoint) -> bool:
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False

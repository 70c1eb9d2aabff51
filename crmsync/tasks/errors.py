"""Errors of enqueueing and running tasks, rooted by consequence in `crmsync.errors`."""
from __future__ import annotations

from crmsync.errors import CrmsyncError, Fatal, Retryable


class QueueError(CrmsyncError):
    """Base of the errors of this package."""


class UnknownTask(QueueError, Fatal):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown task {name!r}; known: {', '.join(sorted(known))}")
        self.name = name


class NoBroker(QueueError, Fatal):
    """A broker operation (publish, ping) asked of a deployment without CRMSYNC_BROKER_URL."""


class UnknownQueue(QueueError, Fatal):
    pass


class BadTaskArguments(QueueError, Fatal):
    """A task message whose ids are not ids (every task takes row ids, UUIDs): it names no row, so
    there is nothing to run, retry or mark failed."""


class UnitTimedOut(QueueError, Retryable):
    """The runner stopped a task at its soft time limit (the transaction was rolled back): worth
    another try, which resumes from the last saved page."""


class QueueUnavailable(QueueError, Retryable):
    """The broker did not take the message (Redis down). The rows are in PostgreSQL; the outbox
    sweeper re-enqueues them once the broker is back."""

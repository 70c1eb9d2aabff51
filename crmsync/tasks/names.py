"""The one table of tasks: each task's name (a constant, used by whoever enqueues it), the library
function it runs, its queue and its failure hook. Celery's worker app (`workers/`) registers one
thin task per entry under the same name; the producer (`crmsync.tasks.producer`) sends by name.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crmsync.tasks.errors import UnknownTask

if TYPE_CHECKING:   # the table is read at start-up (`crmsync jobs list`, listeners): no SQLAlchemy
    from sqlalchemy.orm import Session

# Queues: one per class of work (deploy/SCALING.md says which worker consumes which).
EVENTS = "events"
SYNCS = "syncs"
BACKFILLS = "backfills"
QUEUES = (EVENTS, SYNCS, BACKFILLS)

# Task names: the message's `task` header, Flower's label, beat's entries.
START_JOB = "crmsync.sync.start_job"
RUN_STEP = "crmsync.sync.run_step"
SPLIT_DELIVERIES = "crmsync.events.split"
PROCESS_EVENT = "crmsync.events.process"
RUN_AUTOMATION = "crmsync.automation.run"
DISPATCH_DUE_SYNCS = "crmsync.schedule.dispatch_due_syncs"
SWEEP_OUTBOX = "crmsync.schedule.sweep_outbox"


@dataclass(frozen=True)
class TaskRoute:
    target: str                     # "module:function", called as fn(session, *ids)
    queue: str
    on_failure: str | None = None   # "module:function", called as fn(session, *ids, error) on permanent failure
    description: str = ""
    # "module:function", called as fn(session, *ids, until) when the runner schedules a retry for
    # `until`: the rows' not_before, so the sweeper does not send a copy meanwhile.
    on_retry: str | None = None


TASKS: dict[str, TaskRoute] = {
    START_JOB: TaskRoute(
        "crmsync.sync.jobs:start_job", SYNCS, "crmsync.sync.jobs:fail_job",
        "plan a job's steps and enqueue the first"),
    RUN_STEP: TaskRoute(
        "crmsync.sync.jobs:run_step", SYNCS, "crmsync.sync.jobs:fail_step",
        "one page pulled or one batch pushed (backfills queue when the job is full)",
        "crmsync.sync.jobs:defer_step"),
    SPLIT_DELIVERIES: TaskRoute(
        "crmsync.events.processing:split_deliveries", EVENTS, "crmsync.events.processing:fail_deliveries",
        "store webhook deliveries' events, deduplicated, and enqueue their processing"),
    PROCESS_EVENT: TaskRoute(
        "crmsync.events.processing:process_event", EVENTS, "crmsync.events.processing:fail_event",
        "apply one webhook or product event", "crmsync.events.processing:defer_events"),
    RUN_AUTOMATION: TaskRoute(
        "crmsync.automation.runner:run_for_event", EVENTS, None,
        "run the tenant's automation rules for one event"),
    DISPATCH_DUE_SYNCS: TaskRoute(
        "crmsync.sync.schedule:dispatch_due_syncs", SYNCS, None,
        "claim due configs and create their jobs"),
    SWEEP_OUTBOX: TaskRoute(
        "crmsync.sync.schedule:sweep_outbox", SYNCS, None,
        "re-enqueue events and job steps Redis may have lost"),
}


def route(name: str) -> TaskRoute:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTask(name, list(TASKS)) from None


def resolve(target: str) -> Callable[..., Any]:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def queue_for(name: str, ids: tuple[str, ...], session: Session | None = None) -> str:
    """The one place that decides queues. A full job's steps go to `backfills` so a tenant's big
    backfill never sits in front of other tenants' scheduled syncs."""
    r = route(name)
    if name == RUN_STEP and ids:
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

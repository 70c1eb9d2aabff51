"""The beat-driven side of syncing: claim configs that are due and create their jobs, and sweep
the outbox — re-enqueue work whose message Redis may have lost.

The schedule lives in crm_sync_configs.next_sync_at, not in beat. A claim is a row update under
`FOR UPDATE SKIP LOCKED`, so two dispatchers ticking at once (a second beat, a manual tick)
each take different rows; the partial unique index on active jobs is the last word on "at most
one active job per config".
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from crmsync.configs import advance_schedule, schedule_sweep
from crmsync.db import is_postgres
from crmsync.db.models import SyncConfig, SyncJob, SyncJobStep, WebhookDelivery, WebhookEvent
from crmsync.db.types import utcnow
from crmsync.settings import get_settings
from crmsync.sync.errors import JobAlreadyActive
from crmsync.sync.jobs import WORKERS, create_job, lease_seconds
from crmsync.tasks import enqueue_after_commit
from crmsync.tasks.names import PROCESS_EVENT, RUN_STEP, SPLIT_DELIVERIES, START_JOB

log = logging.getLogger("crmsync.schedule")

SWEEP_BATCH = 500


def dispatch_due_syncs(session: Session, now: datetime | None = None, limit: int = 100) -> list[str]:
    """Claim up to `limit` enabled configs with next_sync_at <= now, move each one's next_sync_at
    on by its frequency, create a scheduled job and enqueue its start after commit. A config that
    already has an active job (manual run, slow job) is moved on and skipped. Returns the job ids."""
    now = now or utcnow()
    query = (select(SyncConfig)
             .where(SyncConfig.enabled.is_(True), SyncConfig.next_sync_at.is_not(None),
                    SyncConfig.next_sync_at <= now, SyncConfig.sync_frequency_minutes > 0)
             .order_by(SyncConfig.next_sync_at)
             .limit(limit))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    job_ids: list[str] = []
    for config in session.scalars(query).all():
        advance_schedule(config, now)
        try:
            with session.begin_nested():  # a refused job leaves the claim (and the others) intact
                job = create_job(session, config, trigger="schedule", now=now)
        except JobAlreadyActive as err:
            log.info("config %s skipped: job %s is still active", config.id, err.job_id)
            continue
        enqueue_after_commit(session, START_JOB, job.id)
        job_ids.append(job.id)
    session.flush()
    return job_ids + dispatch_due_sweeps(session, now, limit)


def dispatch_due_sweeps(session: Session, now: datetime | None = None, limit: int = 100) -> list[str]:
    """Claim enabled configs whose deletion sweep is due (next_sweep_at <= now), create a sweep
    job for each and move next_sweep_at on by its cadence. A config busy with another job keeps
    its claim time and is tried again on the next tick (a sweep is daily: it should not wait a day).
    A config that has no next_sweep_at yet (made before sweeps existed) gets one a cadence away."""
    now = now or utcnow()
    query = (select(SyncConfig)
             .where(SyncConfig.enabled.is_(True), SyncConfig.sweep_every_hours > 0,
                    or_(SyncConfig.next_sweep_at.is_(None), SyncConfig.next_sweep_at <= now))
             .order_by(SyncConfig.next_sweep_at.nulls_first())
             .limit(limit))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    job_ids: list[str] = []
    for config in session.scalars(query).all():
        if config.next_sweep_at is not None:
            try:
                with session.begin_nested():
                    job = create_job(session, config, trigger="sweep", now=now)
            except JobAlreadyActive:
                continue
            enqueue_after_commit(session, "crmsync.sync.start_job", job.id)
            job_ids.append(job.id)
        schedule_sweep(config, now)
    session.flush()
    return job_ids


def _received_before(session: Session, model, pending, threshold: datetime, now: datetime) -> list[str]:
    """Ids of `model` rows still `pending` and received before `threshold`, their received_at moved
    to now so the next sweep waits a full threshold again (an event's own time is occurred_at)."""
    query = (select(model.id).where(pending, model.received_at <= threshold)
             .order_by(model.received_at).limit(SWEEP_BATCH))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query).all())
    if ids:
        session.execute(update(model).where(model.id.in_(ids)).values(received_at=now))
    return ids


def sweep_outbox(session: Session, now: datetime | None = None) -> dict[str, int]:
    """Re-enqueue what should have run by now (a message lost with Redis, a publish that failed
    after commit): webhook deliveries not yet split, unprocessed webhook events, pending steps of running jobs, parked jobs whose
    pause is over, and jobs still queued (their start message lost). Each re-enqueued row's updated_at (events: received_at is kept, attempts are
    not touched) is moved to now, so the next sweep leaves it alone for another threshold."""
    now = now or utcnow()
    threshold = now - timedelta(seconds=get_settings().outbox_after_seconds)
    postgres = is_postgres(session)
    counts = {"deliveries": 0, "events": 0, "steps": 0, "jobs": 0, "queued": 0}

    # Deliveries whose split failed for good keep their error and wait for `webhooks replay`.
    deliveries = _received_before(session, WebhookDelivery, WebhookDelivery.error.is_(None), threshold, now)
    if deliveries:
        enqueue_after_commit(session, SPLIT_DELIVERIES, *deliveries)  # the split takes many
    # Events waiting out a rate limit (not_before) have their task's countdown on its way.
    events = _received_before(session, WebhookEvent, and_(WebhookEvent.processed.is_(False), or_(
        WebhookEvent.not_before.is_(None), WebhookEvent.not_before <= now)), threshold, now)
    for event_id in events:
        enqueue_after_commit(session, PROCESS_EVENT, event_id)
    counts["deliveries"], counts["events"] = len(deliveries), len(events)

    # A job an inline run (`sync run --inline`) holds is that process's, while its lease lasts;
    # once it has run out, the workers take the job over.
    workers_may_run = or_(SyncJob.lease_owner.is_(None), SyncJob.lease_owner == WORKERS,
                          SyncJob.lease_expires_at.is_(None), SyncJob.lease_expires_at <= now)
    # Steps run one at a time, in position order; a later step's row sits pending, untouched since
    # the job started, while the one before it runs. Only the step a job is at is re-enqueued, or a
    # job busy for longer than the threshold would have all its later steps started at once.
    earlier = aliased(SyncJobStep)
    at_its_turn = ~exists().where(earlier.job_id == SyncJobStep.job_id, earlier.status == "pending",
                                  earlier.position < SyncJobStep.position)
    steps = (select(SyncJobStep.id, SyncJobStep.job_id)
             .join(SyncJob, SyncJob.id == SyncJobStep.job_id)
             .where(SyncJobStep.status == "pending", SyncJobStep.updated_at <= threshold, at_its_turn,
                    SyncJob.status == "running", workers_may_run,
                    or_(SyncJobStep.not_before.is_(None), SyncJobStep.not_before <= now))
             .order_by(SyncJobStep.updated_at).limit(SWEEP_BATCH))
    if postgres:
        steps = steps.with_for_update(of=SyncJobStep, skip_locked=True)
    taken_over = set()
    for step_id, job_id in session.execute(steps).all():
        session.execute(update(SyncJobStep).where(SyncJobStep.id == step_id).values(updated_at=now))
        enqueue_after_commit(session, RUN_STEP, step_id)
        counts["steps"] += 1
        taken_over.add(job_id)
    if taken_over:
        session.execute(update(SyncJob).where(SyncJob.id.in_(taken_over), SyncJob.lease_owner != WORKERS).values(
            lease_owner=WORKERS, lease_expires_at=now + timedelta(seconds=lease_seconds(WORKERS))))

    parked = (select(SyncJob.id)
              .where(SyncJob.status == "waiting_quota", SyncJob.paused_until.is_not(None), workers_may_run,
                     SyncJob.paused_until <= now, SyncJob.updated_at <= threshold)
              .order_by(SyncJob.paused_until).limit(SWEEP_BATCH))
    if postgres:
        parked = parked.with_for_update(skip_locked=True)
    for job_id in session.scalars(parked).all():
        session.execute(update(SyncJob).where(SyncJob.id == job_id).values(updated_at=now))
        step_id = session.scalar(select(SyncJobStep.id).where(   # the step it is at (see above)
            SyncJobStep.job_id == job_id, SyncJobStep.status == "pending").order_by(SyncJobStep.position).limit(1))
        if step_id is not None:
            enqueue_after_commit(session, RUN_STEP, step_id)
        counts["jobs"] += 1

    # A job whose start message was lost (Redis down at commit, a flush) would stay queued for
    # ever, and block its config's next run: start it again (start_job ignores started jobs).
    queued = (select(SyncJob.id)
              .where(SyncJob.status == "queued", SyncJob.updated_at <= threshold, workers_may_run)
              .order_by(SyncJob.updated_at).limit(SWEEP_BATCH))
    if postgres:
        queued = queued.with_for_update(skip_locked=True)
    for job_id in session.scalars(queued).all():
        session.execute(update(SyncJob).where(SyncJob.id == job_id).values(updated_at=now))
        enqueue_after_commit(session, START_JOB, job_id)
        counts["queued"] += 1

    if any(counts.values()):
        log.info("outbox sweep re-enqueued %(deliveries)d deliveries, %(events)d events, %(steps)d steps, %(jobs)d parked jobs, "
                 "%(queued)d unstarted jobs", counts)
    return counts

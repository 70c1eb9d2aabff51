"""Sync jobs: one run of one config, fanned out into steps (an entity's pull, an entity's push),
each made of page-sized units so a big tenant's backfill interleaves with everyone else's work.

Steps run in order — companies, contacts, deals, activities, tasks; pulls before pushes — so
associations always find the records they point to. The fan-in is counted in PostgreSQL
(`steps_done`), not with chords. Every unit is idempotent: a page's rows and its checkpoint are
one transaction, so a unit that dies at any line and runs again gives the same result.

These functions take a session and string ids; `crmsync.tasks` (Celery or inline) calls them.

A job has a lease: who runs it and until when. The workers share one ("workers"), renewed by
every unit; an inline run (`sync run --inline`) holds its own, named after its process and
renewed by a heartbeat thread. When a lease runs out — or names a process of this host that
has exited — the runner is gone, and the next run (or `jobs resume`, or the outbox sweeper)
takes the job over and carries on from its checkpoints.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Self

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crmsync import metrics
from crmsync.db.models import JOB_ACTIVE_STATUSES, SyncCheckpoint, SyncConfig, SyncJob, SyncJobStep, new_id
from crmsync.db.types import utcnow
from crmsync.entities import ENTITY_PLURALS
from crmsync.errors import CrmsyncError, Retryable
from crmsync.platforms.base import went_round
from crmsync.platforms.errors import RateLimited
from crmsync.sync.apply import ApplyResult, apply_remote_records
from crmsync.sync.errors import ConfigDisabled, JobAlreadyActive, JobNotFound, JobStateError
from crmsync.sync.push import push_batch
from crmsync.sync.read_ahead import ENTITY_ORDER, INLINE_UNIT_PAGES, ReadAhead, fetch_unit
from crmsync.tasks.names import RUN_STEP, START_JOB

COUNT_NAMES = ("created", "updated", "deleted", "conflicts", "skipped", "failed")

log = logging.getLogger(__name__)

WORKERS = "workers"              # the lease owner of a job the Celery workers run
INLINE_LEASE_SECONDS = 60.0      # an inline run's heartbeat renews its lease ...
HEARTBEAT_SECONDS = 10.0         # ... this often


# --- leases ----------------------------------------------------------------------------------
def this_process() -> str:
    """The lease owner name of a run in this process."""
    return f"inline {socket.gethostname()} {os.getpid()}"


def default_runner() -> str:
    """Who runs what this process starts: itself without a broker, else the workers."""
    from crmsync.settings import get_settings
    return this_process() if get_settings().inline else WORKERS


def lease_seconds(owner: str) -> float:
    if owner != WORKERS:
        return INLINE_LEASE_SECONDS
    # A worker-run job may sit in the queue, or wait out a rate-limit countdown, between units;
    # the sweeper re-enqueues a unit after outbox_after_seconds. Past both, nobody is running it.
    from crmsync.settings import get_settings
    from crmsync.tasks.retry import MAX_COUNTDOWN_SECONDS
    return MAX_COUNTDOWN_SECONDS + 2 * get_settings().outbox_after_seconds


def renew_lease(job: SyncJob, owner: str, now: datetime) -> None:
    job.lease_owner = owner
    job.lease_expires_at = now + timedelta(seconds=lease_seconds(owner))


def _process_gone(owner: str) -> bool:
    """Whether `owner` is an inline run of this host whose process has exited."""
    kind, _, rest = owner.partition(" ")
    host, _, pid = rest.rpartition(" ")
    if kind != "inline" or host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:   # alive, another user's
        return False
    return False


def lease_expired(job: SyncJob, now: datetime | None = None) -> bool:
    """Whether an active job's runner is gone. A job parked for a daily quota is waiting, not
    abandoned, until its pause is over. A job from before leases counts from its last change."""
    now = now or utcnow()
    if job.status not in JOB_ACTIVE_STATUSES:
        return False
    if job.status == "waiting_quota" and job.paused_until is not None and job.paused_until > now:
        return False
    expires = job.lease_expires_at or (job.updated_at + timedelta(seconds=lease_seconds(WORKERS)))
    return expires <= now or (job.lease_owner is not None and _process_gone(job.lease_owner))


class Heartbeat:
    """Renews an inline run's lease every HEARTBEAT_SECONDS on a thread of its own, for as long
    as the process lives: the lease of a run killed at any line runs out within
    INLINE_LEASE_SECONDS (at once, for the next run on the same host)."""

    def __init__(self, job_id: str, owner: str, database_url: str | None = None):
        self.job_id, self.owner, self.database_url = job_id, owner, database_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crmsync-lease-heartbeat", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from sqlalchemy import update

        from crmsync.db import session_scope
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with session_scope(self.database_url) as s:
                    s.execute(update(SyncJob).where(
                        SyncJob.id == self.job_id, SyncJob.lease_owner == self.owner,
                        SyncJob.status.in_(JOB_ACTIVE_STATUSES)).values(
                        lease_expires_at=utcnow() + timedelta(seconds=INLINE_LEASE_SECONDS)))
            except Exception as err:  # noqa: BLE001  a missed beat is retried; the units renew it too
                log.warning("lease heartbeat of job %s failed: %s", self.job_id, type(err).__name__)


def _enqueue(session: Session, enqueue: bool, name: str, *ids: str, countdown: float | None = None) -> None:
    if enqueue:
        from crmsync.tasks import enqueue_after_commit
        enqueue_after_commit(session, name, *ids, countdown=countdown)


# --- creating and starting -------------------------------------------------------------------
def active_job(session: Session, config_id: str) -> SyncJob | None:
    return session.scalar(select(SyncJob).where(SyncJob.sync_config_id == config_id,
                                                SyncJob.status.in_(JOB_ACTIVE_STATUSES)))


def create_job(session: Session, config: SyncConfig, *, trigger: str = "manual", full: bool = False,
               now: datetime | None = None, runner: str | None = None, force: bool = False) -> SyncJob:
    """A queued job for the config, leased to `runner` (default: default_runner());
    JobAlreadyActive when one is queued, running or parked; ConfigDisabled for a disabled
    config unless `force`. The partial unique index settles races between dispatchers."""
    if not config.enabled and not force:
        raise ConfigDisabled(config.id)
    existing = active_job(session, config.id)
    if existing is not None:
        raise JobAlreadyActive(config.id, existing.id)
    now = now or utcnow()
    job = SyncJob(id=new_id(), tenant_id=config.tenant_id, sync_config_id=config.id, status="queued",
                  trigger=trigger, full=full, counts={}, created_at=now)
    renew_lease(job, runner or default_runner(), now)
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        other = active_job(session, config.id)
        raise JobAlreadyActive(config.id, other.id if other else "?") from None
    return job


def start_job(session: Session, job_id: str, *, enqueue: bool = True, now: datetime | None = None,
              runner: str | None = None) -> None:
    """Plan the job's steps and enqueue the first. Idempotent: a started job is left alone."""
    now = now or utcnow()
    job = session.scalar(select(SyncJob).where(SyncJob.id == job_id).with_for_update())
    if job is None or job.status != "queued":
        return
    renew_lease(job, runner or default_runner(), now)
    config = session.get(SyncConfig, job.sync_config_id)
    entities = [e for e in ENTITY_ORDER if config.entity_enabled(e)]
    kinds = []
    if job.trigger == "sweep":
        kinds.append("sweep")     # the deletion sweep: its own job, on its own cadence
    else:
        if config.sync_direction in ("pull", "bidirectional") and job.trigger != "push":
            kinds.append("pull")
        if config.sync_direction in ("push", "bidirectional"):
            kinds.append("push")
    steps = [SyncJobStep(id=new_id(), tenant_id=job.tenant_id, job_id=job.id, entity_type=e, kind=k,
                         position=i, status="pending", updated_at=now)
             for i, (k, e) in enumerate((k, e) for k in kinds for e in entities)]
    session.add_all(steps)
    if job.full:
        for cp in session.scalars(select(SyncCheckpoint).where(SyncCheckpoint.config_id == config.id)):
            cp.cursor, cp.synced_until = None, None
    job.status = "running"
    job.started_at = now
    job.steps_total = len(steps)
    job.counts = {e: dict.fromkeys(COUNT_NAMES, 0) for e in entities}
    session.flush()
    if steps:
        _enqueue(session, enqueue, RUN_STEP, steps[0].id)
    else:
        _finish(session, job, config, now)


# --- running one unit ------------------------------------------------------------------------
@dataclass
class StepProgress:
    entity: str
    kind: str
    pages: int
    done: bool
    job_status: str
    counts: dict


def run_step(session: Session, step_id: str, *, enqueue: bool = True, wait: bool | None = None,
             now: datetime | None = None, read_ahead: ReadAhead | None = None,
             runner: str | None = None) -> StepProgress | None:
    """One unit of a step: a page pulled or a batch pushed. Enqueues its own continuation, or
    the job's next step, after commit; finishes the job after the last step. With `read_ahead`,
    a pull unit fetches the next unit's pages while it writes its own. The unit renews the
    job's lease for `runner` (default: default_runner()), and leaves alone a job another live
    runner holds."""
    now = now or utcnow()
    step = session.scalar(select(SyncJobStep).where(SyncJobStep.id == step_id).with_for_update())
    if step is None:
        return None
    if step.status != "pending":
        # A redelivered message of a finished step: its worker may have died after the commit
        # and before publishing what comes next, so publish it again (running twice is harmless).
        if step.status == "done":
            _enqueue_next(session, step, enqueue)
        return None
    job = session.get(SyncJob, step.job_id)
    if job.status not in ("running", "waiting_quota"):
        return None
    runner = runner or default_runner()
    if job.lease_owner not in (None, runner) and not lease_expired(job, now):
        log.info("job %s is run by %s; unit of step %s skipped", job.id, job.lease_owner, step_id)
        return None
    renew_lease(job, runner, now)
    if job.status == "waiting_quota":
        job.status, job.paused_until = "running", None
    config = session.get(SyncConfig, job.sync_config_id)
    adapter = UnitAdapter(session, config, wait)
    if step.kind != "pull":
        adapter.get()     # a pull's units read ahead may need none (see UnitAdapter)
    try:
        if step.kind == "pull":
            more, result = _pull_page(session, config, adapter, job, step, now, read_ahead)
        elif step.kind == "sweep":
            from crmsync.sync.sweep import sweep_unit
            more, result = sweep_unit(session, config, adapter.get(), job, step, now)
        else:
            if read_ahead is not None:
                read_ahead.discard()      # the adapter is this thread's alone while it pushes
            more, result = _push_batch(session, config, adapter.get(), step, now)
    except RateLimited as err:
        session.rollback()
        return _wait_for_budget(session, step_id, err, enqueue, now)
    except CrmsyncError as err:
        if isinstance(err, Retryable):
            raise       # 5xx, timeouts, the rate budget's Redis away: the runner retries the unit
        session.rollback()
        fail_step(session, step_id, str(err))
        return None
    _count(job, step.entity_type, result)
    spent = adapter.requests_spent() + (read_ahead.requests_spent() if read_ahead else 0)
    job.counts = {**job.counts, "requests": job.counts.get("requests", 0) + spent}
    metrics.count_records(session, config.platform, step.entity_type, step.kind, result.counts())
    # Counted with the unit's own writes (one UPDATE): a unit that fails rolls back whole anyway.
    step.attempts += 1
    step.updated_at = now
    # A wait it was marked with (a backoff, a rate limit) is over once a unit has run: left set,
    # it would keep the sweeper from sending the step's next unit on if that message were lost.
    step.not_before = None
    if more:
        step.pages += 1
        _enqueue(session, enqueue, RUN_STEP, step.id)
    else:
        step.pages += 1
        step.status = "done"
        job.steps_done += 1
        nxt = session.scalar(select(SyncJobStep).where(SyncJobStep.job_id == job.id, SyncJobStep.status == "pending",
                                                       SyncJobStep.id != step.id)
                             .order_by(SyncJobStep.position).limit(1))
        if nxt is not None:
            nxt.updated_at = now
            _enqueue(session, enqueue, RUN_STEP, nxt.id)
        else:
            _finish(session, job, config, now)
    session.flush()
    return StepProgress(step.entity_type, step.kind, step.pages, step.status == "done", job.status,
                        dict(job.counts.get(step.entity_type, {})))


def _enqueue_next(session: Session, step: SyncJobStep, enqueue: bool) -> None:
    job = session.get(SyncJob, step.job_id)
    if job is None or job.status != "running":
        return
    nxt = session.scalar(select(SyncJobStep).where(SyncJobStep.job_id == job.id, SyncJobStep.status == "pending")
                         .order_by(SyncJobStep.position).limit(1))
    if nxt is not None:
        _enqueue(session, enqueue, RUN_STEP, nxt.id)


def _checkpoint(session: Session, config: SyncConfig, entity: str) -> SyncCheckpoint:
    cp = session.scalar(select(SyncCheckpoint).where(SyncCheckpoint.config_id == config.id,
                                                     SyncCheckpoint.entity_type == entity).with_for_update())
    if cp is None:
        cp = SyncCheckpoint(id=new_id(), tenant_id=config.tenant_id, config_id=config.id, entity_type=entity)
        session.add(cp)
        session.flush()
    return cp


class UnitAdapter:
    """A unit's adapter (`crmsync.sync.connect.connect`), connected when the unit first needs it.
    The units of `sync run --inline` are read ahead by a child process, which works out where the
    listing starts too: those units need no adapter, and the process then never loads the CRM's
    client, requests or the vault's cipher (a tenth of its start-up)."""

    def __init__(self, session: Session, config: SyncConfig, wait: bool | None):
        self.session, self.config, self.wait = session, config, wait
        self._adapter = None
        self._before = 0

    def get(self):
        if self._adapter is None:
            from crmsync.settings import get_settings
            from crmsync.sync.connect import connect
            self._adapter = connect(self.session, self.config,
                                    wait=get_settings().inline if self.wait is None else self.wait)
            self._before = self._adapter.requests_sent()    # connect's adapters are kept: counts run on
        return self._adapter

    def requests_spent(self) -> int:
        return 0 if self._adapter is None else self._adapter.requests_sent() - self._before


def _pull_page(session, config, adapter: UnitAdapter, job, step, now, read_ahead: ReadAhead | None = None
               ) -> tuple[bool, ApplyResult]:
    from crmsync.settings import get_settings
    _commit_without_waiting_for_disk(session)
    cp = _checkpoint(session, config, step.entity_type)
    if cp.cursor is None:
        cursor = read_ahead.start_cursor(step.entity_type, cp.synced_until) if read_ahead is not None else None
        if cursor is None:
            cursor = adapter.get().start_cursor(step.entity_type, cp.synced_until)
        # A listing read ahead of the job (read_early) began before this unit: its high-water mark
        # is when it began, or a record changed in between would be in no page and never looked for.
        began = read_ahead.began(step.entity_type, cursor) if read_ahead is not None else None
        started, unit_starts = (began or now).isoformat(), []
    else:
        cursor, started = cp.cursor["adapter"], cp.cursor["started_at"]
        unit_starts = cp.cursor.get("unit_starts", [])
    want = get_settings().page_size
    fetched = read_ahead.take(step.entity_type, cursor) if read_ahead is not None else None
    records, next_cursor = fetched or fetch_unit(adapter.get(), step.entity_type, cursor, want)
    unit_starts = went_round(unit_starts, cursor, next_cursor, platform=config.platform, entity=step.entity_type)
    if read_ahead is not None and next_cursor is not None:
        # The units read ahead are larger (see INLINE_UNIT_PAGES); the first one stays short so
        # the writes start soon. A reader already at next_cursor goes on as it is (and this
        # process then loads no CRM client).
        def reader_adapter():
            from crmsync.sync.connect import reader_adapter
            return reader_adapter(session, config)
        read_ahead.follow(reader_adapter, step.entity_type, next_cursor, want * INLINE_UNIT_PAGES)
    _refresh_planner_statistics(session, step, last_unit=next_cursor is None)
    result = apply_remote_records(session, config, step.entity_type, records, now=now)
    add_errors(job, result.errors)    # records our columns cannot hold, as a push reports its own
    if next_cursor is not None:
        cp.cursor = {"adapter": next_cursor, "started_at": started, "unit_starts": unit_starts}
        cp.job_id = job.id
        return True, result
    # Deletions are not listed here: they arrive by webhook, and the deletion sweep
    # (crmsync.sync.sweep) finds the rest on its own cadence, so an incremental run costs what changed.
    cp.cursor = None
    cp.synced_until = datetime.fromisoformat(started)
    cp.job_id = job.id
    return False, result


def _commit_without_waiting_for_disk(session: Session) -> None:
    """A pull unit writes the CRM's records and the checkpoint that moves past them, in one
    transaction. Should PostgreSQL crash before it has flushed such a commit to disk (within
    three wal_writer_delay, 0.6 s by default), both are lost together and the next run reads
    those records again from the CRM. So a pull unit does not wait for the flush when it commits
    (PostgreSQL manual, "Asynchronous Commit"; about 10 ms a unit of 5,000 records). A push unit,
    which has changed the CRM, does wait."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy import text
        session.execute(text("SET LOCAL synchronous_commit = off"))


def _refresh_planner_statistics(session: Session, step: SyncJobStep, *, last_unit: bool = False) -> None:
    """A backfill grows tables faster than autovacuum analyzes them; with stale statistics
    PostgreSQL plans the per-page lookups as sequential scans and each page gets slower.
    ANALYZE at pages 4, 16, 64, 256, ... keeps the plans on the indexes for the cost of a few
    ANALYZEs per backfill. A step's last unit has no later lookup of its own to plan: it
    refreshes only the links table, which every step reads, and only for a step of the job still to come (an
    ANALYZE of both is a unit's tenth); autovacuum analyzes a table grown this much within a
    minute, before the config's next job."""
    pages = step.pages
    if pages < 4 or pages & (pages - 1) or (pages.bit_length() - 1) % 2:
        return
    if session.get_bind().dialect.name != "postgresql":
        return
    from sqlalchemy import text

    from crmsync.db.models import ENTITY_MODELS, SyncLink
    tables = [ENTITY_MODELS[step.entity_type].__table__, SyncLink.__table__]
    if last_unit:
        later = session.scalar(select(SyncJobStep.id).where(
            SyncJobStep.job_id == step.job_id, SyncJobStep.status == "pending", SyncJobStep.id != step.id).limit(1))
        tables = [SyncLink.__table__] if later is not None else []
    if not tables:
        return
    # A small sample is enough to tell the planner how big the tables now are and that the
    # looked-up keys are nearly unique; the default target samples 30,000 rows (half the cost).
    session.execute(text("SET LOCAL default_statistics_target = 10"))
    for table in tables:
        session.execute(text(f"ANALYZE {table.name}"))
    session.execute(text("RESET default_statistics_target"))


JOB_ERRORS = 50    # per-record errors a job keeps in counts["errors"]; its counts say how many failed


def add_errors(job: SyncJob, errors: list[str]) -> None:
    """Per-record errors of a unit (ids and reasons, never values) into the job's view, the first
    JOB_ERRORS of the job kept."""
    if errors:
        job.counts = {**job.counts, "errors": (job.counts.get("errors", []) + errors)[:JOB_ERRORS]}


def _push_batch(session, config, adapter, step, now) -> tuple[bool, ApplyResult]:
    outcome = push_batch(session, config, adapter, step.entity_type, after=step.cursor, limit=adapter.max_batch,
                         now=now)
    step.cursor = outcome.cursor
    if outcome.errors:
        add_errors(session.get(SyncJob, step.job_id), outcome.errors)
    return outcome.cursor is not None, outcome.result


def _wait_for_budget(session: Session, step_id: str, err: RateLimited, enqueue: bool, now: datetime):
    """The account's budget says wait: re-enqueue with a countdown (no worker slot held); a
    spent daily quota parks the job until the reset."""
    step = session.get(SyncJobStep, step_id)
    job = session.get(SyncJob, step.job_id)
    step.updated_at = now
    if err.resume_at is not None:
        job.status = "waiting_quota"
        job.paused_until = err.resume_at
        delay = max(1.0, (err.resume_at - now).total_seconds())
    else:
        delay = max(0.05, err.retry_after)
    # The sweeper leaves the step alone until then: a copy sent meanwhile would meet the limit too
    # and re-arm itself, one more chain of this step per sweep for as long as the wait lasts.
    step.not_before = now + timedelta(seconds=delay)
    _enqueue(session, enqueue, RUN_STEP, step.id, countdown=delay)
    session.flush()
    return StepProgress(step.entity_type, step.kind, step.pages, False, job.status, {})


def _count(job: SyncJob, entity: str, result: ApplyResult) -> None:
    counts = {k: dict(v) if isinstance(v, dict) else v for k, v in (job.counts or {}).items()}
    entity_counts = counts.setdefault(entity, dict.fromkeys(COUNT_NAMES, 0))
    for name, value in result.counts().items():
        entity_counts[name] = entity_counts.get(name, 0) + value
    job.counts = counts


def _finish(session: Session, job: SyncJob, config: SyncConfig, now: datetime) -> None:
    job.status = "succeeded"
    job.finished_at = now
    config.last_sync_at = now
    metrics.count_sync_run(session, config.platform, "succeeded")


# --- failure hooks (called by crmsync.tasks on permanent errors) -----------------------------
def fail_step(session: Session, step_id: str, error: str) -> None:
    step = session.get(SyncJobStep, step_id)
    if step is None:
        return
    step.status = "failed"
    step.error = error[:2000]
    fail_job(session, step.job_id, f"{step.kind} {ENTITY_PLURALS[step.entity_type]}: {error}")


def defer_step(session: Session, step_id: str, until: datetime) -> None:
    """Retry hook: the runner retries the step's unit at `until` (a backoff); the sweeper waits."""
    from sqlalchemy import update
    session.execute(update(SyncJobStep).where(SyncJobStep.id == step_id, SyncJobStep.status == "pending")
                    .values(not_before=until))


def fail_job(session: Session, job_id: str, error: str) -> None:
    job = session.get(SyncJob, job_id)
    if job is None or job.status not in JOB_ACTIVE_STATUSES:
        return
    job.status = "failed"
    job.error = error[:2000]
    job.finished_at = utcnow()
    metrics.count_sync_run(session, session.get(SyncConfig, job.sync_config_id).platform, "failed")
    session.flush()


# --- operators: cancel and resume ------------------------------------------------------------
def _locked_job(session: Session, job_id: str) -> SyncJob:
    job = session.scalar(select(SyncJob).where(SyncJob.id == job_id).with_for_update())
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    return job


def cancel_job(session: Session, job_id: str, *, now: datetime | None = None) -> SyncJob:
    """Stop an active job: its runner (inline or workers) finds it cancelled at its next unit,
    and its config may run again at once. What was written so far stays (each unit is whole)."""
    job = _locked_job(session, job_id)
    if job.status not in JOB_ACTIVE_STATUSES:
        raise JobStateError(f"job {job_id} already ended ({job.status}); nothing to cancel")
    job.status = "cancelled"
    job.error = "cancelled by an operator"
    job.finished_at = now or utcnow()
    for step in session.scalars(select(SyncJobStep).where(SyncJobStep.job_id == job.id,
                                                          SyncJobStep.status == "pending")):
        step.status = "cancelled"
    session.flush()
    return job


def resume_job(session: Session, job_id: str, *, runner: str | None = None, enqueue: bool = True,
               now: datetime | None = None) -> SyncJob:
    """Take over a job whose runner is gone (lease expired) or that failed, for `runner`, from
    its checkpoints: a failed job's failed step runs again. With `enqueue`, its next unit is
    enqueued for the workers. JobStateError when a live runner holds it, or it ended well."""
    now = now or utcnow()
    job = _locked_job(session, job_id)
    if job.status in ("succeeded", "cancelled"):
        raise JobStateError(f"job {job_id} {job.status}; nothing to resume (start a new run with `crmsync sync run`)")
    if job.status in JOB_ACTIVE_STATUSES and not lease_expired(job, now):
        if job.status == "waiting_quota" and job.paused_until and job.paused_until > now:
            raise JobStateError(f"job {job_id} waits for the CRM's daily quota until {job.paused_until.isoformat()}")
        raise JobStateError(f"job {job_id} is being run by {job.lease_owner} (lease until "
                            f"{job.lease_expires_at.isoformat() if job.lease_expires_at else '?'})")
    if job.status == "failed":
        other = active_job(session, job.sync_config_id)
        if other is not None:
            raise JobAlreadyActive(job.sync_config_id, other.id)
        job.status = "running" if job.started_at else "queued"
        job.error, job.finished_at = None, None
        for step in session.scalars(select(SyncJobStep).where(SyncJobStep.job_id == job.id,
                                                              SyncJobStep.status == "failed")):
            step.status, step.error, step.updated_at = "pending", None, now
    if job.status == "waiting_quota":     # its pause is over (else its lease would not have expired)
        job.status, job.paused_until = "running", None
    renew_lease(job, runner or default_runner(), now)
    session.flush()
    if job.status == "queued":
        _enqueue(session, enqueue, START_JOB, job.id)
    else:
        nxt = session.scalar(select(SyncJobStep.id).where(SyncJobStep.job_id == job.id,
                                                          SyncJobStep.status == "pending")
                             .order_by(SyncJobStep.position).limit(1))
        if nxt is not None:
            _enqueue(session, enqueue, RUN_STEP, nxt)
    return job


# --- pushes requested by automation ----------------------------------------------------------
def request_push(session: Session, tenant_id: str, *, now: datetime | None = None) -> list[str]:
    """Send a tenant's local changes to its CRMs soon: a push job per enabled config that pushes,
    or, when a job is already active, an immediate next run."""
    now = now or utcnow()
    jobs = []
    configs = session.scalars(select(SyncConfig).where(SyncConfig.tenant_id == tenant_id,
                                                       SyncConfig.enabled.is_(True),
                                                       SyncConfig.sync_direction.in_(("push", "bidirectional"))))
    for config in configs:
        try:
            job = create_job(session, config, trigger="push", now=now)
        except JobAlreadyActive:
            config.next_sync_at = now
            continue
        jobs.append(job.id)
        _enqueue(session, True, START_JOB, job.id)
    return jobs

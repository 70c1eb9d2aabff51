"""A sync job run to its end in this process, unit after unit (the same steps the workers run,
one after another): `crmsync sync run --inline`, `crmsync jobs resume --inline`, conflict
resolutions' push-back, the demo and the benchmarks.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import SyncConfig, SyncJob, SyncJobStep
from crmsync.sync.errors import ConfigDisabled
from crmsync.sync.job_view import job_as_dict
from crmsync.sync.jobs import (
    Heartbeat,
    ReadAhead,
    StepProgress,
    active_job,
    create_job,
    fail_job,
    fail_step,
    lease_expired,
    resume_job,
    run_step,
    start_job,
    this_process,
)
from crmsync.tasks.retry import reason_of as error_reason

log = logging.getLogger(__name__)


def run_job_inline(config_id: str, *, full: bool = False, trigger: str = "manual", database_url: str | None = None,
                   progress: Callable[[StepProgress], None] | None = None, force: bool = False,
                   read_ahead: ReadAhead | None = None) -> dict[str, Any]:
    """Run a job of the config here, unit after unit: the config's job whose runner is gone
    (resumed from its checkpoints), else a new one. Returns job_as_dict; every failure ends the
    job `failed` with its reason. JobAlreadyActive while another live runner holds a job;
    ConfigDisabled for a disabled config unless `force`. `read_ahead`: a reader started before
    the job (`crmsync.sync.read_ahead.read_early`); its pages serve the job's first unit if they
    are that unit's, and it is let go in any case."""
    runner = this_process()
    read_ahead = read_ahead or ReadAhead()
    try:
        with session_scope(database_url) as s:
            config = s.get(SyncConfig, config_id)
            if not config.enabled and not force:
                raise ConfigDisabled(config_id)
            existing = active_job(s, config_id)
            if existing is not None and lease_expired(existing):
                job_id = resume_job(s, existing.id, runner=runner, enqueue=False).id
                log.info("resuming job %s of config %s (its runner %s is gone)", job_id, config_id,
                         existing.lease_owner)
            else:
                job_id = create_job(s, config, trigger=trigger, full=full, runner=runner, force=force).id
    except BaseException:
        read_ahead.discard()
        raise
    return run_claimed_job(job_id, runner, database_url=database_url, progress=progress, read_ahead=read_ahead)


def run_claimed_job(job_id: str, runner: str, *, database_url: str | None = None,
                    progress: Callable[[StepProgress], None] | None = None,
                    read_ahead: ReadAhead | None = None) -> dict[str, Any]:
    """Run a job leased to `runner` (this process) to its end, its lease renewed meanwhile."""
    read_ahead = read_ahead or ReadAhead()
    with Heartbeat(job_id, runner, database_url):
        try:
            with session_scope(database_url) as s:
                start_job(s, job_id, enqueue=False, runner=runner)
            _run_units(job_id, runner, database_url, progress, read_ahead)
        except Exception as err:  # whatever stopped the run ends the job, with its reason
            log.debug("job %s failed", job_id, exc_info=True)
            with session_scope(database_url) as s:
                fail_job(s, job_id, error_reason(err))
        finally:
            read_ahead.discard()
    with session_scope(database_url) as s:
        return job_as_dict(s.get(SyncJob, job_id))


def _run_units(job_id: str, runner: str, database_url: str | None,
               progress: Callable[[StepProgress], None] | None, read_ahead: ReadAhead) -> None:
    step_id = None
    while True:
        if step_id is None:
            with session_scope(database_url) as s:
                job = s.get(SyncJob, job_id)
                if job.status != "running" or job.lease_owner != runner:
                    break    # ended, cancelled, parked for a quota, or taken over by the workers
                step_id = s.scalar(select(SyncJobStep.id).where(SyncJobStep.job_id == job_id,
                                                                SyncJobStep.status == "pending")
                                   .order_by(SyncJobStep.position).limit(1))
                if step_id is None:
                    break
        try:
            with session_scope(database_url) as s:
                outcome = run_step(s, step_id, enqueue=False, wait=True, read_ahead=read_ahead, runner=runner)
        except Exception as err:  # noqa: BLE001  the unit was rolled back; the step fails with its reason
            with session_scope(database_url) as s:
                fail_step(s, step_id, error_reason(err))
            return
        if progress is not None and outcome is not None:
            progress(outcome)
        # The same step's next unit, unless it ended (or the job did): then look again.
        if outcome is None or outcome.done or outcome.job_status != "running":
            step_id = None

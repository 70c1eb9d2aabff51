"""The seed's orchestrator API under Python names:

    orchestrator = create_sync_orchestrator()
    orchestrator.initialize_platform("hubspot", api_key=...)
    result = orchestrator.perform_sync(config)
    result.success, result.data["contacts_synced"], result.error

`perform_sync` runs a whole job in this process (the same steps the workers run, one after
another); `run_job_inline` is what `crmsync sync run --inline` and the demo use.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass
class SyncResult:
    success: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run_job_inline(config_id: str, *, full: bool = False, trigger: str = "manual", database_url: str | None = None,
                   progress: Callable[[StepProgress], None] | None = None, force: bool = False) -> dict[str, Any]:
    """Run a job of the config here, unit after unit: the config's job whose runner is gone
    (resumed from its checkpoints), else a new one. Returns job_as_dict; every failure ends the
    job `failed` with its reason. JobAlreadyActive while another live runner holds a job;
    ConfigDisabled for a disabled config unless `force`."""
    runner = this_process()
    with session_scope(database_url) as s:
        config = s.get(SyncConfig, config_id)
        if not config.enabled and not force:
            raise ConfigDisabled(config_id)
        existing = active_job(s, config_id)
        if existing is not None and lease_expired(existing):
            job_id = resume_job(s, existing.id, runner=runner, enqueue=False).id
            log.info("resuming job %s of config %s (its runner %s is gone)", job_id, config_id, existing.lease_owner)
        else:
            job_id = create_job(s, config, trigger=trigger, full=full, runner=runner, force=force).id
    return run_claimed_job(job_id, runner, database_url=database_url, progress=progress)


def run_claimed_job(job_id: str, runner: str, *, database_url: str | None = None,
                    progress: Callable[[StepProgress], None] | None = None) -> dict[str, Any]:
    """Run a job leased to `runner` (this process) to its end, its lease renewed meanwhile."""
    read_ahead = ReadAhead()
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


class SyncOrchestrator:
    def __init__(self, database_url: str | None = None):
        self.database_url = database_url
        self.platform_credentials: dict[str, dict] = {}

    def initialize_platform(self, platform: str, credentials: dict | None = None, **kwargs) -> None:
        """Check a platform is known and keep its credentials for `connect_platform`.
        (Configs normally carry credentials through the vault; this mirrors the seed.)"""
        from crmsync.platforms import adapter_class
        adapter_class(platform)
        creds = dict(credentials or {})
        if "api_key" in kwargs:
            creds.setdefault("token", kwargs.pop("api_key"))
        creds.update(kwargs)
        self.platform_credentials[platform] = creds

    def connect_platform(self, platform: str, *, base_url: str | None = None):
        from crmsync.platforms import adapter_class
        return adapter_class(platform)(credentials=self.platform_credentials[platform], base_url=base_url)

    def perform_sync(self, config: SyncConfig | str, *, full: bool = False,
                     progress: Callable[[StepProgress], None] | None = None) -> SyncResult:
        config_id = config if isinstance(config, str) else config.id
        try:
            data = run_job_inline(config_id, full=full, database_url=self.database_url, progress=progress)
        except Exception as err:  # noqa: BLE001 — the seed's contract: a result, never a raise
            return SyncResult(success=False, error=f"{type(err).__name__}: {err}")
        return SyncResult(success=data["status"] == "succeeded", data=data, error=data.get("error"))


def create_sync_orchestrator(database_url: str | None = None, **_ignored) -> SyncOrchestrator:
    return SyncOrchestrator(database_url)

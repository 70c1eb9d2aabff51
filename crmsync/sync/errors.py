"""Errors of the sync engine. Each stops the job or command that meets it until a person acts
(`crmsync.errors.Fatal`)."""
from __future__ import annotations

from crmsync.errors import Fatal


class SyncError(Fatal):
    pass


class JobAlreadyActive(SyncError):
    """A config has a queued, running or parked job; a second one would race it."""

    def __init__(self, config_id: str, job_id: str):
        super().__init__(f"config {config_id} already has an active job {job_id}")
        self.config_id = config_id
        self.job_id = job_id


class ConfigDisabled(SyncError):
    """A sync asked of a disabled config: disabled means no sync at all, unless forced."""

    def __init__(self, config_id: str):
        super().__init__(f"config {config_id} is disabled: enable it (`crmsync configs enable {config_id}`) "
                         "or pass --force to sync it once anyway")
        self.config_id = config_id


class JobNotFound(SyncError):
    pass


class JobStateError(SyncError):
    """A job cannot do what was asked in its state (cancel a finished job, resume a job whose
    runner is alive)."""


class DeleteGuardTripped(SyncError):
    """A run would delete more than the allowed share of a tenant's records: stop and report."""

    def __init__(self, entity: str, would_delete: int, total: int, share: float):
        super().__init__(f"refusing to delete {would_delete} of {total} {entity} records "
                         f"(more than {share:.0%}); check the CRM, then rerun with a higher "
                         "CRMSYNC_MAX_DELETE_SHARE if this is intended")
        self.entity = entity
        self.would_delete = would_delete
        self.total = total


class ConflictResolutionError(SyncError):
    pass

"""A job as the CLI and the API show it. Kept apart from `crmsync.sync.jobs` so `crmsync jobs list`
loads no CRM client, merge or push code."""
from __future__ import annotations

from crmsync.db.models import ENTITY_MODELS, SyncJob

# The seed names its tables after the plurals (crm_contacts, ...; see crmsync.entities.TABLE_NAMES);
# read here so `jobs list` does not load the entity schemas (and marshmallow).
ENTITY_PLURALS = {entity: model.__tablename__.removeprefix("crm_") for entity, model in ENTITY_MODELS.items()}


def job_as_dict(job: SyncJob) -> dict:
    synced = {}
    conflicts = 0
    for entity, plural in ENTITY_PLURALS.items():
        c = (job.counts or {}).get(entity) or {}
        synced[f"{plural}_synced"] = c.get("created", 0) + c.get("updated", 0) + c.get("deleted", 0)
        conflicts += c.get("conflicts", 0)
    duration = ((job.finished_at - job.started_at).total_seconds()
                if job.finished_at and job.started_at else None)
    return {"job_id": job.id, "config_id": job.sync_config_id, "tenant_id": job.tenant_id, "status": job.status,
            "trigger": job.trigger, "full": job.full, **synced, "conflicts": conflicts, "error": job.error,
            "counts": job.counts, "paused_until": job.paused_until, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at, "duration_seconds": duration,
            "steps_total": job.steps_total, "steps_done": job.steps_done, "lease_owner": job.lease_owner,
            "lease_expires_at": job.lease_expires_at}

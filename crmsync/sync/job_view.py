"""A job as the CLI and the API show it. Kept apart from `crmsync.sync.jobs` so `crmsync jobs list`
loads no CRM client, merge or push code — nor SQLAlchemy: it reads its rows through
`crmsync.db.reads`, and the same function shapes them as it shapes an ORM SyncJob."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crmsync.db.reads import SYNC_JOB_COLUMNS

if TYPE_CHECKING:
    from crmsync.db.models import SyncJob

# As crmsync.entities.ENTITY_PLURALS (the original design's table names, crm_contacts, ...), written
# out so `jobs list` does not load the entity schemas (and marshmallow); a test checks they agree.
ENTITY_PLURALS = {"contact": "contacts", "company": "companies", "deal": "deals",
                  "activity": "activities", "task": "tasks"}


def job_as_dict(job: SyncJob | Mapping[str, Any]) -> dict:
    """`job`: a SyncJob, or its column values by name (`crmsync.db.reads.recent_jobs`)."""
    row = job if isinstance(job, Mapping) else {column: getattr(job, column) for column in SYNC_JOB_COLUMNS}
    counts = row["counts"]
    synced = {}
    conflicts = 0
    for entity, plural in ENTITY_PLURALS.items():
        c = (counts or {}).get(entity) or {}
        synced[f"{plural}_synced"] = c.get("created", 0) + c.get("updated", 0) + c.get("deleted", 0)
        conflicts += c.get("conflicts", 0)
    finished_at, started_at = row["finished_at"], row["started_at"]
    duration = (finished_at - started_at).total_seconds() if finished_at and started_at else None
    return {"job_id": row["id"], "config_id": row["sync_config_id"], "tenant_id": row["tenant_id"],
            "status": row["status"], "trigger": row["trigger"], "full": row["full"], **synced,
            "conflicts": conflicts, "error": row["error"], "counts": counts, "paused_until": row["paused_until"],
            "created_at": row["created_at"], "started_at": started_at, "finished_at": finished_at,
            "duration_seconds": duration, "steps_total": row["steps_total"], "steps_done": row["steps_done"],
            "lease_owner": row["lease_owner"], "lease_expires_at": row["lease_expires_at"]}

"""A conflict as the CLI shows it. Kept apart from `crmsync.sync.conflicts` so
`crmsync conflicts list` loads neither SQLAlchemy nor the models: it reads its rows through
`crmsync.db.reads`, and the same function shapes them as it shapes an ORM ConflictRecord."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crmsync.db.reads import CONFLICT_COLUMNS

if TYPE_CHECKING:
    from crmsync.db.models import ConflictRecord


def conflict_as_dict(c: ConflictRecord | Mapping[str, Any]) -> dict:
    """`c`: a ConflictRecord, or its column values by name (`crmsync.db.reads.recent_conflicts`)."""
    row = c if isinstance(c, Mapping) else {column: getattr(c, column) for column in CONFLICT_COLUMNS}
    fields = row["conflicting_fields"]
    local, remote, base = row["local_snapshot"], row["remote_snapshot"], row["base_snapshot"]
    return {"id": row["id"], "tenant_id": row["tenant_id"], "config_id": row["config_id"], "platform": row["platform"],
            "entity_type": row["entity_type"], "entity_id": row["entity_id"], "external_id": row["external_id"],
            "conflicting_fields": fields, "status": row["status"],
            "local": {f: local.get(f) for f in fields},
            "remote": {f: remote.get(f) for f in fields},
            "base": {f: (base or {}).get(f) for f in fields},
            "local_snapshot": local, "remote_snapshot": remote,
            "base_snapshot": base, "resolution": row["resolution"], "created_at": row["created_at"],
            "resolved_at": row["resolved_at"]}

"""Conflicts held for a person (`manual_review`): list, show, resolve.

Resolving writes the chosen values locally and moves the base so the push step sends them:
"take remote" makes both sides agree at once; "take local" or a typed value leaves the local
row ahead of the base, so the next push carries it to the CRM.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmsync.db.models import ConflictRecord, SyncLink
from crmsync.db.types import utcnow
from crmsync.sync import store
from crmsync.sync.errors import ConflictResolutionError
from crmsync.sync.merge import canonical


def list_conflicts(session: Session, *, tenant_id: str | None = None, status: str | None = "pending",
                   limit: int = 200) -> list[ConflictRecord]:
    q = select(ConflictRecord).order_by(ConflictRecord.created_at.desc()).limit(limit)
    if tenant_id:
        q = q.where(ConflictRecord.tenant_id == tenant_id)
    if status:
        q = q.where(ConflictRecord.status == status)
    return list(session.scalars(q))


def get_conflict(session: Session, conflict_id: str, *, tenant_id: str | None = None) -> ConflictRecord:
    import uuid
    try:
        conflict_id = str(uuid.UUID(str(conflict_id)))
    except ValueError:
        raise ConflictResolutionError(f"not a conflict id: {conflict_id!r}") from None
    q = select(ConflictRecord).where(ConflictRecord.id == conflict_id)
    if tenant_id:
        q = q.where(ConflictRecord.tenant_id == tenant_id)
    conflict = session.scalar(q)
    if conflict is None:
        raise ConflictResolutionError(f"no conflict {conflict_id}")
    return conflict


def resolve_conflict_record(session: Session, conflict_id: str, *, take: str | None = None,
                            values: dict[str, Any] | None = None, tenant_id: str | None = None) -> ConflictRecord:
    """Settle a pending conflict by taking one side, or typed values per field (the rest of
    the conflicting fields then take the remote)."""
    conflict = get_conflict(session, conflict_id, tenant_id=tenant_id)
    if conflict.status != "pending":
        raise ConflictResolutionError(f"conflict {conflict.id} is {conflict.status}, not pending")
    if (take is None) == (not values):
        raise ConflictResolutionError("give exactly one of take=local|remote or values per field")
    if take not in (None, "local", "remote"):
        raise ConflictResolutionError(f"take must be local or remote, not {take!r}")
    fields = list(conflict.conflicting_fields)
    unknown = [f for f in (values or {}) if f not in fields]
    if unknown:
        raise ConflictResolutionError(f"{unknown[0]} is not one of the conflicting fields: {', '.join(fields)}")
    chosen: dict[str, Any] = {}
    for f in fields:
        if values and f in values:
            chosen[f] = canonical(values[f])
        elif take == "local":
            chosen[f] = conflict.local_snapshot.get(f)
        else:
            chosen[f] = conflict.remote_snapshot.get(f)
    now = utcnow()
    rows = store.load_rows(session, conflict.tenant_id, conflict.entity_type, [conflict.entity_id])
    row = rows.get(conflict.entity_id)
    if row is None:
        raise ConflictResolutionError(f"the {conflict.entity_type} {conflict.entity_id} no longer exists")
    cols = store.flat_to_columns(conflict.entity_type, chosen, row.custom_fields or {})
    cols.update(id=row.id, tenant_id=row.tenant_id, updated_at=now, last_change_cause="conflict-resolution")
    store.update_rows(session, conflict.entity_type, [cols])
    link = session.scalar(select(SyncLink).where(SyncLink.tenant_id == conflict.tenant_id,
                                                 SyncLink.platform == conflict.platform,
                                                 SyncLink.entity_type == conflict.entity_type,
                                                 SyncLink.local_id == conflict.entity_id))
    if link is not None:
        # The base becomes what the remote holds; fields where we chose otherwise differ from it
        # and are pushed.
        link.base = {**link.base, **{f: conflict.remote_snapshot.get(f) for f in fields}}
        pending_push = any(chosen[f] != conflict.remote_snapshot.get(f) for f in fields)
        link.base_at = None if pending_push else now
    conflict.status = "resolved"
    conflict.resolution = {"take": take, "values": chosen}
    conflict.resolved_at = now
    session.flush()
    return conflict


def conflict_as_dict(c: ConflictRecord) -> dict:
    return {"id": c.id, "tenant_id": c.tenant_id, "config_id": c.config_id, "platform": c.platform,
            "entity_type": c.entity_type, "entity_id": c.entity_id, "external_id": c.external_id,
            "conflicting_fields": c.conflicting_fields, "status": c.status,
            "local": {f: c.local_snapshot.get(f) for f in c.conflicting_fields},
            "remote": {f: c.remote_snapshot.get(f) for f in c.conflicting_fields},
            "base": {f: (c.base_snapshot or {}).get(f) for f in c.conflicting_fields},
            "local_snapshot": c.local_snapshot, "remote_snapshot": c.remote_snapshot,
            "base_snapshot": c.base_snapshot, "resolution": c.resolution, "created_at": c.created_at,
            "resolved_at": c.resolved_at}

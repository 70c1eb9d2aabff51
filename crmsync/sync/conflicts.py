"""Conflicts held for a person (`manual_review`): list, show, resolve — from the CLI or the
operations console, through the same functions.

Resolving writes the chosen values locally and moves the base so the push step sends them:
"take remote" makes both sides agree at once; "take local" or a typed value leaves the local
row ahead of the base, so the next push carries it to the CRM. Every resolution leaves an audit
row (`crm_conflict_resolutions`): who, when, the values before and after, what each side gets
written, and the push that followed.

A field rule ("always prefer HubSpot for `phone` in this config") settles that field's future
conflicts during the merge (`crmsync.sync.apply.field_preferences`); saving one also settles the
field in the config's pending conflicts.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from marshmallow import ValidationError
from marshmallow import fields as ma_fields
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crmsync.db import session_scope
from crmsync.db.models import (
    ENTITY_MODELS,
    ConflictFieldRule,
    ConflictRecord,
    ConflictResolution,
    SyncConfig,
    SyncLink,
)
from crmsync.db.reads import CONFLICT_LIST_LIMIT
from crmsync.db.types import utcnow
from crmsync.entities import ASSOCIATIONS, SCHEMAS, SYNCED_FIELDS
from crmsync.settings import get_settings
from crmsync.sync import store
from crmsync.sync.conflict_view import conflict_as_dict as conflict_as_dict
from crmsync.sync.errors import ConfigDisabled, ConflictResolutionError, JobAlreadyActive
from crmsync.sync.inline import run_job_inline
from crmsync.sync.jobs import request_push
from crmsync.sync.merge import CUSTOM, canonical

SIDES = ("local", "remote")


def list_conflicts(session: Session, *, tenant_id: str | None = None, status: str | None = "pending",
                   limit: int = CONFLICT_LIST_LIMIT) -> list[ConflictRecord]:
    """The newest `limit` conflicts, newest first. `crmsync conflicts list` reads the same rows
    without SQLAlchemy (`crmsync.db.reads.recent_conflicts`)."""
    q = select(ConflictRecord).order_by(ConflictRecord.created_at.desc()).limit(limit)
    if tenant_id:
        q = q.where(ConflictRecord.tenant_id == tenant_id)
    if status:
        q = q.where(ConflictRecord.status == status)
    return list(session.scalars(q))


def get_conflict(session: Session, conflict_id: str, *, tenant_id: str | None = None,
                 for_update: bool = False) -> ConflictRecord:
    """One conflict; with `tenant_id`, only that tenant's (another tenant's reads as missing)."""
    try:
        conflict_id = str(uuid.UUID(str(conflict_id)))
    except ValueError:
        raise ConflictResolutionError(f"not a conflict id: {conflict_id!r}") from None
    q = select(ConflictRecord).where(ConflictRecord.id == conflict_id)
    if tenant_id:
        q = q.where(ConflictRecord.tenant_id == tenant_id)
    if for_update:
        q = q.with_for_update()
    conflict = session.scalar(q)
    if conflict is None:
        raise ConflictResolutionError(f"no conflict {conflict_id}")
    return conflict


def typed_value(session: Session, conflict: ConflictRecord, field: str, value: Any) -> Any:
    """A value a person typed for `field`, checked and converted as the field's schema and column
    want it (a number for `lead_score`, a listed status, a length the column holds, a record of
    this tenant for an association). Values that are not text came from a snapshot and are kept."""
    if not isinstance(value, str):
        return canonical(value)
    text = value.strip()
    if not text:
        return None
    entity = conflict.entity_type
    if field.startswith(CUSTOM):
        return text
    if field not in SYNCED_FIELDS[entity]:
        raise ConflictResolutionError(f"{field} is not a field of a {entity}")
    target = ASSOCIATIONS[entity].get(field)
    if target is not None:
        try:
            text = str(uuid.UUID(text))
        except ValueError:
            raise ConflictResolutionError(f"{field}: expected the id of a {target}, got {text!r}") from None
        model = ENTITY_MODELS[target]
        if session.scalar(select(model.id).where(model.tenant_id == conflict.tenant_id, model.id == text)) is None:
            raise ConflictResolutionError(f"{field}: no {target} {text} in this tenant")
        return text
    schema = SCHEMAS[entity]()
    raw: Any = text
    if isinstance(schema.fields[field], ma_fields.List):
        raw = [part.strip() for part in text.split(",") if part.strip()]
    try:
        loaded = schema.load({field: raw}, partial=True)[field]
    except ValidationError as err:
        problem = "; ".join(str(m) for m in err.messages_dict.get(field, [err]))
        raise ConflictResolutionError(f"{field}: {problem} (got {text!r})") from None
    length = getattr(ENTITY_MODELS[entity].__table__.c[field].type, "length", None)
    if length and isinstance(loaded, str) and len(loaded) > length:
        raise ConflictResolutionError(f"{field}: at most {length} characters, got {len(loaded)}")
    return canonical(loaded)


def planned_writes(conflict: ConflictRecord, chosen: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What settling with `chosen` writes on each side: the local row where the choice differs
    from ours, the CRM (by the next push) where it differs from theirs."""
    return {"local": {f: v for f, v in chosen.items() if v != conflict.local_snapshot.get(f)},
            conflict.platform or "remote": {f: v for f, v in chosen.items() if v != conflict.remote_snapshot.get(f)}}


def resolve_conflict_record(session: Session, conflict_id: str, *, take: str | None = None,
                            values: dict[str, Any] | None = None, tenant_id: str | None = None,
                            resolved_by: str = "cli", expect_fields: Iterable[str] | None = None) -> ConflictRecord:
    """Settle a pending conflict by taking one side, or values per field (the rest of the
    conflicting fields then take the remote). Text values are checked as typed by a person.
    `expect_fields` (the fields a page showed) refuses a conflict that changed since."""
    conflict = get_conflict(session, conflict_id, tenant_id=tenant_id, for_update=True)
    if conflict.status != "pending":
        when = f" at {conflict.resolved_at:%Y-%m-%d %H:%M} UTC" if conflict.resolved_at else ""
        raise ConflictResolutionError(f"conflict {conflict.id} is already {conflict.status}{when}; nothing written")
    if (take is None) == (not values):
        raise ConflictResolutionError("give exactly one of take=local|remote or values per field")
    if take not in (None, *SIDES):
        raise ConflictResolutionError(f"take must be local or remote, not {take!r}")
    fields = list(conflict.conflicting_fields)
    if expect_fields is not None and sorted(expect_fields) != sorted(fields):
        raise ConflictResolutionError(f"conflict {conflict.id} changed since the page was loaded (now on "
                                      f"{', '.join(fields)}); reload it; nothing written")
    unknown = [f for f in (values or {}) if f not in fields]
    if unknown:
        raise ConflictResolutionError(f"{unknown[0]} is not one of the conflicting fields: {', '.join(fields)}")
    chosen: dict[str, Any] = {}
    for f in fields:
        if values and f in values:
            chosen[f] = typed_value(session, conflict, f, values[f])
        elif take == "local":
            chosen[f] = conflict.local_snapshot.get(f)
        else:
            chosen[f] = conflict.remote_snapshot.get(f)
    how = f"take-{take}" if take else "fields"
    _settle(session, conflict, chosen, resolved_by=resolved_by, how=how)
    conflict.status = "resolved"
    conflict.resolution = {"take": take, "values": chosen, "by": resolved_by}
    conflict.resolved_at = utcnow()
    session.flush()
    return conflict


def _settle(session: Session, conflict: ConflictRecord, chosen: dict[str, Any], *, resolved_by: str,
            how: str) -> ConflictResolution:
    """Write `chosen` (some or all of the conflicting fields) locally, move the link's base for
    them, and keep the audit row."""
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
        link.base = {**link.base, **{f: conflict.remote_snapshot.get(f) for f in chosen}}
        pending_push = any(chosen[f] != conflict.remote_snapshot.get(f) for f in chosen)
        link.base_at = None if pending_push else now
    audit = ConflictResolution(
        tenant_id=conflict.tenant_id, conflict_id=conflict.id, config_id=conflict.config_id,
        entity_type=conflict.entity_type, entity_id=conflict.entity_id, resolved_by=resolved_by, how=how,
        before={side: {f: (snap or {}).get(f) for f in chosen} for side, snap in
                (("local", conflict.local_snapshot), ("remote", conflict.remote_snapshot),
                 ("base", conflict.base_snapshot))},
        after=dict(chosen), writes=planned_writes(conflict, chosen), resolved_at=now)
    session.add(audit)
    return audit


def push_after_resolution(tenant_id: str, config_ids: Iterable[str | None]) -> dict[str, Any]:
    """Send resolutions to the CRMs as `crmsync conflicts resolve` does: inline without a broker
    (one push job per config, run here), else a push job per config through the workers.
    Returns {"push_job": job} (inline, one config), {"push_jobs": [...]} otherwise."""
    config_ids = [c for c in dict.fromkeys(config_ids) if c]
    if get_settings().inline:
        jobs = []
        for config_id in config_ids:
            try:
                jobs.append(run_job_inline(config_id, trigger="push"))
            except (JobAlreadyActive, ConfigDisabled) as err:
                jobs.append({"error": str(err), "config_id": config_id})
        return {"push_job": jobs[0]} if len(jobs) == 1 else {"push_jobs": jobs}
    with session_scope() as s:
        return {"push_jobs": request_push(s, tenant_id)}


def record_push(session: Session, conflict_ids: Iterable[str], push: dict[str, Any]) -> None:
    """Note on the audit rows just written which push carried them (the write that followed)."""
    summary = push_summary(push)
    session.execute(update(ConflictResolution).where(ConflictResolution.conflict_id.in_(list(conflict_ids)),
                                                     ConflictResolution.push.is_(None)).values(push=summary))


def push_summary(push: dict[str, Any]) -> dict[str, Any]:
    jobs = [push["push_job"]] if "push_job" in push else push.get("push_jobs", [])
    return {"jobs": [{"job_id": j.get("job_id"), "status": j.get("status"), "error": j.get("error")}
                     if isinstance(j, dict) else {"job_id": j, "status": "queued", "error": None} for j in jobs]}


def save_field_rule(session: Session, config: SyncConfig, entity: str, field: str, prefer: str, *,
                    created_by: str) -> list[ConflictRecord]:
    """"Always prefer `prefer` for `field` of `entity` in this config": keep the rule, and settle
    that field in the config's pending conflicts now. Returns the conflicts touched."""
    if prefer not in SIDES:
        raise ConflictResolutionError(f"prefer must be local or remote, not {prefer!r}")
    if entity not in SYNCED_FIELDS:
        raise ConflictResolutionError(f"not an entity: {entity!r}")
    if field not in SYNCED_FIELDS[entity] and not field.startswith(CUSTOM):
        raise ConflictResolutionError(f"{field} is not a field of a {entity}")
    # A custom field's name comes from a form: it must fit the rule's column and hold a name at all.
    name = field.removeprefix(CUSTOM)
    if field.startswith(CUSTOM) and (not name or len(field) > ConflictFieldRule.field.type.length
                                     or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)):
        raise ConflictResolutionError(f"not a custom field name: {field[:60]!r}")
    rule = session.scalar(select(ConflictFieldRule).where(ConflictFieldRule.config_id == config.id,
                                                          ConflictFieldRule.entity_type == entity,
                                                          ConflictFieldRule.field == field))
    if rule is None:
        rule = ConflictFieldRule(tenant_id=config.tenant_id, config_id=config.id, entity_type=entity, field=field)
        session.add(rule)
    rule.prefer, rule.created_by, rule.created_at = prefer, created_by, utcnow()
    touched = []
    pending = session.scalars(select(ConflictRecord).where(
        ConflictRecord.tenant_id == config.tenant_id, ConflictRecord.config_id == config.id,
        ConflictRecord.entity_type == entity, ConflictRecord.status == "pending").with_for_update())
    for conflict in pending:
        if field not in conflict.conflicting_fields:
            continue
        snapshot = conflict.local_snapshot if prefer == "local" else conflict.remote_snapshot
        _settle(session, conflict, {field: snapshot.get(field)}, resolved_by=created_by, how="field-rule")
        rest = [f for f in conflict.conflicting_fields if f != field]
        conflict.conflicting_fields = rest
        if not rest:
            conflict.status = "resolved"
            conflict.resolution = {"take": prefer, "values": {field: snapshot.get(field)}, "by": created_by}
            conflict.resolved_at = utcnow()
        touched.append(conflict)
    session.flush()
    return touched

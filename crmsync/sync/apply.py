"""The merge path every remote change takes, whether a pull page or a webhook brought it.

Per page: load links, local rows and pending conflicts in one query each; match unlinked
records by email (contacts) or domain (companies); merge three ways against the link's base;
write rows, links and conflict records. The caller's transaction makes the page atomic.

Echo suppression falls out of the base: a remote version equal to the base (our own write
coming back) changes nothing, and values written here become the new base, so they never
count as local edits.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmsync.db.models import ENTITY_MODELS, ConflictFieldRule, ConflictRecord, SyncConfig, SyncLink, new_id
from crmsync.db.types import utcnow
from crmsync.entities import ASSOCIATIONS, SYNCED_FIELDS
from crmsync.platforms.base import RemoteRecord
from crmsync.sync import store, values
from crmsync.sync.errors import DeleteGuardTripped
from crmsync.sync.merge import canonical, flatten, resolve_conflict

LINK_COLUMNS = ["id", "tenant_id", "config_id", "platform", "entity_type", "local_id", "external_id", "base",
                "base_at", "remote_updated_at", "created_at"]

# Bookkeeping keys inside a link's base (never field names).
DELETED = "__deleted"
UNSUPPORTED = "__unsupported"   # fields this CRM does not keep for the record


@dataclass
class RecordChange:
    """A local record that changed, for automation triggers: fields maps name -> (old, new)."""
    entity: str
    local_id: str
    action: str                  # created | updated | deleted
    fields: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)


class CreatedFields(Mapping):
    """A new record's fields as (None, value) pairs, made only when asked: most syncs have no
    automation rule that reads them, and a backfill creates thousands of records a second."""
    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getitem__(self, name: str) -> tuple[None, Any]:
        return None, self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@dataclass
class ApplyResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    conflicts: int = 0
    skipped: int = 0
    failed: int = 0
    changes: list[RecordChange] = field(default_factory=list)

    def add(self, other: ApplyResult) -> None:
        for name in ("created", "updated", "deleted", "conflicts", "skipped", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.changes.extend(other.changes)

    def counts(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in ("created", "updated", "deleted", "conflicts", "skipped", "failed")}


def remote_flat(entity: str, record: RemoteRecord, resolved: dict[tuple[str, str], str]) -> dict[str, Any]:
    """The remote record's comparable fields, associations turned into local ids. An association
    we cannot resolve yet is left out, so it never reads as a change."""
    flat = flatten(record.fields, SYNCED_FIELDS[entity])
    for fname in ASSOCIATIONS[entity]:
        flat.pop(fname, None)
        if fname in record.associations:
            ext = record.associations[fname]
            if ext is None:
                flat[fname] = None
            elif (fname, str(ext)) in resolved:
                flat[fname] = resolved[(fname, str(ext))]
    return flat


def _held_fields(session: Session, config: SyncConfig, entity: str, local_ids: list[str]) -> dict[str, ConflictRecord]:
    if not local_ids:
        return {}
    rows = session.scalars(select(ConflictRecord).where(
        ConflictRecord.tenant_id == config.tenant_id, ConflictRecord.platform == config.platform,
        ConflictRecord.entity_type == entity, ConflictRecord.status == "pending",
        store.among(session, ConflictRecord.entity_id, local_ids)))
    return {c.entity_id: c for c in rows}


def field_preferences(session: Session, config: SyncConfig, entity: str) -> dict[str, str]:
    """The config's "always prefer <side> for <field>" rules for one entity: {field: side}."""
    return dict(session.execute(select(ConflictFieldRule.field, ConflictFieldRule.prefer).where(
        ConflictFieldRule.tenant_id == config.tenant_id, ConflictFieldRule.config_id == config.id,
        ConflictFieldRule.entity_type == entity)).all())


def apply_remote_records(session: Session, config: SyncConfig, entity: str, records: list[RemoteRecord], *,
                         now: datetime | None = None, cause: str | None = None) -> ApplyResult:
    now = now or utcnow()
    cause = cause or f"sync:{config.platform}"
    result = ApplyResult()
    tenant, platform = config.tenant_id, config.platform
    # One version per external id: the newest.
    latest: dict[str, RemoteRecord] = {}
    for rec in records:
        prev = latest.get(rec.external_id)
        if prev is None or canonical(rec.updated_at) >= canonical(prev.updated_at):
            latest[rec.external_id] = rec
    records = list(latest.values())
    if values.has_value_maps(config, entity):
        for rec in records:
            rec.fields = values.to_local(config, entity, rec.fields)
    for rec in records:
        if rec.merged_ids:
            apply_remote_merge(session, config, entity, rec.external_id, rec.merged_ids, now=now)
    archived = [r.external_id for r in records if r.archived]
    if archived:
        result.add(apply_remote_deletions(session, config, entity, archived, now=now, guard=False))
    records = [r for r in records if not r.archived]
    if not records:
        return result

    links = {l.external_id: l for l in store.load_links(session, tenant, platform, entity,
                                                        external_ids=[r.external_id for r in records])}
    rows = store.load_rows(session, tenant, entity, [l.local_id for l in links.values()])
    resolved = store.resolve_associations(session, tenant, platform, entity, [r.associations for r in records])
    key_field = {"contact": "email", "company": "domain"}.get(entity)
    unlinked_keys = [str(r.fields.get(key_field) or "") for r in records
                     if key_field and (r.external_id not in links or links[r.external_id].local_id not in rows)]
    matches = store.match_unlinked(session, tenant, platform, entity, unlinked_keys)
    in_flight = {l.local_id: l for l in store.load_links(session, tenant, platform, entity,
                                                         local_ids=[r.id for r in matches.values()])}
    held = _held_fields(session, config, entity, [l.local_id for l in links.values()])

    inserts, updates = [], []
    # The config's field rules, read before the link COPY opens (no statement may run inside it);
    # only a page that meets records known here can have a conflict at all.
    preferences = field_preferences(session, config, entity) if rows or matches else {}
    claimed: set[str] = set()
    fresh_ids = iter(store.new_ids(2 * len(records)))   # a row's and its link's, for new records
    # New links stream into PostgreSQL while the page is worked out (no other statement until
    # the block ends: everything below only changes ORM objects, flushed afterwards).
    with store.new_rows(session, SyncLink.__table__, LINK_COLUMNS) as add_link:
        for rec in records:
            rflat = remote_flat(entity, rec, resolved)
            link = links.get(rec.external_id)
            row = rows.get(link.local_id) if link else None
            if link is not None and link.base.get(DELETED) and row is not None and row.deleted_at is not None:
                result.skipped += 1       # deleted here and archived there; a restore is a new record
                continue
            if row is None and key_field:
                key = str(rec.fields.get(key_field) or "").lower()
                candidate = matches.get(key) if key else None
                if candidate is not None and candidate.id not in claimed:
                    row = candidate
                    claimed.add(row.id)
                    link = in_flight.get(row.id)   # our own create that reached the CRM: adopt its id
                    if link is not None:
                        link.external_id = rec.external_id
            if row is None:
                local_id = next(fresh_ids)
                cols = store.flat_to_columns(entity, rflat)
                cols.update(id=local_id, tenant_id=tenant, created_at=now, updated_at=now, last_change_cause=cause)
                if entity == "activity" and not cols.get("type"):
                    cols["type"] = "note"
                if entity == "task" and not cols.get("title"):
                    cols["title"] = "(untitled task)"
                inserts.append(cols)
                _put_link(session, config, entity, link, local_id, rec, rflat, now, add_link=add_link,
                          link_id=next(fresh_ids))
                result.created += 1
                result.changes.append(RecordChange(entity, local_id, "created", CreatedFields(rflat)))
                continue

            if row.deleted_at is not None:
                result.skipped += 1       # deleted locally: the push archives it remotely
                continue
            lflat = store.row_to_flat(entity, row)
            if link is not None and link.base.get(UNSUPPORTED):
                for f in link.base[UNSUPPORTED]:
                    rflat.pop(f, None)
            conflict = held.get(row.id)
            base = dict(link.base) if link is not None else None
            res = resolve_conflict(local=lflat, remote=rflat, base=base, strategy=config.conflict_strategy,
                                   source_priority=config.source_priority, remote_platform=platform,
                                   local_updated_at=row.updated_at, remote_updated_at=rec.updated_at)
            if res.conflicting_fields and preferences.keys() & set(res.conflicting_fields):
                res = resolve_conflict(local=lflat, remote=rflat, base=base, strategy=config.conflict_strategy,
                                       source_priority=config.source_priority, remote_platform=platform,
                                       local_updated_at=row.updated_at, remote_updated_at=rec.updated_at,
                                       preferences=preferences)
            held_now = set(res.held_fields)
            if conflict is not None:
                # Fields already under review stay untouched until a person resolves them.
                held_now |= {f for f in conflict.conflicting_fields if f in rflat and rflat[f] != lflat.get(f)}
            changed = {f: v for f, v in res.merged.items() if f not in held_now and lflat.get(f) != v}
            if changed:
                cols = store.flat_to_columns(entity, changed, row.custom_fields or {})
                cols.update(id=row.id, tenant_id=tenant, updated_at=now, last_change_cause=cause)
                updates.append(cols)
                result.updated += 1
                result.changes.append(RecordChange(entity, row.id, "updated",
                                                   {f: (lflat.get(f), v) for f, v in changed.items()}))
            # The new base: what the remote holds now, except held fields keep their old base so they
            # keep reading as changed on both sides. Local-winning fields differ from it: the push sends them.
            new_base = dict(base or {})
            for f, v in rflat.items():
                if f not in held_now:
                    new_base[f] = v
            if held_now:
                result.conflicts += 1
                _record_conflict(session, config, entity, row.id, rec.external_id, lflat, rflat, base, sorted(held_now),
                                 conflict, now)
            elif conflict is not None:
                conflict.status = "superseded"
                conflict.resolved_at = now
            elif res.conflicting_fields:
                result.conflicts += 1
            if not changed and link is not None and new_base == link.base:
                link.remote_updated_at = rec.updated_at
                result.skipped += 1
                continue
            # Agreed when, outside held fields, the local row now equals what the remote holds;
            # otherwise local-winning values remain and the push step must send them.
            # (A local value the remote left empty counts too: the push fills it, or learns the CRM
            # cannot hold it and marks it unsupported.)
            unsupported = set(new_base.get(UNSUPPORTED, ()))
            agreed = all(res.merged.get(f) == new_base.get(f)
                         for f in set(new_base) | {f for f, v in res.merged.items() if v is not None}
                         if f not in held_now and f not in unsupported and not f.startswith("__"))
            _put_link(session, config, entity, link, row.id, rec, new_base, now, agreed=agreed)
            if not changed:
                result.skipped += 1

    store.insert_rows(session, entity, inserts)
    store.update_rows(session, entity, updates)
    session.flush()
    _notify(session, tenant, result, cause)
    return result


def _put_link(session: Session, config: SyncConfig, entity: str, link: SyncLink | None, local_id: str,
              rec: RemoteRecord, base: dict, now: datetime, *, agreed: bool = True,
              add_link: Callable[[list], None] | None = None, link_id: str | None = None) -> None:
    # base_at is when both sides last agreed; None makes the row a push candidate at once.
    if link is None:
        row = {"id": link_id or new_id(), "tenant_id": config.tenant_id, "config_id": config.id, "platform": config.platform,
               "entity_type": entity, "local_id": local_id, "external_id": rec.external_id, "base": base,
               "base_at": now if agreed else None, "remote_updated_at": rec.updated_at, "created_at": now}
        if add_link is not None:
            add_link([row[c] for c in LINK_COLUMNS])
        else:
            session.add(SyncLink(**row))
        return
    link.local_id = local_id
    link.base = base
    link.remote_updated_at = rec.updated_at
    link.base_at = now if agreed else None


def _record_conflict(session, config, entity, local_id, external_id, lflat, rflat, base, fields_, existing, now):
    if existing is None:
        existing = ConflictRecord(id=new_id(), tenant_id=config.tenant_id, config_id=config.id,
                                  platform=config.platform, entity_type=entity, entity_id=local_id,
                                  status="pending", created_at=now)
        session.add(existing)
    existing.external_id = external_id
    existing.local_snapshot = lflat
    existing.remote_snapshot = rflat
    existing.base_snapshot = base
    existing.conflicting_fields = fields_


def apply_remote_deletions(session: Session, config: SyncConfig, entity: str, external_ids: list[str], *,
                           now: datetime | None = None, guard: bool = True, max_share: float | None = None
                           ) -> ApplyResult:
    """Soft-delete (`deleted_at`) the local rows of records archived or deleted in the CRM.
    Refuses (DeleteGuardTripped) when that is more than the allowed share of the tenant's rows."""
    now = now or utcnow()
    result = ApplyResult()
    links = store.load_links(session, config.tenant_id, config.platform, entity, external_ids=external_ids)
    rows = store.load_rows(session, config.tenant_id, entity, [l.local_id for l in links])
    live = [l for l in links if l.local_id in rows and rows[l.local_id].deleted_at is None]
    if guard and live:
        from sqlalchemy import func

        from crmsync.settings import get_settings
        share = get_settings().max_delete_share if max_share is None else max_share
        table = ENTITY_MODELS[entity].__table__
        total = session.scalar(select(func.count()).select_from(table).where(
            table.c.tenant_id == config.tenant_id, table.c.deleted_at.is_(None))) or 0
        if len(live) > 10 and len(live) > share * total:
            raise DeleteGuardTripped(entity, len(live), total, share)
    updates = []
    for link in live:
        updates.append({"id": link.local_id, "tenant_id": config.tenant_id, "deleted_at": now, "updated_at": now,
                        "last_change_cause": f"sync:{config.platform}"})
        link.base = {**link.base, DELETED: True}
        link.base_at = now
        result.deleted += 1
        result.changes.append(RecordChange(entity, link.local_id, "deleted"))
    result.skipped += len(external_ids) - len(live)
    store.update_rows(session, entity, updates)
    session.flush()
    _notify(session, config.tenant_id, result, f"sync:{config.platform}")
    return result


def apply_remote_merge(session: Session, config: SyncConfig, entity: str, surviving_id: str,
                       merged_ids: list[str], *, now: datetime | None = None) -> None:
    """HubSpot merged contacts: the merged-away ids no longer exist. Their local records'
    associations move to the survivor's record, and the merged-away local record is soft-deleted."""
    now = now or utcnow()
    tenant, platform = config.tenant_id, config.platform
    links = {l.external_id: l for l in store.load_links(session, tenant, platform, entity,
                                                        external_ids=[surviving_id, *merged_ids])}
    merged_links = [links[m] for m in merged_ids if m in links and m != surviving_id]
    if not merged_links:
        return
    survivor = links.get(surviving_id)
    if survivor is None:
        # We only knew the merged-away record: it becomes the survivor's.
        keep, rest = merged_links[0], merged_links[1:]
        keep.external_id = surviving_id
        keep.base = {}
        keep.base_at = None
        survivor = keep
        merged_links = rest
    for link in merged_links:
        _move_references(session, tenant, entity, link.local_id, survivor.local_id)
        store.update_rows(session, entity, [{"id": link.local_id, "tenant_id": tenant, "deleted_at": now,
                                             "updated_at": now, "last_change_cause": f"merge:{platform}"}])
        session.delete(link)
    session.flush()


def _move_references(session: Session, tenant: str, entity: str, old_local: str, new_local: str) -> None:
    from sqlalchemy import update
    for other, assocs in ASSOCIATIONS.items():
        for fname, target in assocs.items():
            if target == entity:
                table = ENTITY_MODELS[other].__table__
                session.execute(update(table).where(table.c.tenant_id == tenant, table.c[fname] == old_local)
                                .values({fname: new_local}))


def _notify(session: Session, tenant_id: str, result: ApplyResult, cause: str) -> None:
    """Automation triggers (contact_created, deal_stage_changed, ...) hear of every change."""
    if not result.changes:
        return
    from crmsync.automation.triggers import on_record_changes
    on_record_changes(session, tenant_id, result.changes, cause)

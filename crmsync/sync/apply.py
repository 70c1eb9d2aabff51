"""The merge path every remote change takes, whether a pull page or a webhook brought it.

`apply_remote_records` takes a page through named steps, each a function below:

1. `newest_versions`: one version per external id, the newest.
2. `translate_values`: the config's value mappings, from the CRM's spelling to ours.
3. `apply_merged_away`: records the CRM merged into another hand their references to the survivor.
4. `apply_archived`: records archived in the CRM soft-delete their local rows.
5. `known_probe`: whether the page touches anything stored here (a link of one of its
   records, or a local row with one of its emails or domains): one statement, which PostgreSQL
   answers while `storable` leaves out (counted failed) the records whose values our columns
   cannot hold and `remote_flat` flattens the rest.
6. Nothing known (every page of a first pull into an empty tenant): `create_records` writes each
   record's row and link straight in, the link's base being the remote values.
   Otherwise `load_known` reads links, local rows and pending conflicts (one query each) and
   matches unlinked records by email (contacts) or domain (companies); `merge_records` merges
   each record three ways against its link's base (`merge_one`) and writes rows, links and
   conflict records.
7. `_notify`: the listeners (`crmsync.sync.listeners`; automation's triggers) hear of every change.

The caller's transaction makes the page atomic.

Echo suppression falls out of the base: a remote version equal to the base (our own write
coming back) changes nothing, and values written here become the new base, so they never
count as local edits.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, String, func, or_, select
from sqlalchemy.orm import Session

from crmsync.db.models import ENTITY_MODELS, ConflictFieldRule, ConflictRecord, SyncConfig, SyncLink, new_id
from crmsync.db.types import utcnow
from crmsync.entities import ASSOCIATIONS, SYNCED_FIELD_SETS
from crmsync.platforms.base import RemoteRecord
from crmsync.sync import listeners, store, values
from crmsync.sync.errors import DeleteGuardTripped
from crmsync.sync.merge import canonical, flatten, resolve_conflict

log = logging.getLogger(__name__)

LINK_COLUMNS = ["id", "tenant_id", "config_id", "platform", "entity_type", "local_id", "external_id", "base",
                "base_at", "remote_updated_at", "created_at"]
# The field a record is matched on when no link connects it yet.
MATCH_KEYS = {"contact": "email", "company": "domain"}

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


# Per-record failures one result keeps for the job's view ("<platform> <entity> <id>: why").
MAX_ERRORS = 20


@dataclass
class ApplyResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    conflicts: int = 0
    skipped: int = 0
    failed: int = 0
    changes: list[RecordChange] = field(default_factory=list)
    # Which records `failed` counts and why: ids and reasons only, never a value (the job's
    # counts["errors"], as the push reports its own; see crmsync.sync.jobs).
    errors: list[str] = field(default_factory=list)
    # The records `storable` left out, by external id, with why (a webhook event of one fails).
    not_stored: dict[str, str] = field(default_factory=dict)

    def add(self, other: ApplyResult) -> None:
        for name in ("created", "updated", "deleted", "conflicts", "skipped", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.changes.extend(other.changes)
        self.errors.extend(other.errors[:MAX_ERRORS - len(self.errors)])
        self.not_stored.update(other.not_stored)

    def counts(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in ("created", "updated", "deleted", "conflicts", "skipped", "failed")}


@dataclass
class PageApply:
    """What the steps of one page share: where it goes, when, why, and what it did."""
    session: Session
    config: SyncConfig
    entity: str
    now: datetime
    cause: str
    result: ApplyResult = field(default_factory=ApplyResult)
    # The config's tenant, read once: the ORM attribute costs a microsecond a read, and a page of
    # new records reads it for every one.
    tenant: str = field(init=False)

    def __post_init__(self) -> None:
        self.tenant = self.config.tenant_id


@dataclass
class Known:
    """What is stored here of a page's records: links by external id, their local rows, local
    rows matched by email/domain (by lowercased key), links of creates in flight for those rows
    (by local id), and pending conflicts (by local id)."""
    links: dict[str, SyncLink]
    rows: dict[str, Any]
    matches: dict[str, Any]
    in_flight: dict[str, SyncLink]
    held: dict[str, ConflictRecord]


def remote_flat(entity: str, record: RemoteRecord, resolved: dict[tuple[str, str], str]) -> dict[str, Any]:
    """The remote record's comparable fields, associations turned into local ids. An association
    we cannot resolve yet is left out, so it never reads as a change."""
    flat = flatten(record.fields, SYNCED_FIELD_SETS[entity])
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
    """A page of remote records into the local tables, step by step (see the module's doc)."""
    page = PageApply(session, config, entity, now or utcnow(), cause or f"sync:{config.platform}")
    records = newest_versions(records)
    translate_values(config, entity, records)
    apply_merged_away(page, records)
    records = apply_archived(page, records)
    if not records:
        return page.result     # apply_archived told the triggers already
    resolved = store.resolve_associations(session, page.tenant, config.platform, entity,
                                          [r.associations for r in records])
    # PostgreSQL looks for what it knows of the page while its values are checked and flattened
    # here (neither needs the database). The probe asks about unstorable records too: that only
    # ever errs towards the merge.
    with store.asked_meanwhile(session, known_probe(page, records)) as known:
        records = storable(page, records)
        flats = [remote_flat(entity, rec, resolved) for rec in records]
    if not records:
        return page.result
    if known():
        merge_records(page, records, flats, load_known(page, records))
    else:
        create_records(page, records, flats)
    session.flush()
    _notify(session, page.tenant, page.result, page.cause)
    return page.result


def newest_versions(records: list[RemoteRecord]) -> list[RemoteRecord]:
    """One version per external id: the newest (a page may list a record twice as it changes)."""
    latest: dict[str, RemoteRecord] = {}
    for rec in records:
        prev = latest.get(rec.external_id)
        if prev is None or canonical(rec.updated_at) >= canonical(prev.updated_at):
            latest[rec.external_id] = rec
    return list(latest.values())


def translate_values(config: SyncConfig, entity: str, records: list[RemoteRecord]) -> None:
    """The config's value mappings (a deal stage's CRM spelling to ours), in place."""
    if values.has_value_maps(config, entity):
        for rec in records:
            rec.fields = values.to_local(config, entity, rec.fields)


def apply_merged_away(page: PageApply, records: list[RemoteRecord]) -> None:
    for rec in records:
        if rec.merged_ids:
            apply_remote_merge(page.session, page.config, page.entity, rec.external_id, rec.merged_ids, now=page.now)


def apply_archived(page: PageApply, records: list[RemoteRecord]) -> list[RemoteRecord]:
    """Soft-delete the local rows of the page's archived records; returns the others."""
    archived = [r.external_id for r in records if r.archived]
    if archived:
        page.result.add(apply_remote_deletions(page.session, page.config, page.entity, archived, now=page.now,
                                               guard=False))
    return [r for r in records if not r.archived]


INT32 = 2**31 - 1


@cache
def _column_limits(entity: str) -> tuple[dict[str, int], frozenset[str]]:
    """The entity's synced text fields with their lengths, and its whole-number fields."""
    table = ENTITY_MODELS[entity].__table__
    text_max: dict[str, int] = {}
    ints = set()
    for name in SYNCED_FIELD_SETS[entity]:
        col_type = table.c[name].type
        if isinstance(col_type, String):
            if col_type.length:
                text_max[name] = col_type.length
        elif isinstance(col_type, Integer):
            ints.add(name)
    return text_max, frozenset(ints)


# Values with no characters in them: only a whole-number column can refuse one.
_SCALARS = frozenset({bool, int, float, Decimal, date, datetime})


def _unstorable(entity: str, fields: Mapping[str, Any]) -> str | None:
    """Why a record's values cannot be stored here, or None. Plain strings and None, nearly
    every value a CRM sends, are checked first without the generic isinstance tests: this runs
    for every record of a backfill."""
    text_max, ints = _column_limits(entity)
    for name, value in fields.items():
        if value is None:
            continue
        if value.__class__ is str:
            if "\x00" in value:
                return f"{name} holds a NUL character"
            length = text_max.get(name)
            if length is not None and len(value) > length:
                return f"{name} has {len(value)} characters, more than the {length} stored here"
            if name in ints and _beyond_int32(value):
                return f"{name} is beyond a 32-bit whole number"     # not the value: it may be anybody's
            continue
        if value.__class__ in _SCALARS:
            if name in ints and _beyond_int32(value):
                return f"{name} is beyond a 32-bit whole number"
            continue
        if name == "custom_fields" and isinstance(value, Mapping):
            for k, v in value.items():
                if ("\x00" in k if k.__class__ is str else _holds_nul(k)) or \
                        ("\x00" in v if v.__class__ is str else _holds_nul(v)):
                    return f"custom field {str(k).replace(chr(0), '?')[:60]!r} holds a NUL character"
            continue
        if isinstance(value, (str, list, tuple, Mapping)) and _holds_nul(value):     # tags, multi-value fields
            return f"{name} holds a NUL character"
        if isinstance(value, str):
            length = text_max.get(name)
            if length is not None and len(value) > length:
                return f"{name} has {len(value)} characters, more than the {length} stored here"
        if name in ints and _beyond_int32(value):
            return f"{name} is beyond a 32-bit whole number"
    return None


def _beyond_int32(value: Any) -> bool:
    if value == "":
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number == number and abs(number) > INT32


def _holds_nul(value: Any) -> bool:
    """A NUL character anywhere in a value, nested lists and dicts (keys too) included: PostgreSQL's
    text and jsonb hold none."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_holds_nul(v) for v in value)
    return False


def storable(page: PageApply, records: list[RemoteRecord]) -> list[RemoteRecord]:
    """The records whose values our columns can hold. A CRM keeps what they cannot (HubSpot: text
    of 65,536 characters where our first_name holds 200, a NUL character, a number past 32 bits);
    such a record is counted failed and left out, since one record anybody can make (a web form's
    entry) would otherwise fail its page, and with it every later sync of the config."""
    kept = []
    for rec in records:
        problem = _unstorable(page.entity, rec.fields)
        if problem is None:
            kept.append(rec)
            continue
        page.result.failed += 1
        page.result.not_stored[str(rec.external_id)] = problem
        what = f"{page.config.platform} {page.entity} {rec.external_id}: not stored: {problem}"
        if len(page.result.errors) < MAX_ERRORS:
            page.result.errors.append(what)
        log.warning("%s", what)
    return kept


def known_probe(page: PageApply, records: list[RemoteRecord]) -> Select:
    """The statement that asks whether any record of the page is known here: linked already (this platform), or sharing
    its email (contacts) or domain (companies) with a local row, which the merge may match. One
    statement of two EXISTS probes, on the link's unique index and on the (tenant, lower(key))
    index; false for every page of a first pull into an empty tenant, which then needs none of
    `load_known`'s reads. (Any local row with the key counts, linked or deleted: the merge
    decides those, so this only ever errs towards the merge.)"""
    session, tenant, entity = page.session, page.tenant, page.entity
    # The page's unstorable records are asked about too (the probe runs while they are found):
    # a value with a NUL cannot be sent to PostgreSQL, and matches nothing stored here anyway.
    probes = [select(SyncLink.id).where(
        SyncLink.tenant_id == tenant, SyncLink.platform == page.config.platform, SyncLink.entity_type == entity,
        store.among(session, SyncLink.external_id,
                    [r.external_id for r in records if "\x00" not in str(r.external_id)])).exists()]
    key_field = MATCH_KEYS.get(entity)
    keys = {k for r in records if (k := str(r.fields.get(key_field) or "").lower()) and "\x00" not in k} \
        if key_field else set()
    if keys:
        table = ENTITY_MODELS[entity].__table__
        probes.append(select(table.c.id).where(
            table.c.tenant_id == tenant,
            store.among(session, func.lower(table.c[key_field], type_=String()), keys)).exists())
    return select(or_(*probes))


def create_records(page: PageApply, records: list[RemoteRecord], flats: list[dict[str, Any]]) -> None:
    """Every record of the page is new here: its row and its link go in by COPY, the link's base
    being its remote values (`remote_flat`, in `flats`; both sides agree as of now)."""
    session, config, entity, now, result = page.session, page.config, page.entity, page.now, page.result
    tenant, platform, config_id = page.tenant, config.platform, config.id
    fresh_ids = store.new_ids(2 * len(records))   # a row's and its link's
    rows = []
    changes = result.changes
    # The links stream into PostgreSQL while the rows are made (no other statement until the
    # block ends); the rows follow in one COPY.
    with store.new_rows(session, SyncLink.__table__, LINK_COLUMNS) as add_link:
        for i, rec in enumerate(records):
            local_id = fresh_ids[2 * i]
            rflat = flats[i]
            rows.append(new_row(page, local_id, rflat))
            add_link([fresh_ids[2 * i + 1], tenant, config_id, platform, entity, local_id, rec.external_id, rflat,
                      now, rec.updated_at, now])
            changes.append(RecordChange(entity, local_id, "created", CreatedFields(rflat)))
    result.created += len(records)
    store.insert_records(session, entity, rows)


# What a new row holds where the CRM gave nothing for a column ours requires.
WHEN_EMPTY = {"activity": {"type": "note"}, "task": {"title": "(untitled task)"}}


def new_row(page: PageApply, local_id: str, rflat: dict[str, Any]) -> list[Any]:
    """A new local row's values (`store.record_columns` order) from a record's remote values."""
    return store.record_values(page.entity, rflat, [local_id, page.tenant, page.now, page.now, page.cause],
                               WHEN_EMPTY.get(page.entity))


def load_known(page: PageApply, records: list[RemoteRecord]) -> Known:
    """What is stored here of the page's records, one query each: links, their rows, rows an
    unlinked record matches by email/domain, in-flight creates among those, pending conflicts."""
    session, tenant, platform, entity = page.session, page.tenant, page.config.platform, page.entity
    links = {l.external_id: l for l in store.load_links(session, tenant, platform, entity,
                                                        external_ids=[r.external_id for r in records])}
    rows = store.load_rows(session, tenant, entity, [l.local_id for l in links.values()])
    key_field = MATCH_KEYS.get(entity)
    unlinked_keys = [str(r.fields.get(key_field) or "") for r in records
                     if key_field and (r.external_id not in links or links[r.external_id].local_id not in rows)]
    matches = store.match_unlinked(session, tenant, platform, entity, unlinked_keys)
    in_flight = {l.local_id: l for l in store.load_links(session, tenant, platform, entity,
                                                         local_ids=[r.id for r in matches.values()])}
    held = _held_fields(session, page.config, entity, [l.local_id for l in links.values()])
    return Known(links, rows, matches, in_flight, held)


def merge_records(page: PageApply, records: list[RemoteRecord], flats: list[dict[str, Any]], known: Known) -> None:
    """Each record merged three ways against its link's base (`merge_one`); then the page's new
    rows, new links and row updates written, in bulk."""
    session = page.session
    inserts: list[list] = []
    updates: list[dict] = []
    new_links: list[dict] = []
    claimed: set[str] = set()
    preferences: dict[str, str] | None = None   # the config's field rules, read at the page's first conflict

    def prefer() -> dict[str, str]:
        nonlocal preferences
        if preferences is None:
            preferences = field_preferences(session, page.config, page.entity)
        return preferences

    for rec, rflat in zip(records, flats, strict=True):
        merge_one(page, rec, rflat, known, claimed, prefer, inserts, updates, new_links)
    store.insert_many(session, SyncLink.__table__, new_links)
    store.insert_records(session, page.entity, inserts)
    store.update_rows(session, page.entity, updates)


def merge_one(page: PageApply, rec: RemoteRecord, rflat: dict[str, Any], known: Known, claimed: set[str],
              prefer, inserts: list[list], updates: list[dict], new_links: list[dict]) -> None:
    """One record (`rflat`: its remote_flat, this call's to change): matched to its local row (by
    link, else by email/domain), created when none, otherwise merged against the link's base; the
    link's base moves to what both sides now hold."""
    session, config, entity, now, result = page.session, page.config, page.entity, page.now, page.result
    platform = config.platform
    link = known.links.get(rec.external_id)
    row = known.rows.get(link.local_id) if link else None
    if link is not None and link.base.get(DELETED) and row is not None and row.deleted_at is not None:
        result.skipped += 1       # deleted here and archived there; a restore is a new record
        return
    key_field = MATCH_KEYS.get(entity)
    if row is None and key_field:
        key = str(rec.fields.get(key_field) or "").lower()
        candidate = known.matches.get(key) if key else None
        if candidate is not None and candidate.id not in claimed:
            row = candidate
            claimed.add(row.id)
            link = known.in_flight.get(row.id)   # our own create that reached the CRM: adopt its id
            if link is not None:
                link.external_id = rec.external_id
    if row is None:
        local_id = new_id()
        inserts.append(new_row(page, local_id, rflat))
        _put_link(page, link, local_id, rec, rflat, new_links=new_links)
        result.created += 1
        result.changes.append(RecordChange(entity, local_id, "created", CreatedFields(rflat)))
        return

    if row.deleted_at is not None:
        result.skipped += 1       # deleted locally: the push archives it remotely
        return
    lflat = store.row_to_flat(entity, row)
    if link is not None and link.base.get(UNSUPPORTED):
        for f in link.base[UNSUPPORTED]:
            rflat.pop(f, None)
    conflict = known.held.get(row.id)
    base = dict(link.base) if link is not None else None
    res = resolve_conflict(local=lflat, remote=rflat, base=base, strategy=config.conflict_strategy,
                           source_priority=config.source_priority, remote_platform=platform,
                           local_updated_at=row.updated_at, remote_updated_at=rec.updated_at)
    if res.conflicting_fields:
        preferences = prefer()
        if preferences.keys() & set(res.conflicting_fields):
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
        cols.update(id=row.id, tenant_id=page.tenant, updated_at=now, last_change_cause=page.cause)
        updates.append(cols)
        result.updated += 1
        result.changes.append(RecordChange(entity, row.id, "updated",
                                           {f: (lflat.get(f), v) for f, v in changed.items()}))
    # The new base: what the remote holds now, except held fields keep their old base so they
    # keep reading as changed on both sides. Local-winning fields differ from it: the push sends them.
    new_base = dict(base or {})
    new_base.update({f: v for f, v in rflat.items() if f not in held_now})
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
        return
    # Agreed when, outside held fields, the local row now equals what the remote holds;
    # otherwise local-winning values remain and the push step must send them.
    # (A local value the remote left empty counts too: the push fills it, or learns the CRM
    # cannot hold it and marks it unsupported.)
    unsupported = set(new_base.get(UNSUPPORTED, ()))
    agreed = all(res.merged.get(f) == new_base.get(f)
                 for f in set(new_base) | {f for f, v in res.merged.items() if v is not None}
                 if f not in held_now and f not in unsupported and not f.startswith("__"))
    _put_link(page, link, row.id, rec, new_base, agreed=agreed, new_links=new_links)
    if not changed:
        result.skipped += 1


def _put_link(page: PageApply, link: SyncLink | None, local_id: str, rec: RemoteRecord, base: dict, *,
              agreed: bool = True, new_links: list[dict]) -> None:
    # base_at is when both sides last agreed; None makes the row a push candidate at once.
    base_at = page.now if agreed else None
    if link is None:
        config = page.config
        new_links.append({"id": new_id(), "tenant_id": config.tenant_id, "config_id": config.id,
                          "platform": config.platform, "entity_type": page.entity, "local_id": local_id,
                          "external_id": rec.external_id, "base": base, "base_at": base_at,
                          "remote_updated_at": rec.updated_at, "created_at": page.now})
        return
    link.local_id = local_id
    link.base = base
    link.remote_updated_at = rec.updated_at
    link.base_at = base_at


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
    """The subscribed listeners (automation's triggers: contact_created, deal_stage_changed, ...)
    hear of every change."""
    listeners.notify(session, tenant_id, result.changes, cause)

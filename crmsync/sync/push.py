"""Push: local rows changed since their link's base, or never linked, go out in batches.

A row is a candidate when it has no link to this platform, or its `updated_at` is past the
link's `base_at` (when both sides last agreed). Only fields that differ from the base are sent,
so a push never overwrites a remote edit it has not merged. Fields under a pending
manual-review conflict are held back.

Creates are crash-safe: a link with no external id is written and committed before the create
call; if that call's outcome is unknown (a crash, a timeout), the next attempt looks the record
up (`find_existing`) instead of creating it again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, insert, literal, or_, select, text, tuple_
from sqlalchemy.orm import Session, make_transient_to_detached

from crmsync.db import is_postgres
from crmsync.db.models import ENTITY_MODELS, ConflictRecord, SyncConfig, SyncLink, new_id
from crmsync.db.types import utcnow
from crmsync.entities import ASSOCIATIONS, SYNCED_FIELD_SETS
from crmsync.platforms.base import Adapter, OutboundRecord, WriteResult
from crmsync.platforms.errors import Conflict, PlatformError, TransientError
from crmsync.sync import store, values
from crmsync.sync.apply import (
    DELETED,
    MAX_ERRORS,
    UNSUPPORTED,
    ApplyResult,
    apply_remote_records,
    remote_flat,
)
from crmsync.sync.merge import CUSTOM, flatten, unflatten


@dataclass
class PushOutcome:
    result: ApplyResult
    cursor: dict | None          # where the next batch starts; None when done
    requests: int = 0
    errors: list[str] | None = None


def push_candidates(session: Session, config: SyncConfig, entity: str, *, after: dict | None, limit: int):
    table = ENTITY_MODELS[entity].__table__
    link = SyncLink.__table__
    q = (select(table, link.c.id.label("link_id"))
         .select_from(table.outerjoin(link, and_(link.c.local_id == table.c.id, link.c.tenant_id == table.c.tenant_id,
                                                 link.c.platform == config.platform, link.c.entity_type == entity)))
         .where(table.c.tenant_id == config.tenant_id,
                or_(link.c.id.is_(None), link.c.base_at.is_(None), table.c.updated_at > link.c.base_at),
                # Never-linked rows deleted here have nothing to archive there.
                or_(table.c.deleted_at.is_(None), link.c.external_id.is_not(None)))
         .order_by(table.c.updated_at, table.c.id).limit(limit))
    if after:
        q = q.where(tuple_(table.c.updated_at, table.c.id) > tuple_(
            literal(store.to_datetime(after["updated_at"]), table.c.updated_at.type),
            literal(after["id"], table.c.id.type)))
    return list(session.execute(q))


def _held(session, config, entity, ids) -> dict[str, set[str]]:
    rows = session.scalars(select(ConflictRecord).where(
        ConflictRecord.tenant_id == config.tenant_id, ConflictRecord.platform == config.platform,
        ConflictRecord.entity_type == entity, ConflictRecord.status == "pending", ConflictRecord.entity_id.in_(ids)))
    return {c.entity_id: set(c.conflicting_fields) for c in rows}


def _outbound(config: SyncConfig, entity: str, row, fields_flat: dict, ext_by_local: dict,
              link: SyncLink | None) -> OutboundRecord:
    plain = values.to_remote(config, entity,
                             unflatten({f: v for f, v in fields_flat.items() if f not in ASSOCIATIONS[entity]}))
    assoc = {}
    for fname in ASSOCIATIONS[entity]:
        if fname in fields_flat:
            local = fields_flat[fname]
            if local is None:
                assoc[fname] = None
            elif (fname, local) in ext_by_local:
                assoc[fname] = ext_by_local[(fname, local)]
    return OutboundRecord(local_id=row.id, fields=plain, external_id=link.external_id if link else None,
                          associations=assoc)


@dataclass
class BatchPush:
    """One batch on its way out: what every step needs."""
    session: Session
    config: SyncConfig
    adapter: Adapter
    entity: str
    now: datetime
    outcome: PushOutcome
    ext_by_local: dict = field(default_factory=dict)

    def outbound(self, row, fields_flat: dict, link: SyncLink | None) -> OutboundRecord:
        return _outbound(self.config, self.entity, row, fields_flat, self.ext_by_local, link)

    def count_requests(self, sent: int) -> None:
        self.outcome.requests += (sent + self.adapter.max_batch - 1) // self.adapter.max_batch


@dataclass
class Plan:
    """The batch sorted by what each row needs."""
    creates: list = field(default_factory=list)    # (row, link, fields): never created remotely
    updates: list = field(default_factory=list)    # (row, link, fields that differ from the base)
    archives: list = field(default_factory=list)   # (row, link): deleted here, still live there
    pending: set = field(default_factory=set)      # local ids whose create may have reached the CRM
    new_links: list = field(default_factory=list)  # links of first creates, made durable before the calls


def push_batch(session: Session, config: SyncConfig, adapter: Adapter, entity: str, *,
               after: dict | None = None, limit: int = 100, now: datetime | None = None) -> PushOutcome:
    """Push up to `limit` candidate rows, step by step:

    1. `plan_batch`: sort the rows into creates, updates (only fields that differ from the base,
       less those held by a pending conflict) and archives, and add the links of new creates.
    2. `make_creates_durable`: the pending-create links are committed before any create call
       leaves this process, so a crash can never turn into a duplicate remote record.
    3. `find_pending_creates`: a create that may have reached the CRM is looked up first.
    4. `send_creates`, `send_updates`, `send_archives`: one batched call each, then what the CRM
       answered becomes the links' base (and the local row's, where the CRM normalised a value).
    """
    rows = push_candidates(session, config, entity, after=after, limit=limit)
    outcome = PushOutcome(result=ApplyResult(), cursor=None, errors=[])
    if not rows:
        return outcome
    last = rows[-1]
    outcome.cursor = {"updated_at": last.updated_at.isoformat(), "id": last.id} if len(rows) == limit else None
    batch = BatchPush(session, config, adapter, entity, now or utcnow(), outcome,
                      store.external_ids_for(session, config.tenant_id, config.platform, entity, rows))
    plan = plan_batch(batch, rows)
    make_creates_durable(session, plan)
    if plan.pending:
        find_pending_creates(batch, plan)
    if plan.creates:
        send_creates(batch, plan.creates)
    if plan.updates:
        send_updates(batch, plan.updates)
    if plan.archives and config.sync_direction in ("push", "bidirectional"):
        send_archives(batch, plan.archives)
    session.flush()
    return outcome


def plan_batch(batch: BatchPush, rows: list) -> Plan:
    session, config, entity = batch.session, batch.config, batch.entity
    tenant, platform = config.tenant_id, config.platform
    links = {l.local_id: l for l in store.load_links(session, tenant, platform, entity, local_ids=[r.id for r in rows])}
    held = _held(session, config, entity, [r.id for r in rows])
    plan = Plan()
    for row in rows:
        link = links.get(row.id)
        if row.deleted_at is not None:
            if link is not None and link.external_id and not link.base.get(DELETED):
                plan.archives.append((row, link))
            continue
        flat = store.row_to_flat(entity, row)
        if link is None or link.external_id is None:
            if link is None:
                link = SyncLink(id=new_id(), tenant_id=tenant, config_id=config.id, platform=platform,
                                entity_type=entity, local_id=row.id, external_id=None, base={})
                plan.new_links.append(link)
            else:
                plan.pending.add(row.id)
            plan.creates.append((row, link, {f: v for f, v in flat.items() if v is not None}))
            continue
        base = link.base or {}
        skip = held.get(row.id, set()) | set(base.get(UNSUPPORTED, ()))
        diff = {f: v for f, v in flat.items() if f not in skip and base.get(f) != v
                and (f in base or v is not None)}
        if not diff:
            link.base_at = batch.now
            batch.outcome.result.skipped += 1
            continue
        plan.updates.append((row, link, diff))
    return plan


def make_creates_durable(session: Session, plan: Plan) -> None:
    """Commit the links of new creates before any create call leaves this process, so a crash can
    never turn into a duplicate remote record.

    On PostgreSQL they are committed on a connection of their own, and the unit's transaction goes
    on: it holds the step's row lock (`run_step`) until the unit ends. Committing that transaction
    here released the lock mid-unit, so a second copy of the unit (a message sent again) ran beside
    this one, found the links pending, looked the records up before this one's creates were
    searchable, and created them again. SQLite (one process runs a job) commits as before."""
    if not plan.new_links:
        return
    if not is_postgres(session):
        session.add_all(plan.new_links)
        session.commit()
        return
    with session.get_bind().begin() as conn:
        # This unit waits on this connection from Python, where PostgreSQL's deadlock detector cannot
        # see it: a lock this insert waits for (its config's row, held by a `configs delete` that in
        # turn waits for this unit's rows) would hang the unit. Give up instead; the unit is retried.
        conn.execute(text("SET LOCAL lock_timeout = '5s'"))
        conn.execute(insert(SyncLink.__table__), [
            {"id": l.id, "tenant_id": l.tenant_id, "config_id": l.config_id, "platform": l.platform,
             "entity_type": l.entity_type, "local_id": l.local_id, "external_id": None, "base": {}}
            for l in plan.new_links])
    for link in plan.new_links:     # rows that exist now: later changes are UPDATEs
        make_transient_to_detached(link)
        session.add(link)


def find_pending_creates(batch: BatchPush, plan: Plan) -> None:
    """A create for these may have reached the CRM: look before creating again. A record found
    is linked and its fields go out as an update."""
    still = []
    for row, link, fields_flat in plan.creates:
        if row.id in plan.pending:
            found = batch.adapter.find_existing(batch.entity, batch.outbound(row, fields_flat, None))
            batch.outcome.requests += 1
            if found:
                link.external_id = found
                plan.updates.append((row, link, fields_flat))
                continue
        still.append((row, link, fields_flat))
    plan.creates = still


def send_creates(batch: BatchPush, creates: list) -> None:
    session, config, entity, outcome = batch.session, batch.config, batch.entity, batch.outcome
    sent = [batch.outbound(row, f, None) for row, _, f in creates]
    results = _local_values(config, entity, batch.adapter.create_many(entity, sent))
    batch.count_requests(len(sent))
    conflicts = []
    adopted = []
    for (row, link, fields_flat), res in zip(creates, results):
        if res.ok:
            # Created, but an association the CRM refused (its target is gone there) is not
            # agreed: the base leaves it out, so the pull keeps ours and the push tries it again.
            agreed = {f: v for f, v in fields_flat.items() if f not in res.association_errors}
            _agree(link, entity, res, agreed, batch.now, batch.ext_by_local)
            adopted += _adopt_remote_values(entity, row, res, batch.now)
            outcome.result.created += 1
            for name, err in res.association_errors.items():
                _report(outcome, row, f"{name}: {err}")
        elif isinstance(res.error, Conflict) and res.error.existing_id:
            conflicts.append((row, link, res.error.existing_id))
        else:
            _failed(session, outcome, row, link, res)
    store.update_rows(session, entity, adopted)
    if conflicts:
        # The CRM already holds this record (409 duplicate email): link to it and merge
        # as a first match — every differing field is settled by the strategy.
        for _, link, _ in conflicts:
            session.delete(link)
        session.flush()
        existing = batch.adapter.get_many(entity, [c[2] for c in conflicts])
        outcome.requests += 1
        merged = apply_remote_records(session, config, entity, existing, now=batch.now)
        outcome.result.add(merged)
        for message in merged.errors:      # a CRM record our columns cannot hold: the job says which
            if outcome.errors is not None and len(outcome.errors) < MAX_ERRORS:
                outcome.errors.append(message)


def send_updates(batch: BatchPush, updates: list) -> None:
    session, entity, outcome = batch.session, batch.entity, batch.outcome
    sent = [batch.outbound(row, diff, link) for row, link, diff in updates]
    results = _local_values(batch.config, entity, batch.adapter.update_many(entity, sent))
    batch.count_requests(len(sent))
    adopted = []
    for (row, link, diff), res in zip(updates, results):
        if res.ok:
            # An association the CRM refused (its target is gone there) is reported and left
            # out of the agreement: the base keeps the old value, so the row is not pushed
            # again until it changes, and a later edit sends the association once more.
            agreed = {f: v for f, v in diff.items() if f not in res.association_errors}
            _agree(link, entity, res, agreed, batch.now, batch.ext_by_local, merge_into=link.base)
            adopted += _adopt_remote_values(entity, row, res, batch.now, only=agreed)
            outcome.result.updated += 1
            for name, err in res.association_errors.items():
                _report(outcome, row, f"{name}: {err}")
        else:
            _failed(session, outcome, row, link, res)
    store.update_rows(session, entity, adopted)


def send_archives(batch: BatchPush, archives: list) -> None:
    """A record already gone there (404) counts as archived."""
    results = batch.adapter.archive_many(batch.entity, [link.external_id for _, link in archives])
    batch.outcome.requests += 1
    for (row, link), res in zip(archives, results):
        if res.ok or (isinstance(res.error, PlatformError) and res.error.status == 404):
            link.base = {**link.base, DELETED: True}
            link.base_at = batch.now
            batch.outcome.result.deleted += 1
        else:
            _failed(batch.session, batch.outcome, row, link, res)


def _local_values(config: SyncConfig, entity: str, results: list[WriteResult]) -> list[WriteResult]:
    """What the CRM answered, in local values (see crmsync.sync.values)."""
    for res in results:
        if res.record is not None:
            res.record.fields = values.to_local(config, entity, res.record.fields)
    return results


def _agree(link: SyncLink, entity: str, res: WriteResult, sent: dict, now: datetime, ext_by_local,
           merge_into: dict | None = None) -> None:
    """The write succeeded: what we sent is now what both sides hold."""
    base = dict(merge_into or {})
    base.update(dict(sent.items()))
    if res.record is not None:
        # What the CRM kept, in its own normalisation, is the base (after a create, every field
        # it holds; after an update, the fields we sent); associations stay as sent (local ids).
        returned = flatten(res.record.fields, SYNCED_FIELD_SETS[entity])
        for f, v in returned.items():
            if f in ASSOCIATIONS[entity] or (merge_into is not None and f not in sent):
                continue
            if merge_into is None and v is None and f not in sent:
                continue
            base[f] = v
        # A value we sent that the CRM does not give back is a field it cannot hold (a property
        # the portal lacks, a field Pipedrive has no place for): never compare or send it again.
        dropped = {f for f, v in sent.items() if v is not None and f not in ASSOCIATIONS[entity]
                   and returned.get(f) is None}
        if dropped:
            base[UNSUPPORTED] = sorted(set(base.get(UNSUPPORTED, ())) | dropped)
            for f in dropped:
                base.pop(f, None)
        link.remote_updated_at = res.record.updated_at
    link.external_id = res.external_id or link.external_id
    link.base = base
    link.base_at = now


def _adopt_remote_values(entity: str, row, res: WriteResult, now: datetime, only: dict | None = None) -> list[dict]:
    """What the CRM filled in or normalised (a default stage, a stage name turned into its id, a
    lowercased email) is the agreed state: take it locally too, or it would read as an edit on
    one side forever. After an update, only the fields sent count."""
    if res.record is None:
        return []
    local = store.row_to_flat(entity, row)
    returned = {f: v for f, v in flatten(res.record.fields, SYNCED_FIELD_SETS[entity]).items()
                if f not in ASSOCIATIONS[entity] and v is not None and local.get(f) != v
                and (only is None or f in only)}
    if not returned:
        return []
    cols = store.flat_to_columns(entity, returned, row.custom_fields or {})
    cols.update(id=row.id, tenant_id=row.tenant_id, updated_at=now)
    return [cols]


def _failed(session, outcome: PushOutcome, row, link: SyncLink, res: WriteResult) -> None:
    if isinstance(res.error, TransientError):
        raise res.error
    outcome.result.failed += 1
    if link.external_id is None:
        session.delete(link)
    _report(outcome, row, str(res.error))


def _report(outcome: PushOutcome, row, message: str) -> None:
    if outcome.errors is not None and len(outcome.errors) < MAX_ERRORS:
        outcome.errors.append(f"{row.id}: {message}")


__all__ = ["CUSTOM", "PushOutcome", "push_batch", "push_candidates", "remote_flat"]

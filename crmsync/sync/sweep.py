"""The deletion sweep: what an incremental sync cannot see, found on its own cadence.

An incremental sync reads only what changed (HubSpot search, Pipedrive `updated_since`), and
neither shows a record that was archived or deleted: deletions arrive by webhook (HubSpot
`*.deletion`, Pipedrive `deleted.*`), and this sweep finds the ones a webhook missed. Per entity
it lists every live record's id and modification time (the smallest answer the CRM gives: about
records/100 requests on HubSpot, records/500 on Pipedrive), a unit of `CRMSYNC_PAGE_SIZE` ids at a
time, keeping them in `crm_sweep_ids`. After the last page it compares the listing with the sync
links in SQL and counts the drift:

* local_only: local records whose CRM record is no longer listed (marked deleted, through the
  mass-delete guard, when the config pulls), and live local records never linked to this CRM;
* remote_only: CRM records with no local record (pulled, when the config pulls);
* diverged: records whose synced fields differ from the link's base with no change pending: a
  CRM record modified after the link's last sync yet before the checkpoint (an incremental
  missed it; re-read and merged), or a local row that differs from the base while its link says
  both sides agree (marked for the next push).

The figures go into the job's counts (`counts["drift"][entity]`); `crmsync sync drift CONFIG`
prints the last sweep's. A sweep runs as a job of its own (trigger "sweep", one step per entity),
dispatched by beat when `next_sweep_at` comes (every `sweep_every_hours`, default 24), or now with
`crmsync sync run CONFIG --sweep`.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.orm import Session

from crmsync.db.models import (
    ENTITY_MODELS,
    ConflictRecord,
    SweepId,
    SyncCheckpoint,
    SyncConfig,
    SyncJob,
    SyncJobStep,
    SyncLink,
)
from crmsync.platforms.base import moved_on
from crmsync.sync import store
from crmsync.sync.apply import (
    UNSUPPORTED,
    ApplyResult,
    apply_remote_deletions,
    apply_remote_records,
    remote_flat,
)
from crmsync.sync.jobs import add_errors

# CRM records a sweep re-reads per entity to repair (remote-only and diverged); more wait for the
# next sweep (or `sync run --full`). 1,000 is 10 HubSpot batch reads.
REPAIR_LIMIT = 1000
EXAMPLES = 10
# A CRM's list and record timestamps of one change may differ by a few milliseconds.
CLOCK_SLACK = timedelta(seconds=1)
DRIFT_KEYS = ("remote_only", "local_only", "diverged", "repaired")


def sweep_unit(session: Session, config: SyncConfig, adapter, job: SyncJob, step: SyncJobStep,
               now: datetime) -> tuple[bool, ApplyResult]:
    """One unit of an entity's sweep: up to a page size of ids listed and kept; after the last
    page, the comparison. Returns (more units to come, what was applied)."""
    from crmsync.settings import get_settings
    entity = step.entity_type
    state = dict(step.cursor or {})
    if step.pages == 0:
        adapter.refresh_metadata(entity)      # field definitions are cached between sweeps
        # What an earlier sweep of this config left (it failed before its comparison).
        earlier = select(SyncJob.id).where(SyncJob.sync_config_id == config.id, SyncJob.id != job.id)
        session.execute(delete(SweepId).where(SweepId.tenant_id == config.tenant_id, SweepId.job_id.in_(earlier)))
    cursor = state.get("adapter")
    listed: list[tuple[str, datetime | None]] = []
    spent = 0
    want = get_settings().page_size
    read: set[str] = set()
    while True:
        page = adapter.list_ids(entity, cursor)
        listed += page.ids
        spent += page.requests
        # A CRM answering a cursor of this unit again (the one it was asked with, or an earlier
        # one: A -> B -> A) would keep the sweep listing the same pages.
        cursor = moved_on(cursor, page.cursor, platform=adapter.platform, entity=entity, seen=read)
        if cursor is None or len(listed) >= want:
            break
    store.insert_many(session, SweepId.__table__, [
        {"job_id": job.id, "entity_type": entity, "external_id": ext, "tenant_id": config.tenant_id,
         "remote_updated_at": updated} for ext, updated in dict(listed).items()])
    state["requests"] = state.get("requests", 0) + spent
    state["listed"] = state.get("listed", 0) + len(listed)
    if cursor is not None:
        state["adapter"] = cursor
        step.cursor = state
        return True, ApplyResult()
    step.cursor = {"listed": state["listed"], "requests": state["requests"]}
    result, drift = reconcile(session, config, adapter, job, entity, now)
    drift["listed"], drift["requests"] = state["listed"], state["requests"] + drift.pop("repair_requests", 0)
    job.counts = {**(job.counts or {}), "drift": {**(job.counts or {}).get("drift", {}), entity: drift}}
    add_errors(job, result.errors)    # repaired records our columns cannot hold
    session.execute(delete(SweepId).where(SweepId.job_id == job.id, SweepId.entity_type == entity))
    return False, result


def reconcile(session: Session, config: SyncConfig, adapter, job: SyncJob, entity: str, now: datetime
              ) -> tuple[ApplyResult, dict[str, Any]]:
    """Compare the sweep's listing (crm_sweep_ids) with the links; repair what a normal sync would
    have done when the config pulls (deletions, missing records, missed changes) and mark locally
    diverged rows for the push. Returns what was applied and the drift figures."""
    tenant, platform = config.tenant_id, config.platform
    pulls = config.sync_direction in ("pull", "bidirectional")
    pushes = config.sync_direction in ("push", "bidirectional")
    table = ENTITY_MODELS[entity].__table__
    link, seen = SyncLink.__table__, SweepId.__table__
    listed = and_(seen.c.job_id == job.id, seen.c.entity_type == entity)
    our_links = and_(link.c.tenant_id == tenant, link.c.platform == platform, link.c.entity_type == entity)
    live_row = and_(table.c.id == link.c.local_id, table.c.tenant_id == link.c.tenant_id, table.c.deleted_at.is_(None))
    result = ApplyResult()
    drift: dict[str, Any] = dict.fromkeys(DRIFT_KEYS, 0)
    examples: list[dict] = []
    spent = 0

    def example(kind: str, **what: Any) -> None:
        if len(examples) < EXAMPLES:
            examples.append({"kind": kind, **what})

    # Local records whose CRM record is gone. Links made after the sweep began may point at records
    # created after the listing passed their place: they are left for the next sweep.
    gone = session.execute(
        select(link.c.external_id, link.c.local_id).select_from(link.join(table, live_row))
        .where(our_links, link.c.external_id.is_not(None), link.c.created_at < job.started_at,
               ~exists().where(listed, seen.c.external_id == link.c.external_id))
        .order_by(link.c.external_id)).all()
    unlinked_rows = select(table.c.id).where(
        table.c.tenant_id == tenant, table.c.deleted_at.is_(None),
        ~exists().where(our_links, link.c.local_id == table.c.id))
    unlinked = session.scalar(select(func.count()).select_from(unlinked_rows.subquery())) or 0
    drift["local_only"] = len(gone) + unlinked
    for ext, local_id in gone[:EXAMPLES]:
        example("local_only", external_id=ext, local_id=local_id)
    for local_id in session.scalars(unlinked_rows.order_by(table.c.id).limit(EXAMPLES)):
        example("local_only", external_id=None, local_id=local_id)
    if gone and pulls:
        # The guard refuses (DeleteGuardTripped) a share larger than CRMSYNC_MAX_DELETE_SHARE.
        deleted = apply_remote_deletions(session, config, entity, [ext for ext, _ in gone], now=now)
        result.add(deleted)
        drift["repaired"] += deleted.deleted

    # CRM records with no live local record (a deleted local one is the push's to archive).
    remote_only = list(session.scalars(
        select(seen.c.external_id).where(listed, ~exists().where(our_links, link.c.external_id == seen.c.external_id))
        .order_by(seen.c.external_id)))
    drift["remote_only"] = len(remote_only)
    for ext in remote_only[:EXAMPLES]:
        example("remote_only", external_id=ext, local_id=None)

    # CRM records modified after the link's last sync but before the checkpoint: an incremental
    # listing should have brought them and did not. Re-read, compare with the base.
    synced_until = session.scalar(select(SyncCheckpoint.synced_until).where(
        SyncCheckpoint.config_id == config.id, SyncCheckpoint.entity_type == entity))
    missed: list[str] = []
    if synced_until is not None:
        rows = session.execute(
            select(seen.c.external_id, seen.c.remote_updated_at, link.c.remote_updated_at)
            .select_from(seen.join(link, and_(our_links, link.c.external_id == seen.c.external_id)).join(table, live_row))
            .where(listed, seen.c.remote_updated_at > link.c.remote_updated_at,
                   seen.c.remote_updated_at < synced_until)
            .order_by(seen.c.external_id)).all()
        missed = [ext for ext, listed_at, linked_at in rows if listed_at - linked_at > CLOCK_SLACK]
    fetch = (remote_only + missed)[:REPAIR_LIMIT] if pulls else missed[:REPAIR_LIMIT]
    fetched = {}
    if fetch:
        before = adapter.requests_sent()
        fetched = {r.external_id: r for r in adapter.get_many(entity, fetch)}
        spent += adapter.requests_sent() - before
    diverged_remote = _differs_from_base(session, config, entity, [fetched[e] for e in missed if e in fetched])
    for ext in diverged_remote[:EXAMPLES]:
        example("diverged", side="remote", external_id=ext)
    repair = [fetched[e] for e in remote_only if e in fetched] + [fetched[e] for e in diverged_remote]
    if repair and pulls:
        applied = apply_remote_records(session, config, entity, repair, now=now)
        result.add(applied)
        drift["repaired"] += len(repair)

    # Local rows that differ from the base while the link says both sides agree (no push pending):
    # a change made without going through crmsync. The push sends them once their link says so.
    diverged_local = _local_divergence(session, config, entity)
    for local_id in diverged_local[:EXAMPLES]:
        example("diverged", side="local", local_id=local_id)
    if diverged_local and pushes:
        for chunk in _chunks(diverged_local, 1000):
            session.execute(update(link).where(our_links, link.c.local_id.in_(chunk)).values(base_at=None))
        drift["repaired"] += len(diverged_local)
    drift["diverged"] = len(diverged_remote) + len(diverged_local)
    drift["examples"] = examples
    drift["repair_requests"] = spent
    return result, drift


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _comparable(fields: dict, base: dict) -> set[str]:
    unsupported = set(base.get(UNSUPPORTED, ()))
    return {f for f in set(base) | {f for f, v in fields.items() if v is not None}
            if not f.startswith("__") and f not in unsupported}


def _differs_from_base(session: Session, config: SyncConfig, entity: str, records: list) -> list[str]:
    """External ids of these CRM records whose synced fields differ from their link's base."""
    if not records:
        return []
    links = {l.external_id: l for l in store.load_links(session, config.tenant_id, config.platform, entity,
                                                        external_ids=[r.external_id for r in records])}
    resolved = store.resolve_associations(session, config.tenant_id, config.platform, entity,
                                          [r.associations for r in records])
    out = []
    for rec in records:
        link = links.get(rec.external_id)
        if link is None:
            continue
        base = link.base or {}
        rflat = remote_flat(entity, rec, resolved)
        if any(rflat[f] != base.get(f) for f in _comparable(rflat, base) if f in rflat):
            out.append(rec.external_id)
    return out


def _local_divergence(session: Session, config: SyncConfig, entity: str, chunk: int = 5000) -> list[str]:
    """Local ids of live linked rows that differ from their link's base while the link says both
    sides agree and no conflict holds them (held fields keep their old base on purpose)."""
    table = ENTITY_MODELS[entity].__table__
    link = SyncLink.__table__
    held = select(ConflictRecord.entity_id).where(
        ConflictRecord.tenant_id == config.tenant_id, ConflictRecord.platform == config.platform,
        ConflictRecord.entity_type == entity, ConflictRecord.status == "pending")
    query = (select(table, link.c.base)
             .select_from(table.join(link, and_(link.c.local_id == table.c.id, link.c.tenant_id == table.c.tenant_id)))
             .where(table.c.tenant_id == config.tenant_id, table.c.deleted_at.is_(None),
                    link.c.platform == config.platform, link.c.entity_type == entity,
                    link.c.external_id.is_not(None), link.c.base_at.is_not(None),
                    table.c.updated_at <= link.c.base_at, table.c.id.not_in(held))
             .order_by(table.c.id))
    out = []
    after = None
    while True:
        page = query if after is None else query.where(table.c.id > after)
        rows = session.execute(page.limit(chunk)).all()
        for row in rows:
            base = row.base or {}
            lflat = store.row_to_flat(entity, row)
            if any(lflat.get(f) != base.get(f) for f in _comparable(lflat, base)):
                out.append(row.id)
        if len(rows) < chunk:
            return out
        after = rows[-1].id


def drift_report(session: Session, config: SyncConfig) -> dict[str, Any]:
    """The last finished sweep's figures per entity, keyed by the entity's plural as the CLI names
    them ({"contacts": {"remote_only", "local_only", "diverged", "repaired", "examples", "listed",
    "requests", "sweep_job_id", "swept_at"}, ...}); {} before the first sweep."""
    job = session.scalar(select(SyncJob).where(SyncJob.sync_config_id == config.id, SyncJob.trigger == "sweep",
                                               SyncJob.status.in_(("succeeded", "failed")))
                         .order_by(SyncJob.created_at.desc()).limit(1))
    if job is None:
        return {}
    return drift_by_entity(job)


def drift_by_entity(job: SyncJob) -> dict[str, Any]:
    """A sweep job's figures, keyed by the entities' plurals, each with the job it came from."""
    from crmsync.entities import ENTITY_PLURALS
    drift = (job.counts or {}).get("drift") or {}
    return {ENTITY_PLURALS[entity]: {**figures, "sweep_job_id": job.id, "swept_at": job.finished_at,
                                     "sweep_status": job.status}
            for entity, figures in drift.items()}

"""What the console's pages read. Every query takes the viewer's tenant (None for an operator)
and filters on it: a tenant's user cannot name another tenant's row into a page.

The conflict queue pages by key — (created_at, id) of the last row shown — on the partial
indexes over pending conflicts (migration 0005), so the 2,000th page costs what the first does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from crmsync.configs import ConfigError, parse_id
from crmsync.db.models import (
    ConflictRecord,
    ConflictResolution,
    SyncConfig,
    SyncJob,
    Tenant,
    WebhookDelivery,
    WebhookEvent,
)
from crmsync.db.types import utcnow
from crmsync.entities import ENTITY_TYPES, SYNCED_FIELDS
from crmsync.sync.merge import CUSTOM, STRATEGIES

PAGE_SIZE = 50
AGES = {"lt1h": ("newer", timedelta(hours=1)), "lt1d": ("newer", timedelta(days=1)),
        "gt1d": ("older", timedelta(days=1)), "gt7d": ("older", timedelta(days=7))}
AGE_LABELS = {"": "any age", "lt1h": "under an hour", "lt1d": "under a day", "gt1d": "over a day",
              "gt7d": "over a week"}
# HubSpot internal names are lower case; Salesforce API names are not (Industry, Tier__c).
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_]{1,100}$")


class BadFilter(ValueError):
    """A filter or page key the queue cannot use (the page says which)."""


@dataclass
class QueueFilters:
    tenant_id: str | None = None
    config_id: str | None = None
    entity: str | None = None
    field: str | None = None
    strategy: str | None = None
    age: str | None = None

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in (("tenant", self.tenant_id), ("config", self.config_id), ("entity", self.entity),
                                  ("field", self.field), ("strategy", self.strategy), ("age", self.age)) if v}


def parse_filters(args) -> QueueFilters:
    def one(name: str) -> str | None:
        value = (args.get(name) or "").strip()
        return value or None
    filters = QueueFilters(entity=one("entity"), field=one("field"), strategy=one("strategy"), age=one("age"))
    try:
        filters.tenant_id = parse_id(one("tenant"), "tenant") if one("tenant") else None
        filters.config_id = parse_id(one("config"), "config") if one("config") else None
    except ConfigError as err:
        raise BadFilter(str(err)) from None
    if filters.entity and filters.entity not in ENTITY_TYPES:
        raise BadFilter(f"entity: one of {', '.join(ENTITY_TYPES)}, not {filters.entity!r}")
    if filters.field and not _FIELD_NAME.match(filters.field.removeprefix(CUSTOM)):
        raise BadFilter(f"field: not a field name: {filters.field!r}")
    if filters.strategy and filters.strategy not in STRATEGIES:
        raise BadFilter(f"strategy: one of {', '.join(STRATEGIES)}, not {filters.strategy!r}")
    if filters.age and filters.age not in AGES:
        raise BadFilter(f"age: one of {', '.join(AGES)}, not {filters.age!r}")
    return filters


def parse_page_key(value: str | None) -> tuple[datetime, str] | None:
    """The `after` key of a queue page: '<created_at ISO>~<id>'."""
    if not value:
        return None
    stamp, sep, conflict_id = value.partition("~")
    try:
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or not sep:
            raise ValueError
        return when, parse_id(conflict_id, "conflict")
    except (ValueError, ConfigError):
        raise BadFilter(f"not a page key: {value!r}") from None


def page_key(conflict_created_at: datetime, conflict_id: str) -> str:
    return f"{conflict_created_at.isoformat()}~{conflict_id}"


def _pending(session: Session, query: Select, scope: str | None, filters: QueueFilters) -> Select:
    c = ConflictRecord
    query = query.where(c.status == "pending")
    for column, value in ((c.tenant_id, scope), (c.tenant_id, filters.tenant_id), (c.config_id, filters.config_id),
                          (c.entity_type, filters.entity)):
        if value is not None:
            query = query.where(column == value)
    if filters.field:
        if session.get_bind().dialect.name == "postgresql":
            query = query.where(cast(c.conflicting_fields, JSONB).contains([filters.field]))
        else:
            query = query.where(cast(c.conflicting_fields, Text).like(f'%"{filters.field}"%'))
    if filters.strategy:
        query = query.where(c.config_id.in_(select(SyncConfig.id).where(
            SyncConfig.conflict_strategy == filters.strategy)))
    if filters.age:
        direction, span = AGES[filters.age]
        threshold = utcnow() - span
        query = query.where(c.created_at >= threshold if direction == "newer" else c.created_at < threshold)
    return query


@dataclass
class QueueRow:
    id: str
    tenant: str
    platform: str | None
    config_id: str | None
    entity_type: str
    entity_id: str
    fields: list[str]
    ours: dict[str, Any]
    theirs: dict[str, Any]
    created_at: datetime


@dataclass
class QueuePage:
    rows: list[QueueRow]
    next_key: str | None
    total: int
    by_entity: dict[str, int] = field(default_factory=dict)
    oldest: datetime | None = None


def queue_page(session: Session, scope: str | None, filters: QueueFilters,
               after: tuple[datetime, str] | None = None, limit: int = PAGE_SIZE) -> QueuePage:
    c = ConflictRecord
    query = _pending(session, select(c.id, c.tenant_id, c.platform, c.config_id, c.entity_type, c.entity_id,
                                     c.conflicting_fields, c.local_snapshot, c.remote_snapshot, c.created_at,
                                     Tenant.name).join(Tenant, Tenant.id == c.tenant_id), scope, filters)
    if after is not None:
        query = query.where(tuple_(c.created_at, c.id) < tuple_(literal(after[0], c.created_at.type),
                                                                literal(after[1], c.id.type)))
    rows = session.execute(query.order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = [QueueRow(r.id, r.name, r.platform, r.config_id, r.entity_type, r.entity_id, list(r.conflicting_fields),
                    {f: r.local_snapshot.get(f) for f in r.conflicting_fields},
                    {f: r.remote_snapshot.get(f) for f in r.conflicting_fields}, r.created_at) for r in rows]
    by_entity = dict(session.execute(_pending(session, select(c.entity_type, func.count()), scope, filters)
                                     .group_by(c.entity_type)).all())
    oldest = session.scalar(_pending(session, select(func.min(c.created_at)), scope, filters))
    return QueuePage(out, page_key(rows[-1].created_at, rows[-1].id) if more else None,
                     sum(by_entity.values()), dict(sorted(by_entity.items())), oldest)


def visible_tenants(session: Session, scope: str | None) -> list[Tenant]:
    query = select(Tenant).order_by(Tenant.name)
    if scope is not None:
        query = query.where(Tenant.id == scope)
    return list(session.scalars(query))


def visible_configs(session: Session, scope: str | None) -> list[tuple[SyncConfig, str]]:
    query = select(SyncConfig, Tenant.name).join(Tenant, Tenant.id == SyncConfig.tenant_id).order_by(
        Tenant.name, SyncConfig.platform, SyncConfig.created_at)
    if scope is not None:
        query = query.where(SyncConfig.tenant_id == scope)
    return [(cfg, name) for cfg, name in session.execute(query).all()]


def field_choices() -> list[str]:
    return sorted({f for fields in SYNCED_FIELDS.values() for f in fields})


def audit_rows(session: Session, scope: str | None, *, entity: tuple[str, str] | None = None,
               limit: int = 100) -> list[ConflictResolution]:
    query = select(ConflictResolution).order_by(ConflictResolution.resolved_at.desc()).limit(limit)
    if scope is not None:
        query = query.where(ConflictResolution.tenant_id == scope)
    if entity is not None:
        query = query.where(ConflictResolution.entity_type == entity[0], ConflictResolution.entity_id == entity[1])
    return list(session.scalars(query))


# --- sync health ------------------------------------------------------------------------------
@dataclass
class ConfigHealth:
    config: SyncConfig
    tenant: str
    jobs: list[dict]
    deliveries_waiting: int
    deliveries_failed: int
    events_waiting: int
    events_failed: int
    conflicts_pending: int
    budget: dict[str, int] | None
    budget_problem: str | None = None


def job_totals(job: SyncJob) -> dict[str, Any]:
    """A run's records created/updated/deleted/conflicted over every entity, requests and errors."""
    totals = dict.fromkeys(("created", "updated", "deleted", "conflicts", "failed"), 0)
    for value in (job.counts or {}).values():
        if isinstance(value, dict):
            for name in totals:
                totals[name] += int(value.get(name, 0) or 0)
    errors = [str(e.get("error") if isinstance(e, dict) else e) for e in (job.counts or {}).get("errors", [])]
    if job.error:
        errors.insert(0, job.error)
    duration = ((job.finished_at or utcnow()) - job.started_at).total_seconds() if job.started_at else None
    return {"job": job, **totals, "requests": (job.counts or {}).get("requests"), "errors": errors,
            "duration": duration}


def config_health(session: Session, scope: str | None, *, jobs_per_config: int = 5,
                  budget_of=None) -> list[ConfigHealth]:
    out = []
    for config, tenant in visible_configs(session, scope):
        jobs = session.scalars(select(SyncJob).where(SyncJob.tenant_id == config.tenant_id,
                                                     SyncJob.sync_config_id == config.id)
                               .order_by(SyncJob.created_at.desc()).limit(jobs_per_config)).all()
        d_wait, d_failed = session.execute(
            select(func.count(), func.count(WebhookDelivery.error)).where(
                WebhookDelivery.tenant_id == config.tenant_id, WebhookDelivery.config_id == config.id)).one()
        e_wait, e_failed = session.execute(
            select(func.count().filter(WebhookEvent.processed.is_(False)),
                   func.count().filter(WebhookEvent.outcome == "failed")).where(
                WebhookEvent.tenant_id == config.tenant_id, WebhookEvent.config_id == config.id)).one()
        pending = session.scalar(select(func.count()).select_from(ConflictRecord).where(
            ConflictRecord.tenant_id == config.tenant_id, ConflictRecord.config_id == config.id,
            ConflictRecord.status == "pending"))
        budget, problem = None, None
        if budget_of is not None:
            try:
                budget = budget_of(session, config)
            except Exception as err:  # noqa: BLE001 — the page says why the budget is unknown, and goes on
                problem = f"{type(err).__name__}: {str(err)[:200]}"
        out.append(ConfigHealth(config, tenant, [job_totals(j) for j in jobs], d_wait - d_failed, d_failed,
                                e_wait, e_failed, pending or 0, budget, problem))
    return out


def short(value: Any, width: int = 60) -> str:
    """A value as the queue shows it in one cell."""
    if value is None:
        return "—"
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


"""The data model: the original design's tables (`crm_*`) plus what the design needs beyond them —
tenants, sync links with their base snapshot, checkpoints, job steps, the credential vault,
API keys and automation runs.

Every row that holds CRM data carries `tenant_id`; every query filters on it
(`crmsync.db.scoped`). Ids are UUID strings.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, foreign, mapped_column, relationship
from sqlalchemy.types import Uuid

from crmsync.db.types import Json, JsonDocument, UTCDateTime, utcnow


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict] = {dict[str, Any]: Json, list[Any]: Json, datetime: UTCDateTime()}


def _id() -> Mapped[str]:
    return mapped_column(Uuid(as_uuid=False), primary_key=True, default=new_id)


# References that PostgreSQL checks once per statement, by triggers (migration 0010), instead of
# once per row by a FOREIGN KEY: the tenant of a synced record and the config of a sync link. A
# backfill inserts thousands of each per unit, and the per-row checks were a third of PostgreSQL's
# work on them. The triggers keep what the keys promised: the row's key must exist (and is locked
# against deletion until commit, as a key check locks it), deleting the referenced row deletes
# these rows, and changing its key is refused. SQLite keeps the FOREIGN KEYs.
PER_STATEMENT = "checked_per_statement"


def checked_per_statement(constraint) -> bool:
    """Whether a ForeignKeyConstraint of these models is one of the references above."""
    return bool(constraint.info.get(PER_STATEMENT)) or any(fk.info.get(PER_STATEMENT) for fk in constraint.elements)


def _tenant(*, per_statement: bool = False) -> Mapped[str]:
    """The row's tenant; `per_statement`: checked by triggers on PostgreSQL (PER_STATEMENT above)."""
    info = {PER_STATEMENT: True} if per_statement else {}
    return mapped_column(Uuid(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE", info=info), nullable=False)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow, nullable=False)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = _created()


class VaultSecret(Base):
    """An encrypted secret (API token, OAuth token set, webhook secret). Only ciphertext is stored;
    `crmsync.credentials` encrypts and decrypts with CRMSYNC_SECRET_KEY.

    `tenant_id` is the one tenant whose configs may use the entry: set when it is stored with a
    tenant, or by the first config that uses it; never changed afterwards."""
    __tablename__ = "crm_credentials_vault"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str | None] = mapped_column(
        Uuid(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE", name="fk_crm_credentials_vault_tenant"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    platform: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """A tenant's key for `POST /events/<type>`; only its SHA-256 is kept."""
    __tablename__ = "crm_api_keys"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None]


ONE_ENABLED_PER_CRM = "uq_crm_sync_configs_tenant_platform_enabled"


class SyncConfig(Base):
    """The original design's `crm_sync_configs`: one CRM account of one tenant and how to sync it."""
    __tablename__ = "crm_sync_configs"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    platform: Mapped[str] = mapped_column(String(32))
    sync_direction: Mapped[str] = mapped_column(String(16), default="bidirectional")
    sync_frequency_minutes: Mapped[int] = mapped_column(Integer, default=60)
    conflict_strategy: Mapped[str] = mapped_column(String(32), default="timestamp_based")
    source_priority: Mapped[list[Any]] = mapped_column(default=lambda: ["hubspot", "local"])
    sync_contacts: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_companies: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_deals: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_activities: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_tasks: Mapped[bool] = mapped_column(Boolean, default=True)
    credentials_vault_id: Mapped[str] = mapped_column(
        Uuid(as_uuid=False), ForeignKey("crm_credentials_vault.id", ondelete="RESTRICT"))
    webhook_secret_vault_id: Mapped[str | None] = mapped_column(
        Uuid(as_uuid=False), ForeignKey("crm_credentials_vault.id", ondelete="SET NULL"))
    # Accept HubSpot's v1/v2 webhook signatures (no timestamp, so replayable) for an app that cannot
    # sign with v3; off by default.
    webhook_legacy_signatures: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    field_mappings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {"deal.stage": {"<local value>": "<this CRM's value>"}}: names that differ between CRMs
    # (deal stages, pipelines, activity types) translated at this config's boundary.
    value_mappings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    account_id: Mapped[str | None] = mapped_column(String(64))
    api_base_url: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_sync_at: Mapped[datetime | None]
    last_sync_at: Mapped[datetime | None]
    # The deletion sweep (ids listed, compared with the links, drift counted) runs on its own
    # cadence: every this many hours (0 = never on schedule), next at next_sweep_at.
    sweep_every_hours: Mapped[int] = mapped_column(Integer, default=24, server_default=text("24"))
    next_sweep_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # Webhooks are routed by (platform, account): one tenant per CRM account.
        UniqueConstraint("platform", "account_id", name="uq_crm_sync_configs_platform_account"),
        Index("ix_crm_sync_configs_due", "enabled", "next_sync_at"),
        # Also the tenant's configs index, and what a link's (tenant, config) key points at.
        UniqueConstraint("tenant_id", "id", name="uq_crm_sync_configs_tenant_id"),
        # A tenant syncs one account per CRM (sync links are keyed by tenant and platform): at most
        # one enabled config per (tenant, platform). Disabled ones may remain: a pair made before
        # `configs create` refused it is resolved by disabling one (`crmsync doctor`).
        Index(ONE_ENABLED_PER_CRM, "tenant_id", "platform", unique=True,
              postgresql_where=text("enabled"), sqlite_where=text("enabled")),
    )

    def entity_enabled(self, entity: str) -> bool:
        from crmsync.entities import ENTITY_PLURALS
        return bool(getattr(self, f"sync_{ENTITY_PLURALS[entity]}"))


class _Record:
    """Columns every synced entity table shares."""
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant(per_statement=True)
    owner_id: Mapped[str | None] = mapped_column(String(64))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Why the row last changed, e.g. "sync:hubspot", "rule:<id>:event:<id>:depth:1" (loop guard).
    last_change_cause: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


def _fk(table: str) -> Mapped[str | None]:
    return mapped_column(Uuid(as_uuid=False), ForeignKey(f"{table}.id", ondelete="SET NULL"))


def _links(entity: str, cls_name: str):
    return relationship(
        "SyncLink", viewonly=True, lazy="select",
        primaryjoin=lambda: and_(foreign(SyncLink.local_id) == globals()[cls_name].id,
                                 SyncLink.entity_type == entity))


class _WithExternalIds:
    @property
    def external_ids(self) -> list[dict]:
        """The original design's `external_ids` array, as a view of the sync links."""
        return [{"platform": link.platform, "external_id": link.external_id,
                 "last_synced_at": link.base_at.isoformat() if link.base_at else None}
                for link in self.links]


class Company(_Record, _WithExternalIds, Base):
    __tablename__ = "crm_companies"
    name: Mapped[str | None] = mapped_column(String(500))
    domain: Mapped[str | None] = mapped_column(String(255))
    industry: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(100))
    website: Mapped[str | None] = mapped_column(String(500))
    city: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(200))
    employee_count: Mapped[int | None] = mapped_column(Integer)
    annual_revenue: Mapped[float | None] = mapped_column(Float)
    description: Mapped[str | None] = mapped_column(Text)
    links = _links("company", "Company")
    # Matching an unlinked CRM record by domain compares case-insensitively.
    __table_args__ = (Index("ix_crm_companies_tenant_domain", "tenant_id", text("lower(domain)")),
                      Index("ix_crm_companies_tenant_updated", "tenant_id", "updated_at"))


class Contact(_Record, _WithExternalIds, Base):
    __tablename__ = "crm_contacts"
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(100))
    job_title: Mapped[str | None] = mapped_column(String(200))
    company_name: Mapped[str | None] = mapped_column(String(500))
    lifecycle_stage: Mapped[str | None] = mapped_column(String(64))
    lead_status: Mapped[str | None] = mapped_column(String(64))
    lead_source: Mapped[str | None] = mapped_column(String(128))
    lead_score: Mapped[float | None] = mapped_column(Float)
    tags: Mapped[list[Any] | None] = mapped_column()
    notes: Mapped[str | None] = mapped_column(Text)
    city: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(200))
    company_id: Mapped[str | None] = _fk("crm_companies")
    links = _links("contact", "Contact")
    # Matching an unlinked CRM record by email compares case-insensitively.
    __table_args__ = (Index("ix_crm_contacts_tenant_email", "tenant_id", text("lower(email)")),
                      Index("ix_crm_contacts_tenant_updated", "tenant_id", "updated_at"))


class Deal(_Record, _WithExternalIds, Base):
    __tablename__ = "crm_deals"
    name: Mapped[str | None] = mapped_column(String(500))
    amount: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(8))
    stage: Mapped[str | None] = mapped_column(String(128))
    pipeline: Mapped[str | None] = mapped_column(String(128))
    probability: Mapped[float | None] = mapped_column(Float)
    close_date: Mapped[datetime | None]
    status: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    company_id: Mapped[str | None] = _fk("crm_companies")
    contact_id: Mapped[str | None] = _fk("crm_contacts")
    links = _links("deal", "Deal")
    __table_args__ = (Index("ix_crm_deals_tenant_updated", "tenant_id", "updated_at"),)


class Activity(_Record, _WithExternalIds, Base):
    __tablename__ = "crm_activities"
    type: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime | None]
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    direction: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(64))
    contact_id: Mapped[str | None] = _fk("crm_contacts")
    company_id: Mapped[str | None] = _fk("crm_companies")
    deal_id: Mapped[str | None] = _fk("crm_deals")
    links = _links("activity", "Activity")
    __table_args__ = (Index("ix_crm_activities_tenant_updated", "tenant_id", "updated_at"),)


class Task(_Record, _WithExternalIds, Base):
    __tablename__ = "crm_tasks"
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str | None] = mapped_column(Text)
    due_date: Mapped[datetime | None]
    status: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[str | None] = mapped_column(String(16))
    task_type: Mapped[str | None] = mapped_column(String(32))
    contact_id: Mapped[str | None] = _fk("crm_contacts")
    company_id: Mapped[str | None] = _fk("crm_companies")
    deal_id: Mapped[str | None] = _fk("crm_deals")
    links = _links("task", "Task")
    __table_args__ = (Index("ix_crm_tasks_tenant_updated", "tenant_id", "updated_at"),)


ENTITY_MODELS: dict[str, type[_Record]] = {
    "contact": Contact, "company": Company, "deal": Deal, "activity": Activity, "task": Task,
}


class SyncLink(Base):
    """A local record ⇄ its id in one CRM, with the *base*: the field values both sides last
    agreed on, and when. The three-way merge compares local and remote against it."""
    __tablename__ = "crm_sync_links"
    id: Mapped[str] = _id()
    # One foreign key for both: the config exists and belongs to this tenant. A sync writes a
    # link per record, and each key checked is work PostgreSQL does per row.
    tenant_id: Mapped[str] = mapped_column(Uuid(as_uuid=False), nullable=False)
    config_id: Mapped[str] = mapped_column(Uuid(as_uuid=False))
    platform: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str] = mapped_column(String(16))
    local_id: Mapped[str] = mapped_column(Uuid(as_uuid=False))
    # NULL while a create is in flight: a retry looks the record up before creating it again.
    external_id: Mapped[str | None] = mapped_column(String(64))
    # Read and written whole by the merge, never queried inside: `json`, not `jsonb` (see JsonDocument).
    base: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    base_at: Mapped[datetime | None]
    remote_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("tenant_id", "platform", "entity_type", "external_id", name="uq_crm_sync_links_external"),
        UniqueConstraint("tenant_id", "platform", "entity_type", "local_id", name="uq_crm_sync_links_local"),
        ForeignKeyConstraint(["tenant_id", "config_id"], ["crm_sync_configs.tenant_id", "crm_sync_configs.id"],
                             name="fk_crm_sync_links_config", ondelete="CASCADE", info={PER_STATEMENT: True}),
        Index("ix_crm_sync_links_config", "config_id", "entity_type"),
    )


class SyncCheckpoint(Base):
    """Where an entity's incremental pull resumes: the adapter's cursor, saved in the same
    transaction as the page it follows."""
    __tablename__ = "crm_sync_checkpoints"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    config_id: Mapped[str] = mapped_column(Uuid(as_uuid=False),
                                           ForeignKey("crm_sync_configs.id", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(String(16))
    cursor: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Where the next run starts: the high-water mark of the last complete listing.
    synced_until: Mapped[datetime | None]
    job_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (UniqueConstraint("config_id", "entity_type", name="uq_crm_sync_checkpoints_entity"),)


JOB_ACTIVE_STATUSES = ("queued", "running", "waiting_quota")


class SyncJob(Base):
    """The original design's `crm_sync_jobs`: one run of one config."""
    __tablename__ = "crm_sync_jobs"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    sync_config_id: Mapped[str] = mapped_column(Uuid(as_uuid=False),
                                                ForeignKey("crm_sync_configs.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    trigger: Mapped[str] = mapped_column(String(16), default="manual")
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    paused_until: Mapped[datetime | None]
    steps_total: Mapped[int] = mapped_column(Integer, default=0)
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Who runs the job ("workers", or "inline HOST PID" for one process) and until when: a runner
    # renews its lease while it works; an expired lease means the runner is gone and anyone
    # may resume the job from its checkpoints (crmsync.sync.jobs.lease_expired).
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (
        Index("ix_crm_sync_jobs_config_created", "sync_config_id", "created_at"),
        # At most one active job per config, whatever dispatches it.
        Index("uq_crm_sync_jobs_one_active", "sync_config_id", unique=True,
              postgresql_where=text("status IN ('queued', 'running', 'waiting_quota')"),
              sqlite_where=text("status IN ('queued', 'running', 'waiting_quota')")),
        Index("ix_crm_sync_jobs_status", "status", "updated_at"),
    )


class SyncJobStep(Base):
    """One unit of a job's fan-out (an entity's pull chain or push). The job finishes when
    its steps are done — counted here, not with Celery chords. The outbox sweeper re-enqueues
    steps that sit untouched too long."""
    __tablename__ = "crm_sync_job_steps"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    job_id: Mapped[str] = mapped_column(Uuid(as_uuid=False), ForeignKey("crm_sync_jobs.id", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(8))           # pull | push
    position: Mapped[int] = mapped_column(Integer, default=0)  # steps run in this order
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    pages: Mapped[int] = mapped_column(Integer, default=0)
    # Push steps walk rows in (updated_at, id) order; this is where the next batch starts.
    cursor: Mapped[dict[str, Any] | None] = mapped_column(Json)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    not_before: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (
        UniqueConstraint("job_id", "entity_type", "kind", name="uq_crm_sync_job_steps_unit"),
        Index("ix_crm_sync_job_steps_pending", "status", "updated_at"),
    )


class SweepId(Base):
    """An id a deletion sweep listed in the CRM, kept until the sweep's step compares the whole
    listing with the links (the listing spans many units, possibly on different workers)."""
    __tablename__ = "crm_sweep_ids"
    job_id: Mapped[str] = mapped_column(Uuid(as_uuid=False), ForeignKey("crm_sync_jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Uuid(as_uuid=False), nullable=False)
    remote_updated_at: Mapped[datetime | None]


_PENDING = {"postgresql_where": text("status = 'pending'"), "sqlite_where": text("status = 'pending'")}


class ConflictRecord(Base):
    """The original design's `crm_conflict_records`: a field changed on both sides under `manual_review`."""
    __tablename__ = "crm_conflict_records"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    config_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False),
                                                  ForeignKey("crm_sync_configs.id", ondelete="CASCADE"))
    platform: Mapped[str | None] = mapped_column(String(32))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(Uuid(as_uuid=False))
    external_id: Mapped[str | None] = mapped_column(String(64))
    local_snapshot: Mapped[dict[str, Any]] = mapped_column()
    remote_snapshot: Mapped[dict[str, Any]] = mapped_column()
    base_snapshot: Mapped[dict[str, Any] | None] = mapped_column(Json)
    conflicting_fields: Mapped[list[Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    resolution: Mapped[dict[str, Any] | None] = mapped_column(Json)
    resolved_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    __table_args__ = (Index("ix_crm_conflict_records_tenant_status", "tenant_id", "status", "created_at"),
                      Index("ix_crm_conflict_records_entity", "entity_type", "entity_id", "status"),
                      # The console's queue: pending conflicts newest first, paged by (created_at, id),
                      # for everyone (operators), one tenant or one config.
                      Index("ix_crm_conflict_records_pending", "created_at", "id", **_PENDING),
                      Index("ix_crm_conflict_records_pending_tenant", "tenant_id", "created_at", "id", **_PENDING),
                      Index("ix_crm_conflict_records_pending_config", "config_id", "created_at", "id", **_PENDING))


class WebhookEvent(Base):
    """The original design's `crm_webhook_events`: every CRM webhook event and product event, stored before
    the request is answered; `processed` flips when a worker has applied it."""
    __tablename__ = "crm_webhook_events"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    config_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False),
                                                  ForeignKey("crm_sync_configs.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))          # hubspot | pipedrive | product
    account_id: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str | None] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column()
    processed: Mapped[bool] = mapped_column(Boolean, default=False)
    processed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set while the event's group waits out a rate limit (its task has a countdown to then): the
    # outbox sweeper leaves it alone until then.
    not_before: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("platform", "account_id", "event_key", name="uq_crm_webhook_events_key"),
        Index("ix_crm_webhook_events_unprocessed", "processed", "received_at"),
        Index("ix_crm_webhook_events_tenant", "tenant_id", "received_at"),
    )


class WebhookDelivery(Base):
    """A CRM webhook request as received, until a worker splits it into `crm_webhook_events`.

    The ingest app writes one row per request (per config it touches), commits and answers: one
    row instead of up to 100 keeps the answer in milliseconds through HubSpot's bursts. The split
    (task crmsync.events.split) writes the events, deduplicated, and deletes this row in the same
    transaction, so the table holds only what is still to split (and deliveries that failed to)."""
    __tablename__ = "crm_webhook_deliveries"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    config_id: Mapped[str] = mapped_column(Uuid(as_uuid=False), ForeignKey("crm_sync_configs.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(64))        # the events' crm_webhook_events.account_id
    # Only the events of this CRM account are the config's: one HubSpot delivery may mix portals.
    event_account_id: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)                    # the request body as sent (UTF-8 JSON)
    events: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ix_crm_webhook_deliveries_received", "received_at"),)


class AutomationRule(Base):
    """The original design's `crm_automation_rules`."""
    __tablename__ = "crm_automation_rules"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    trigger: Mapped[dict[str, Any]] = mapped_column()
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    actions: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_crm_automation_rules_name"),)


class AutomationRun(Base):
    """One run of a rule for one event; the unique pair makes a rule run at most once per event."""
    __tablename__ = "crm_automation_runs"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    rule_id: Mapped[str] = mapped_column(Uuid(as_uuid=False),
                                         ForeignKey("crm_automation_rules.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(Uuid(as_uuid=False),
                                          ForeignKey("crm_webhook_events.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (UniqueConstraint("rule_id", "event_id", name="uq_crm_automation_runs_once"),)


class ConsoleUser(Base):
    """Who may sign in to the operations console. Only a salted scrypt hash of the password is
    kept. A tenant's user sees that tenant's rows only; an operator (no tenant) sees every tenant."""
    __tablename__ = "crm_console_users"
    id: Mapped[str] = _id()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False), ForeignKey("tenants.id", ondelete="CASCADE"))
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()
    last_sign_in_at: Mapped[datetime | None]
    # A session cookie names the generation it was signed in under; signing out moves it on, so
    # every earlier cookie of the user (a copied one included) stops working at once.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    __table_args__ = (CheckConstraint("is_operator OR tenant_id IS NOT NULL", name="ck_crm_console_users_scope"),)


class ConflictResolution(Base):
    """The audit trail: one row per settled conflict (or field of one), never edited — who, when,
    the values before, the values chosen, what that meant to write on each side, and the push that
    followed."""
    __tablename__ = "crm_conflict_resolutions"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = _tenant()
    conflict_id: Mapped[str] = mapped_column(Uuid(as_uuid=False),
                                             ForeignKey("crm_conflict_records.id", ondelete="CASCADE"))
    config_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(Uuid(as_uuid=False))
    resolved_by: Mapped[str] = mapped_column(String(320))      # a console user's email, or "cli"
    how: Mapped[str] = mapped_column(String(32))               # fields | take-local | take-remote | field-rule
    before: Mapped[dict[str, Any]] = mapped_column()            # {"local": {...}, "remote": {...}, "base": {...}}
    after: Mapped[dict[str, Any]] = mapped_column()             # {field: chosen value}
    writes: Mapped[dict[str, Any]] = mapped_column()            # {"local": {...}, "<platform>": {...}}
    push: Mapped[dict[str, Any] | None] = mapped_column(Json)  # the push job that followed
    resolved_at: Mapped[datetime] = _created()
    __table_args__ = (Index("ix_crm_conflict_resolutions_tenant", "tenant_id", "resolved_at"),
                      Index("ix_crm_conflict_resolutions_entity", "entity_type", "entity_id"))


class ConflictFieldRule(Base):
    """"Always prefer <side> for <field> in this config": a conflict on that field is settled by it
    instead of by the config's strategy (and so never held for review)."""
    __tablename__ = "crm_conflict_field_rules"
    id: Mapped[str] = _id()
    tenant_id: Mapped[str] = mapped_column(Uuid(as_uuid=False), nullable=False)
    config_id: Mapped[str] = mapped_column(Uuid(as_uuid=False))
    entity_type: Mapped[str] = mapped_column(String(16))
    field: Mapped[str] = mapped_column(String(200))
    prefer: Mapped[str] = mapped_column(String(8))              # local | remote
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("config_id", "entity_type", "field", name="uq_crm_conflict_field_rules_field"),
        ForeignKeyConstraint(["tenant_id", "config_id"], ["crm_sync_configs.tenant_id", "crm_sync_configs.id"],
                             name="fk_crm_conflict_field_rules_config", ondelete="CASCADE"),
        CheckConstraint("prefer IN ('local', 'remote')", name="ck_crm_conflict_field_rules_prefer"),
    )

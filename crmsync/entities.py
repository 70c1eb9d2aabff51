"""The unified model: contact, company, deal, activity and task as crmsync stores them.

Every CRM's mapper turns its records into these shapes and back; the sync engine and the
database only ever see them. Field names follow the original design's tables (`crm_contacts`, ...).
A record is a plain dict of these fields; the marshmallow schemas (`SCHEMAS`) validate one.

`SYNCED_FIELDS` lists, per entity, the fields the three-way merge compares. Associations
(`company_id`, `contact_id`, `deal_id`) are local ids; a remote record carries its
associations as external ids instead (see `crmsync.platforms.base.RemoteRecord`).
"""
from __future__ import annotations

ENTITY_TYPES: tuple[str, ...] = ("contact", "company", "deal", "activity", "task")

# The original design's config flags and table names, by entity.
ENTITY_PLURALS = {"contact": "contacts", "company": "companies", "deal": "deals",
                  "activity": "activities", "task": "tasks"}
ENTITY_BY_PLURAL = {v: k for k, v in ENTITY_PLURALS.items()}
TABLE_NAMES = {entity: f"crm_{plural}" for entity, plural in ENTITY_PLURALS.items()}

ACTIVITY_TYPES = ("note", "call", "meeting", "email")
TASK_STATUSES = ("not_started", "in_progress", "waiting", "completed", "deferred")
TASK_PRIORITIES = ("low", "medium", "high")
DEAL_STATUSES = ("open", "won", "lost")

# Fields compared and merged field by field, per entity. Associations are compared too:
# moving a deal to another company is an edit like any other. `owner_id` is not: it names a user
# of one CRM, meaningless in another, so it is kept as each CRM reports it and never pushed.
SYNCED_FIELDS: dict[str, tuple[str, ...]] = {
    "contact": ("email", "first_name", "last_name", "phone", "job_title", "company_name",
                "lifecycle_stage", "lead_status", "lead_source", "lead_score", "tags",
                "notes", "city", "country", "company_id"),
    "company": ("name", "domain", "industry", "phone", "website", "city", "country",
                "employee_count", "annual_revenue", "description"),
    "deal": ("name", "amount", "currency", "stage", "pipeline", "probability", "close_date",
             "status", "description", "company_id", "contact_id"),
    "activity": ("type", "subject", "body", "occurred_at", "duration_minutes", "direction",
                 "outcome", "contact_id", "company_id", "deal_id"),
    "task": ("title", "body", "due_date", "status", "priority", "task_type",
             "contact_id", "company_id", "deal_id"),
}

# The same as sets, for the per-record membership tests of a page's merge (hashing a tuple of
# field names on every record was a sixth of a backfill page's CPU).
SYNCED_FIELD_SETS: dict[str, frozenset[str]] = {e: frozenset(f) for e, f in SYNCED_FIELDS.items()}

# Association fields per entity and the entity each one points to.
ASSOCIATIONS: dict[str, dict[str, str]] = {
    "contact": {"company_id": "company"},
    "company": {},
    "deal": {"company_id": "company", "contact_id": "contact"},
    "activity": {"contact_id": "contact", "company_id": "company", "deal_id": "deal"},
    "task": {"contact_id": "contact", "company_id": "company", "deal_id": "deal"},
}

# How `field_merge` combines two edits of the same field (the original design: append notes, max for
# scores); fields not listed take the newer value.
FIELD_MERGE_RULES: dict[str, str] = {
    "notes": "append", "description": "append", "body": "append",
    "lead_score": "max", "probability": "max",
    "tags": "union",
}


# The marshmallow schemas that validate a record are in `crmsync.entity_schemas`: what only needs
# the names above (a sync) does not load marshmallow. They still import from here.
_SCHEMA_NAMES = frozenset({"SCHEMAS", "ContactSchema", "CompanySchema", "DealSchema", "ActivitySchema",
                           "TaskSchema"})


def __getattr__(name: str):
    if name in _SCHEMA_NAMES:
        from crmsync import entity_schemas
        return getattr(entity_schemas, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_record(entity: str, record: dict) -> dict:
    """Validate one unified record; returns the errors by field ({} when valid)."""
    from crmsync.entity_schemas import SCHEMAS
    return SCHEMAS[entity]().validate(record)

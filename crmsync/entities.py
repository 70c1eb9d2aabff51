"""The unified model: contact, company, deal, activity and task as crmsync stores them.

Every CRM's mapper turns its records into these shapes and back; the sync engine and the
database only ever see them. Field names follow the original design's tables (`crm_contacts`, ...).
A record is a plain dict of these fields; the marshmallow schemas validate one.

`SYNCED_FIELDS` lists, per entity, the fields the three-way merge compares. Associations
(`company_id`, `contact_id`, `deal_id`) are local ids; a remote record carries its
associations as external ids instead (see `crmsync.platforms.base.RemoteRecord`).
"""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

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


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String(allow_none=True)
    tenant_id = fields.String(allow_none=True)
    custom_fields = fields.Dict(keys=fields.String(), load_default=dict)
    created_at = fields.AwareDateTime(allow_none=True)
    updated_at = fields.AwareDateTime(allow_none=True)
    deleted_at = fields.AwareDateTime(allow_none=True)
    owner_id = fields.String(allow_none=True)


class ContactSchema(_Base):
    email = fields.Email(allow_none=True)
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    job_title = fields.String(allow_none=True)
    company_name = fields.String(allow_none=True)
    lifecycle_stage = fields.String(allow_none=True)
    lead_status = fields.String(allow_none=True)
    lead_source = fields.String(allow_none=True)
    lead_score = fields.Float(allow_none=True)
    tags = fields.List(fields.String(), allow_none=True)
    notes = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    company_id = fields.String(allow_none=True)


class CompanySchema(_Base):
    name = fields.String(allow_none=True)
    domain = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    website = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    employee_count = fields.Integer(allow_none=True, validate=validate.Range(min=0))
    annual_revenue = fields.Float(allow_none=True)
    description = fields.String(allow_none=True)


class DealSchema(_Base):
    name = fields.String(allow_none=True)
    amount = fields.Float(allow_none=True)
    currency = fields.String(allow_none=True)
    stage = fields.String(allow_none=True)
    pipeline = fields.String(allow_none=True)
    probability = fields.Float(allow_none=True, validate=validate.Range(min=0, max=100))
    close_date = fields.AwareDateTime(allow_none=True)
    status = fields.String(allow_none=True, validate=validate.OneOf(DEAL_STATUSES))
    description = fields.String(allow_none=True)
    company_id = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)


class ActivitySchema(_Base):
    type = fields.String(required=True, validate=validate.OneOf(ACTIVITY_TYPES))
    subject = fields.String(allow_none=True)
    body = fields.String(allow_none=True)
    occurred_at = fields.AwareDateTime(allow_none=True)
    duration_minutes = fields.Integer(allow_none=True, validate=validate.Range(min=0))
    direction = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    company_id = fields.String(allow_none=True)
    deal_id = fields.String(allow_none=True)


class TaskSchema(_Base):
    title = fields.String(required=True)
    body = fields.String(allow_none=True)
    due_date = fields.AwareDateTime(allow_none=True)
    status = fields.String(allow_none=True, validate=validate.OneOf(TASK_STATUSES))
    priority = fields.String(allow_none=True, validate=validate.OneOf(TASK_PRIORITIES))
    task_type = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    company_id = fields.String(allow_none=True)
    deal_id = fields.String(allow_none=True)


SCHEMAS: dict[str, type[Schema]] = {
    "contact": ContactSchema, "company": CompanySchema, "deal": DealSchema,
    "activity": ActivitySchema, "task": TaskSchema,
}


def validate_record(entity: str, record: dict) -> dict:
    """Validate one unified record; returns the errors by field ({} when valid)."""
    return SCHEMAS[entity]().validate(record)

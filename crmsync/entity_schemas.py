"""The marshmallow schemas of the unified model (`crmsync.entities`), one per entity: what a
valid record of each looks like. Imported from `crmsync.entities` as before; a module of their own
so that what needs only the entity names and fields (a sync) does not load marshmallow."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from crmsync.entities import ACTIVITY_TYPES, DEAL_STATUSES, TASK_PRIORITIES, TASK_STATUSES


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

"""Product events (`POST /events/<type>`): what the tenant's own product tells crmsync, for automation
rules to trigger on. One table, `PRODUCT_EVENTS`, names every type, its schema and what it means;
the automation engine reads the stored, normalized payload (the schema's `dump` of what was loaded:
datetimes as ISO 8601 strings, emails lower-cased).

Unknown fields are refused (a typo should not pass silently); free-form extras go in `properties`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from crmsync.errors import Fatal

_text = validate.Length(max=1000)
_long_text = validate.Length(max=200_000)
_id = validate.Length(min=1, max=200)


def _representable_in_utc(value: datetime) -> None:
    # PostgreSQL stores 9999-12-31T23:59:59-12:00 (year 10000 in UTC) and 0001-01-01T00:00:00+01:00
    # (1 BC), but no Python reader can load them back: one such row broke `webhooks list` for all.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValidationError("out of range: the instant must fall within the years 1 to 9999 in UTC") from None


def _instant(**kw):
    return fields.AwareDateTime(validate=_representable_in_utc, **kw)


class WholeNumber(fields.Integer):
    """An integer as JSON Schema (and so /openapi.json) has it: 90 or 90.0, never 2.5e-42 cut to 0."""

    def _validated(self, value):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise self.make_error("invalid")
        return super()._validated(value)


def _lower_email(**kw):
    return fields.Email(validate=validate.Length(max=320), **kw)


class ProductEventSchema(Schema):
    class Meta:
        unknown = RAISE

    occurred_at = _instant(metadata={"description": "When it happened (ISO 8601 with zone)."})
    properties = fields.Dict(keys=fields.String(validate=validate.Length(max=200)),
                             metadata={"description": "Free-form extras, kept verbatim."})

    @post_load
    def _normalize_emails(self, data, **kwargs):
        for name, field in self.fields.items():
            if isinstance(field, fields.Email) and isinstance(data.get(name), str):
                data[name] = data[name].strip().lower()
        return data


class EmailRepliedSchema(ProductEventSchema):
    sender_email = _lower_email(required=True, metadata={"description": "Who replied (matched to a contact)."})
    sender_name = fields.String(validate=_text, metadata={"description": "Their name, as rules' {contact_name}."})
    recipient_email = _lower_email(metadata={"description": "The mailbox that received the reply."})
    subject = fields.String(validate=_text)
    body = fields.String(validate=_long_text)
    received_at = _instant()
    message_id = fields.String(validate=_id)
    thread_id = fields.String(validate=_id)
    deal_id = fields.String(validate=_id, metadata={"description": "A local or CRM deal id, if known."})


class EmailOpenedSchema(ProductEventSchema):
    recipient_email = _lower_email(required=True)
    subject = fields.String(validate=_text)
    message_id = fields.String(validate=_id)
    opened_at = _instant()


class MeetingScheduledSchema(ProductEventSchema):
    contact_email = _lower_email(required=True, metadata={"description": "The invitee (matched to a contact)."})
    contact_name = fields.String(validate=_text, metadata={"description": "The invitee's name ({contact_name})."})
    meeting_date = _instant(required=True, metadata={"description": "Start, ISO 8601 with zone."})
    duration_minutes = WholeNumber(validate=validate.Range(min=0, max=24 * 60))
    title = fields.String(validate=_text)
    location = fields.String(validate=_text)
    meeting_url = fields.Url(validate=validate.Length(max=2000))
    organizer_email = _lower_email()
    attendee_emails = fields.List(fields.Email(validate=validate.Length(max=320)),
                                  validate=validate.Length(max=200))
    deal_id = fields.String(validate=_id)


class MeetingCancelledSchema(ProductEventSchema):
    contact_email = _lower_email(required=True)
    meeting_date = _instant()
    reason = fields.String(validate=_text)
    deal_id = fields.String(validate=_id)


class FormSubmittedSchema(ProductEventSchema):
    email = _lower_email(required=True)
    form_id = fields.String(validate=_id)
    first_name = fields.String(validate=_text)
    last_name = fields.String(validate=_text)
    company_name = fields.String(validate=_text)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(validate=validate.Length(max=200)),
                          metadata={"description": "The submitted form fields."})


@dataclass(frozen=True)
class ProductEventType:
    name: str
    schema: type[ProductEventSchema]
    description: str


PRODUCT_EVENTS: dict[str, ProductEventType] = {t.name: t for t in (
    ProductEventType("email_replied", EmailRepliedSchema, "A contact replied to an email the tenant sent."),
    ProductEventType("email_opened", EmailOpenedSchema, "A recipient opened an email the tenant sent."),
    ProductEventType("meeting_scheduled", MeetingScheduledSchema, "A meeting with a contact was booked."),
    ProductEventType("meeting_cancelled", MeetingCancelledSchema, "A booked meeting was cancelled."),
    ProductEventType("form_submitted", FormSubmittedSchema, "Someone submitted one of the tenant's forms."),
)}


class ProductEventInvalid(Fatal, ValueError):
    def __init__(self, messages):
        super().__init__("invalid product event")
        self.messages = messages


def normalize_product_event(event_type: str, data) -> dict:
    """The stored payload of a product event, or `ProductEventInvalid` with per-field messages.
    `event_type` must be a key of PRODUCT_EVENTS."""
    if not isinstance(data, dict):
        raise ProductEventInvalid({"_schema": ["the body must be a JSON object"]})
    schema = PRODUCT_EVENTS[event_type].schema()
    try:
        loaded = schema.load(data)
    except ValidationError as err:
        raise ProductEventInvalid(err.messages) from None
    return schema.dump(loaded)

"""HubSpot records <-> the unified model (`crmsync.entities`).

HubSpot sends every property value as a string (numbers "1500.00", datetimes ISO with ms and Z,
multi-selects "a;b"); the unified model holds typed values (floats, aware datetimes, lists).
Each unified field has one HubSpot property and one converter; the config's `field_mappings`
({unified field: hubspot property}, optionally qualified as "deal.description") pick another
property but keep the converter. Properties we do not map land in `custom_fields` as HubSpot's
own strings and go back unchanged, so they survive a round trip.

Associations come out as external ids under the unified association field names
(`company_id`, `contact_id`, `deal_id`); the adapter moves them to `RemoteRecord.associations`.

Activities are four HubSpot object types (notes, calls, meetings, emails) behind one unified
entity, told apart by `type`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from crmsync.entities import ASSOCIATIONS

# ---------------------------------------------------------------------------------------
# Object types
# ---------------------------------------------------------------------------------------

# Unified entity -> HubSpot object type (path name); activity spans four.
OBJECT_TYPES: dict[str, tuple[str, ...]] = {
    "contact": ("contacts",), "company": ("companies",), "deal": ("deals",), "task": ("tasks",),
    "activity": ("notes", "calls", "meetings", "emails"),
}
# Object types crmsync gives its unique `crmsync_id` property: a portal may have at most 10 unique
# properties per object, and only these are matched by it when a create's outcome is unknown
# (https://knowledge.hubspot.com/properties/create-and-edit-properties#require-unique-values).
MARKED_OBJECT_TYPES = ("contacts", "companies", "deals")
ACTIVITY_OBJECTS = {"note": "notes", "call": "calls", "meeting": "meetings", "email": "emails"}
ACTIVITY_TYPE_BY_OBJECT = {v: k for k, v in ACTIVITY_OBJECTS.items()}
OBJECT_TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3", "tickets": "0-5", "tasks": "0-27",
                   "notes": "0-46", "meetings": "0-47", "calls": "0-48", "emails": "0-49"}
OBJECT_BY_TYPE_ID = {v: k for k, v in OBJECT_TYPE_IDS.items()}
ENTITY_BY_OBJECT = {obj: entity for entity, objs in OBJECT_TYPES.items() for obj in objs}
# Singular names used in association type strings and webhook subscription prefixes.
SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal", "tasks": "task",
            "notes": "note", "calls": "call", "meetings": "meeting", "emails": "email"}


def modified_property(object_type: str) -> str:
    """The last-modified property search can filter on: contacts differ from everything else."""
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def created_property(object_type: str) -> str:
    return "createdate" if object_type in ("contacts", "companies", "deals") else "hs_createdate"


# Read-only bookkeeping properties: never custom fields, never written.
SYSTEM_PROPERTIES = frozenset({
    "hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_createdate",
    "hs_merged_object_ids", "hs_object_source", "hs_object_source_label", "hs_object_source_id",
    "hs_object_source_detail_1", "hs_additional_emails", "hs_all_owner_ids", "hs_updated_by_user_id",
    "hs_created_by_user_id", "hs_is_closed", "hs_is_closed_won", "hs_pipeline", "hs_searchable_calculated_phone_number",
})


# ---------------------------------------------------------------------------------------
# Value converters: (hubspot string -> unified value, unified value -> hubspot string)
# ---------------------------------------------------------------------------------------

def _blank(value: Any) -> bool:
    return value is None or value == ""


def parse_datetime(value: Any) -> datetime | None:
    """HubSpot datetimes: ISO-8601 (with ms and Z) or epoch milliseconds, as strings."""
    if value.__class__ is str and value[-1:] == "Z":
        try:
            return datetime.fromisoformat(value)  # HubSpot's usual spelling; 3.11 reads Z as UTC
        except ValueError:
            pass
    if _blank(value):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_datetime(value: Any) -> str:
    """Unified datetime (or ISO string) -> HubSpot's ISO-8601 UTC with milliseconds and Z."""
    if _blank(value):
        return ""
    dt = parse_datetime(value)
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def to_epoch_ms(value: Any) -> int:
    dt = parse_datetime(value)
    return round(dt.timestamp() * 1000)


def _format_number(value: Any) -> str:
    if _blank(value):
        return ""
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _parse_float(value: Any) -> float | None:
    return None if _blank(value) else float(value)


def _parse_int(value: Any) -> int | None:
    return None if _blank(value) else round(float(value))


def _parse_str(value: Any) -> str | None:
    return None if _blank(value) else str(value)


def _format_str(value: Any) -> str:
    return "" if value is None else str(value)


def _parse_lower(value: Any) -> str | None:
    return None if _blank(value) else str(value).lower()


def _format_upper(value: Any) -> str:
    return "" if _blank(value) else str(value).upper()


def _parse_multi(value: Any) -> list[str] | None:
    if _blank(value):
        return None
    return [part for part in str(value).split(";") if part != ""]


def _format_multi(value: Any) -> str:
    if _blank(value):
        return ""
    if isinstance(value, str):
        return value
    return ";".join(str(v) for v in value)


def _parse_minutes_from_ms(value: Any) -> int | None:
    return None if _blank(value) else round(float(value) / 60000)


def _format_ms_from_minutes(value: Any) -> str:
    return "" if _blank(value) else str(int(value) * 60000)


def _parse_percent(value: Any) -> float | None:
    # HubSpot keeps deal probability as a 0..1 fraction; the unified model as 0..100.
    return None if _blank(value) else round(float(value) * 100, 6)


def _format_percent(value: Any) -> str:
    return "" if _blank(value) else repr(round(float(value) / 100, 8))


def _enum_table(pairs: dict[str, str]) -> tuple[Callable, Callable]:
    """A closed HubSpot enum <-> unified spelling; unknown values pass through lower-/upper-cased."""
    back = {v: k for k, v in pairs.items()}

    def parse(value):
        return None if _blank(value) else pairs.get(str(value), str(value).lower())

    def fmt(value):
        return "" if _blank(value) else back.get(str(value), str(value).upper())
    return parse, fmt


@dataclass(frozen=True)
class Converter:
    parse: Callable[[Any], Any]
    format: Callable[[Any], str]


TEXT = Converter(_parse_str, _format_str)
FLOAT = Converter(_parse_float, _format_number)
INT = Converter(_parse_int, _format_number)
DATETIME = Converter(parse_datetime, format_datetime)
MULTI = Converter(_parse_multi, _format_multi)
ENUM = Converter(_parse_lower, _format_upper)
DURATION = Converter(_parse_minutes_from_ms, _format_ms_from_minutes)
PERCENT = Converter(_parse_percent, _format_percent)
EMAIL_DIRECTION = Converter(*_enum_table({"EMAIL": "outbound", "INCOMING_EMAIL": "inbound",
                                          "FORWARDED_EMAIL": "forwarded"}))

# ---------------------------------------------------------------------------------------
# Default field tables: unified field -> (hubspot property, converter)
# ---------------------------------------------------------------------------------------

FieldTable = dict[str, tuple[str, Converter]]

CONTACT_FIELDS: FieldTable = {
    "email": ("email", TEXT), "first_name": ("firstname", TEXT), "last_name": ("lastname", TEXT),
    "phone": ("phone", TEXT), "job_title": ("jobtitle", TEXT), "company_name": ("company", TEXT),
    "lifecycle_stage": ("lifecyclestage", TEXT), "lead_status": ("hs_lead_status", TEXT),
    # HubSpot has no writable standard properties for these four; the names below are the
    # custom properties a portal gets (or the config maps them elsewhere). The adapter only
    # writes properties the portal defines.
    "lead_source": ("lead_source", TEXT), "lead_score": ("lead_score", FLOAT),
    "tags": ("tags", MULTI), "notes": ("notes", TEXT),
    "city": ("city", TEXT), "country": ("country", TEXT), "owner_id": ("hubspot_owner_id", TEXT),
}
COMPANY_FIELDS: FieldTable = {
    "name": ("name", TEXT), "domain": ("domain", TEXT), "industry": ("industry", TEXT),
    "phone": ("phone", TEXT), "website": ("website", TEXT), "city": ("city", TEXT),
    "country": ("country", TEXT), "employee_count": ("numberofemployees", INT),
    "annual_revenue": ("annualrevenue", FLOAT), "owner_id": ("hubspot_owner_id", TEXT),
    "description": ("description", TEXT),
}
DEAL_FIELDS: FieldTable = {
    "name": ("dealname", TEXT), "amount": ("amount", FLOAT), "currency": ("deal_currency_code", TEXT),
    "stage": ("dealstage", TEXT), "pipeline": ("pipeline", TEXT),
    "probability": ("hs_deal_stage_probability", PERCENT), "close_date": ("closedate", DATETIME),
    "owner_id": ("hubspot_owner_id", TEXT), "description": ("description", TEXT),
}
TASK_FIELDS: FieldTable = {
    "title": ("hs_task_subject", TEXT), "body": ("hs_task_body", TEXT), "due_date": ("hs_timestamp", DATETIME),
    "status": ("hs_task_status", ENUM), "priority": ("hs_task_priority", ENUM),
    "task_type": ("hs_task_type", ENUM), "owner_id": ("hubspot_owner_id", TEXT),
}
ACTIVITY_FIELDS: dict[str, FieldTable] = {
    "note": {"body": ("hs_note_body", TEXT), "occurred_at": ("hs_timestamp", DATETIME),
             "owner_id": ("hubspot_owner_id", TEXT)},
    "call": {"subject": ("hs_call_title", TEXT), "body": ("hs_call_body", TEXT),
             "occurred_at": ("hs_timestamp", DATETIME), "duration_minutes": ("hs_call_duration", DURATION),
             "direction": ("hs_call_direction", ENUM), "outcome": ("hs_call_status", ENUM),
             "owner_id": ("hubspot_owner_id", TEXT)},
    # Meeting duration is end - start (written as start = occurred_at, end = start + duration).
    "meeting": {"subject": ("hs_meeting_title", TEXT), "body": ("hs_meeting_body", TEXT),
                "occurred_at": ("hs_timestamp", DATETIME), "outcome": ("hs_meeting_outcome", ENUM),
                "owner_id": ("hubspot_owner_id", TEXT)},
    "email": {"subject": ("hs_email_subject", TEXT), "body": ("hs_email_text", TEXT),
              "occurred_at": ("hs_timestamp", DATETIME), "direction": ("hs_email_direction", EMAIL_DIRECTION),
              "outcome": ("hs_email_status", ENUM), "owner_id": ("hubspot_owner_id", TEXT)},
}
ENTITY_FIELDS: dict[str, FieldTable] = {
    "contact": CONTACT_FIELDS, "company": COMPANY_FIELDS, "deal": DEAL_FIELDS, "task": TASK_FIELDS,
}
MEETING_TIMES = ("hs_meeting_start_time", "hs_meeting_end_time")


def field_table(entity: str, field_mappings: Mapping[str, str] | None = None,
                activity_type: str | None = None) -> FieldTable:
    """The effective table for one entity: defaults overridden by the config's field_mappings.

    A mapping key is a unified field ("description") or an entity-qualified one
    ("deal.description"); the qualified form wins. A field the defaults do not map is mapped
    as text.
    """
    base = ACTIVITY_FIELDS[activity_type or "note"] if entity == "activity" else ENTITY_FIELDS[entity]
    table = dict(base)
    if field_mappings:
        from crmsync.entities import SCHEMAS
        known = set(SCHEMAS[entity]().fields) - {"id", "tenant_id", "custom_fields", "created_at",
                                                  "updated_at", "deleted_at", "type"}
        for key, prop in field_mappings.items():
            qualifier, _, name = key.rpartition(".")
            if qualifier and qualifier != entity:
                continue
            if not qualifier and f"{entity}.{name}" in field_mappings:
                continue
            if name in table:
                table[name] = (prop, table[name][1])
            elif name in known:
                table[name] = (prop, TEXT)
    return table


def mapped_properties(entity: str, field_mappings: Mapping[str, str] | None = None,
                      object_type: str | None = None) -> list[str]:
    """Every property a read of this entity should ask for (mapped, bookkeeping, merge ids)."""
    object_type = object_type or OBJECT_TYPES[entity][0]
    activity_type = ACTIVITY_TYPE_BY_OBJECT.get(object_type)
    props = {prop for prop, _ in field_table(entity, field_mappings, activity_type).values()}
    props |= {"hs_object_id", modified_property(object_type), created_property(object_type)}
    if object_type in ("contacts", "companies", "deals"):
        props.add("hs_merged_object_ids")
    if object_type == "deals":
        props |= {"hs_is_closed", "hs_is_closed_won"}
    if object_type == "meetings":
        props |= set(MEETING_TIMES)
    return sorted(props)


# ---------------------------------------------------------------------------------------
# Associations
# ---------------------------------------------------------------------------------------

# Default association type ids (docs/hubspot.md §5.1), from object -> to object.
ASSOCIATION_TYPE_IDS: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 1, ("companies", "contacts"): 2, ("deals", "contacts"): 3,
    ("contacts", "deals"): 4, ("deals", "companies"): 5, ("companies", "deals"): 6,
    ("tasks", "contacts"): 204, ("tasks", "companies"): 192, ("tasks", "deals"): 216,
    ("notes", "contacts"): 202, ("notes", "companies"): 190, ("notes", "deals"): 214,
    ("calls", "contacts"): 194, ("calls", "companies"): 182, ("calls", "deals"): 206,
    ("meetings", "contacts"): 200, ("meetings", "companies"): 188, ("meetings", "deals"): 212,
    ("emails", "contacts"): 198, ("emails", "companies"): 186, ("emails", "deals"): 210,
}
# Unified association field -> HubSpot object type it points to.
ASSOCIATION_OBJECTS = {"company_id": "companies", "contact_id": "contacts", "deal_id": "deals"}


def association_targets(entity: str) -> dict[str, str]:
    """Association field -> target object type for an entity, e.g. deal: company_id -> companies."""
    return {name: ASSOCIATION_OBJECTS[name] for name in ASSOCIATIONS[entity]}


def _pick_association(results: list[dict]) -> str | None:
    """HubSpot lists a primary association and its unlabeled twin with the same id; prefer the
    primary one, else the lowest id, so the choice is stable between reads."""
    if not results:
        return None
    primary = [r for r in results if r.get("type") and not str(r["type"]).endswith("_unlabeled")]
    pool = primary or results
    ids = sorted({str(r.get("id") if r.get("id") is not None else r.get("toObjectId")) for r in pool},
                 key=lambda v: (len(v), v))
    return ids[0] if ids else None


def associations_from_object(obj: Mapping[str, Any], entity: str) -> dict[str, str | None]:
    """Association field -> external id from a list/get response's inline `associations` block.
    Only the types present in the block are returned (absent block = unknown, not 'none')."""
    block = obj.get("associations")
    if block is None:
        return {}
    found: dict[str, str | None] = {}
    for name, target in association_targets(entity).items():
        coll = block.get(target) or block.get(SINGULAR[target]) or {}
        found[name] = _pick_association(coll.get("results") or [])
    return found


def hubspot_associations(entity: str, associations: Mapping[str, str | None],
                         object_type: str | None = None) -> list[dict]:
    """The create-time `associations` array (default HUBSPOT_DEFINED type ids)."""
    object_type = object_type or OBJECT_TYPES[entity][0]
    out = []
    for name, target in association_targets(entity).items():
        target_id = associations.get(name)
        if target_id in (None, ""):
            continue
        out.append({"to": {"id": str(target_id)},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED",
                               "associationTypeId": ASSOCIATION_TYPE_IDS[(object_type, target)]}]})
    return out


# ---------------------------------------------------------------------------------------
# HubSpot -> unified
# ---------------------------------------------------------------------------------------

def extract_hubspot_custom_fields(properties: Mapping[str, Any], entity: str = "contact",
                                  field_mappings: Mapping[str, str] | None = None,
                                  activity_type: str | None = None) -> dict[str, Any]:
    """Properties the unified model does not map, as HubSpot's own strings. HubSpot-defined
    bookkeeping (hs_* and the create/modify dates) is left out: it is not the tenant's data."""
    if entity == "activity" and activity_type is None:
        activity_type = "note"
    return _custom_fields(properties, _reader(entity, activity_type, _mappings_key(field_mappings)))


def _custom_fields(properties: Mapping[str, Any], reader: _Reader) -> dict[str, Any]:
    return {name: value for name, value in properties.items()
            if name not in reader.not_custom and not name.startswith("hs_")}


@dataclass(frozen=True)
class _Reader:
    """One entity's field table made ready for reading many records: (field, property, parse)
    triples, text fields marked by parse None (the common case, read inline)."""
    fields: tuple[tuple[str, str, Callable | None], ...]
    not_custom: frozenset[str]
    created_prop: str
    modified_prop: str


def _mappings_key(field_mappings: Mapping[str, str] | None) -> tuple:
    return tuple(sorted(field_mappings.items())) if field_mappings else ()


@lru_cache(maxsize=256)
def _reader(entity: str, activity_type: str | None, mappings: tuple) -> _Reader:
    table = field_table(entity, dict(mappings) or None, activity_type)
    object_type = ACTIVITY_OBJECTS[activity_type] if entity == "activity" else OBJECT_TYPES[entity][0]
    fields = tuple((name, prop, None if conv is TEXT else conv.parse) for name, (prop, conv) in table.items())
    return _Reader(fields, frozenset(prop for _, prop, _ in fields) | SYSTEM_PROPERTIES,
                   created_property(object_type), modified_property(object_type))


def _to_unified(obj: Mapping[str, Any], entity: str, tenant_id: str | None,
                field_mappings: Mapping[str, str] | None, activity_type: str | None = None) -> dict:
    props = obj.get("properties") or {}
    reader = _reader(entity, activity_type, _mappings_key(field_mappings))
    record: dict[str, Any] = {}
    for name, prop, parse in reader.fields:
        if prop in props:
            value = props[prop]
            if parse is not None:
                record[name] = parse(value)
            elif value.__class__ is str:
                record[name] = value or None
            else:
                record[name] = _parse_str(value)
    record["created_at"] = parse_datetime(props.get(reader.created_prop) or obj.get("createdAt"))
    record["updated_at"] = parse_datetime(props.get(reader.modified_prop) or obj.get("updatedAt"))
    record["custom_fields"] = _custom_fields(props, reader)
    if obj.get("archived"):
        record["deleted_at"] = parse_datetime(obj.get("archivedAt")) or record["updated_at"]
    if tenant_id is not None:
        record["tenant_id"] = tenant_id
    record.update(associations_from_object(obj, entity))
    return record


def map_hubspot_contact_to_unified(obj: Mapping[str, Any], tenant_id: str | None = None,
                                   field_mappings: Mapping[str, str] | None = None) -> dict:
    return _to_unified(obj, "contact", tenant_id, field_mappings)


def map_hubspot_company_to_unified(obj: Mapping[str, Any], tenant_id: str | None = None,
                                   field_mappings: Mapping[str, str] | None = None) -> dict:
    return _to_unified(obj, "company", tenant_id, field_mappings)


def deal_status(props: Mapping[str, Any]) -> str | None:
    """open/won/lost: HubSpot derives it from the stage (hs_is_closed_won / hs_is_closed); when
    those are not returned, the default pipeline's stage ids closedwon/closedlost decide."""
    won, closed = props.get("hs_is_closed_won"), props.get("hs_is_closed")
    if won is not None or closed is not None:
        if str(won).lower() == "true":
            return "won"
        return "lost" if str(closed).lower() == "true" else "open"
    stage = props.get("dealstage")
    if _blank(stage):
        return None
    stage = str(stage).lower()
    return "won" if stage == "closedwon" else "lost" if stage == "closedlost" else "open"


def map_hubspot_deal_to_unified(obj: Mapping[str, Any], tenant_id: str | None = None,
                                field_mappings: Mapping[str, str] | None = None) -> dict:
    record = _to_unified(obj, "deal", tenant_id, field_mappings)
    props = dict(obj.get("properties") or {})
    stage_prop = field_table("deal", field_mappings)["stage"][0]
    if stage_prop in props:
        props["dealstage"] = props[stage_prop]
    status = deal_status(props)
    if status is not None or "status" not in record:
        record["status"] = status
    return record


def map_hubspot_task_to_unified(obj: Mapping[str, Any], tenant_id: str | None = None,
                                field_mappings: Mapping[str, str] | None = None) -> dict:
    return _to_unified(obj, "task", tenant_id, field_mappings)


def map_hubspot_activity_to_unified(obj: Mapping[str, Any], activity_type: str, tenant_id: str | None = None,
                                    field_mappings: Mapping[str, str] | None = None) -> dict:
    """A note, call, meeting or email (activity_type) as a unified activity."""
    record = _to_unified(obj, "activity", tenant_id, field_mappings, activity_type)
    record["type"] = activity_type
    props = obj.get("properties") or {}
    if activity_type == "meeting":
        start, end = parse_datetime(props.get(MEETING_TIMES[0])), parse_datetime(props.get(MEETING_TIMES[1]))
        record["duration_minutes"] = (round((end - start).total_seconds() / 60)
                                      if start is not None and end is not None else None)
    for name in ("subject", "body", "duration_minutes", "direction", "outcome"):
        record.setdefault(name, None)
    return record


def map_hubspot_to_unified(entity: str, obj: Mapping[str, Any], tenant_id: str | None = None,
                           field_mappings: Mapping[str, str] | None = None,
                           object_type: str | None = None) -> dict:
    """Dispatch by entity (and, for activities, by HubSpot object type)."""
    if entity == "activity":
        return map_hubspot_activity_to_unified(obj, ACTIVITY_TYPE_BY_OBJECT[object_type or "notes"],
                                               tenant_id, field_mappings)
    return _FROM_HUBSPOT[entity](obj, tenant_id, field_mappings)


_FROM_HUBSPOT = {"contact": map_hubspot_contact_to_unified, "company": map_hubspot_company_to_unified,
                 "deal": map_hubspot_deal_to_unified, "task": map_hubspot_task_to_unified}

# ---------------------------------------------------------------------------------------
# unified -> HubSpot
# ---------------------------------------------------------------------------------------


def _to_hubspot(record: Mapping[str, Any], entity: str, field_mappings: Mapping[str, str] | None,
                activity_type: str | None = None) -> dict[str, str]:
    """Properties for a create or update. Only fields present in `record` are written (a
    partial record updates only those); None becomes "" which HubSpot reads as 'clear'."""
    table = field_table(entity, field_mappings, activity_type)
    props: dict[str, str] = {}
    for name, value in (record.get("custom_fields") or {}).items():
        if name not in SYSTEM_PROPERTIES:
            props[name] = "" if value is None else value if isinstance(value, str) else _format_custom(value)
    for name, (prop, conv) in table.items():
        if name in record:
            props[prop] = conv.format(record[name])
    return props


def _format_custom(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, (list, tuple)):
        return _format_multi(value)
    if isinstance(value, (int, float)):
        return _format_number(value)
    return str(value)


def map_unified_contact_to_hubspot(record: Mapping[str, Any],
                                   field_mappings: Mapping[str, str] | None = None) -> dict[str, str]:
    return _to_hubspot(record, "contact", field_mappings)


def map_unified_company_to_hubspot(record: Mapping[str, Any],
                                   field_mappings: Mapping[str, str] | None = None) -> dict[str, str]:
    return _to_hubspot(record, "company", field_mappings)


def map_unified_deal_to_hubspot(record: Mapping[str, Any],
                                field_mappings: Mapping[str, str] | None = None) -> dict[str, str]:
    """`status` is not written: HubSpot derives open/won/lost from the stage."""
    return _to_hubspot(record, "deal", field_mappings)


def map_unified_task_to_hubspot(record: Mapping[str, Any],
                                field_mappings: Mapping[str, str] | None = None) -> dict[str, str]:
    return _to_hubspot(record, "task", field_mappings)


def map_unified_activity_to_hubspot(record: Mapping[str, Any],
                                    field_mappings: Mapping[str, str] | None = None) -> dict[str, str]:
    """Properties of the note/call/meeting/email named by `record["type"]`; the object type to
    write is `ACTIVITY_OBJECTS[record["type"]]`."""
    activity_type = record.get("type") or "note"
    if activity_type not in ACTIVITY_FIELDS:
        raise ValueError(f"unknown activity type {activity_type!r}; expected one of {', '.join(ACTIVITY_FIELDS)}")
    props = _to_hubspot(record, "activity", field_mappings, activity_type)
    if activity_type == "meeting" and ("occurred_at" in record or "duration_minutes" in record):
        start = parse_datetime(record.get("occurred_at"))
        minutes = record.get("duration_minutes")
        props[MEETING_TIMES[0]] = format_datetime(start) if start else ""
        props[MEETING_TIMES[1]] = (format_datetime(start + timedelta(minutes=int(minutes)))
                                   if start is not None and minutes is not None else "")
    if activity_type == "email" and not props.get("hs_email_direction") and "direction" in record:
        props["hs_email_direction"] = "EMAIL"  # required on create; outbound is the common case
    return props


def map_unified_to_hubspot(entity: str, record: Mapping[str, Any],
                           field_mappings: Mapping[str, str] | None = None) -> dict[str, str]:
    return _TO_HUBSPOT[entity](record, field_mappings)


_TO_HUBSPOT = {"contact": map_unified_contact_to_hubspot, "company": map_unified_company_to_hubspot,
               "deal": map_unified_deal_to_hubspot, "task": map_unified_task_to_hubspot,
               "activity": map_unified_activity_to_hubspot}


def object_type_for(entity: str, record: Mapping[str, Any] | None = None) -> str:
    if entity == "activity":
        return ACTIVITY_OBJECTS[(record or {}).get("type") or "note"]
    return OBJECT_TYPES[entity][0]

"""Pipedrive records <-> the unified model (`crmsync.entities`).

Pipedrive objects and unified entities:  person <-> contact, organization <-> company,
deal <-> deal, activity <-> activity (types call/meeting/email) or task (every other type).

Inbound mappers accept both wire shapes: API v2 (ints for relations, RFC 3339 times, `emails`,
`custom_fields` object) and API v1 / v1 webhooks (relation objects with `.value`, "YYYY-MM-DD
HH:MM:SS" UTC times, `email`, custom fields as top-level 40-hex keys). Outbound mappers produce v2
bodies (POST/PATCH), holding only the keys the unified dict carries, so a partial dict makes a
partial PATCH.

Association fields (`company_id`, `contact_id`, `deal_id`) carry Pipedrive ids (external ids) on
both sides; the adapter moves them in and out of `RemoteRecord.associations`.

Custom fields are keyed by the field's name (from the *Fields metadata), never by the account's
40-char hash, and their option ids are turned into option labels, so a value reads the same in
every account and survives a round trip. A few keys of `custom_fields` are ours, not Pipedrive
custom fields (`RESERVED_CUSTOM_KEYS`): the extra emails/phones of a person beyond the primary
one, and an activity's `done` flag, so nothing Pipedrive holds is lost.

`field_mappings` is the config's {unified field: Pipedrive field}; the Pipedrive side is a
standard key ("job_title"), a custom field's hash key, or a custom field's name.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from crmsync.entities import SCHEMAS, TASK_PRIORITIES
from crmsync.errors import SkipRecord

# unified entity -> Pipedrive object
OBJECT_BY_ENTITY = {"contact": "person", "company": "organization", "deal": "deal",
                    "activity": "activity", "task": "activity"}
# Pipedrive activity types that are unified activities; every other type is a task.
ACTIVITY_TYPE_KEYS = frozenset({"call", "meeting", "email"})
DEAL_STATUSES = ("open", "won", "lost")

RESERVED_CUSTOM_KEYS = {
    "person": ("emails", "phones"),
    "organization": ("address",),
    "deal": (),
    "activity": ("done",),
}

_HASH_KEY = re.compile(r"^[0-9a-f]{40}$")


class MappingError(SkipRecord, ValueError):
    """A unified value has no Pipedrive representation in this account (unknown stage, type...)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------------------------
# Account metadata the mappers need (kept JSON-serialisable so MetadataCache can hold it).
# --------------------------------------------------------------------------------------------
@dataclass
class PipedriveMetadata:
    """Field definitions per Pipedrive object, stages, pipelines and activity types of one account.

    `fields[obj]` = [{"key", "name", "field_type", "custom": bool, "options": {str(id): label}}].
    `stages` = {str(stage id): {"name", "pipeline_id"}}; `pipelines` = {str(id): name}.
    """
    fields: dict[str, list[dict]] = field(default_factory=dict)
    stages: dict[str, dict] = field(default_factory=dict)
    pipelines: dict[str, str] = field(default_factory=dict)
    activity_types: list[str] = field(default_factory=list)
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict:
        return {"fields": self.fields, "stages": self.stages, "pipelines": self.pipelines,
                "activity_types": self.activity_types}

    @classmethod
    def from_json(cls, data: Mapping) -> PipedriveMetadata:
        return cls(fields=dict(data.get("fields") or {}), stages=dict(data.get("stages") or {}),
                   pipelines=dict(data.get("pipelines") or {}),
                   activity_types=list(data.get("activity_types") or []))

    @staticmethod
    def field_from_api(raw: Mapping) -> dict:
        """One v1 `*Fields` item (or v2 `field_code`/`field_name` item) in our compact shape."""
        key = raw.get("key") or raw.get("field_code")
        custom = bool(raw.get("edit_flag", raw.get("is_custom_field"))) or bool(_HASH_KEY.match(key or ""))
        options = {str(o["id"]): o.get("label") for o in (raw.get("options") or []) if "id" in o}
        return {"key": key, "name": raw.get("name") or raw.get("field_name") or key,
                "field_type": raw.get("field_type"), "custom": custom, "options": options}

    # -- lookups ----------------------------------------------------------------------------
    def custom_fields_of(self, obj: str) -> list[dict]:
        return [f for f in self.fields.get(obj, []) if f.get("custom")]

    def field_by_key(self, obj: str, key: str) -> dict | None:
        defs = self.fields.get(obj, [])
        cached = self._index.get(obj)
        if cached is None or cached[0] is not defs:  # built once per field list (mapping is hot)
            cached = self._index[obj] = (defs, {f.get("key"): f for f in reversed(defs)})
        return cached[1].get(key)

    def custom_field_by_name(self, obj: str, name: str) -> dict | None:
        folded = name.casefold()
        for f in self.custom_fields_of(obj):
            if (f.get("name") or "").casefold() == folded:
                return f
        return None

    def has_standard_field(self, obj: str, key: str) -> bool:
        f = self.field_by_key(obj, key)
        return f is not None and not f.get("custom")

    def label_options(self, obj: str) -> dict[str, str]:
        for key in ("label_ids", "label"):
            f = self.field_by_key(obj, key)
            if f and f.get("options"):
                return f["options"]
        return {}

    def stage_id(self, stage: str, pipeline: str | None) -> tuple[int, int | None]:
        if stage.isdigit() and stage in self.stages:
            return int(stage), _int(self.stages[stage].get("pipeline_id"))
        pipeline_ids = None
        if pipeline is not None:
            pipeline_ids = {pid for pid, name in self.pipelines.items() if name == pipeline or pid == pipeline}
        for sid, s in sorted(self.stages.items(), key=lambda kv: int(kv[0])):
            if s.get("name") == stage and (pipeline_ids is None or str(s.get("pipeline_id")) in pipeline_ids):
                return int(sid), _int(s.get("pipeline_id"))
        if stage.isdigit() and not self.stages:
            return int(stage), None
        raise MappingError(f"no deal stage named {stage!r}" + (f" in pipeline {pipeline!r}" if pipeline else ""),
                           field="stage")

    def pipeline_id(self, pipeline: str) -> int:
        for pid, name in self.pipelines.items():
            if name == pipeline or pid == pipeline:
                return int(pid)
        if pipeline.isdigit():
            return int(pipeline)
        raise MappingError(f"no pipeline named {pipeline!r}", field="pipeline")


EMPTY_METADATA = PipedriveMetadata()


# --------------------------------------------------------------------------------------------
# Small value helpers
# --------------------------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, Mapping):  # v1 relation object {"value": 301, "name": ...}
        value = value.get("value", value.get("id"))
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ext_id(value: Any) -> str | None:
    number = _int(value)
    return None if number is None else str(number)


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 (v2) or "YYYY-MM-DD HH:MM:SS" UTC (v1) -> aware UTC datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, UTC)
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        # Not a time, or one outside the years 1-9999 once in UTC (9999-12-31T23:59:59-12:00).
        return None


def format_time(value: datetime) -> str:
    """Aware datetime -> RFC 3339 UTC as v2 wants it ("2025-02-14T16:40:03Z")."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        return parse_time(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    return None


def _date_and_time(due_date: Any, due_time: Any) -> datetime | None:
    if not due_date:
        return None
    try:
        day = date.fromisoformat(str(due_date)[:10])
    except ValueError:
        return None
    clock = time()
    if due_time:
        parts = str(due_time).split(":")
        try:
            clock = time(int(parts[0]), int(parts[1]) if len(parts) > 1 else 0,
                         int(parts[2]) if len(parts) > 2 else 0)
        except (ValueError, IndexError):
            clock = time()
    return datetime.combine(day, clock, UTC)


def _split_due(value: Any) -> tuple[str | None, str | None]:
    moment = _as_datetime(value)
    if moment is None:
        return None, None
    moment = moment.astimezone(UTC)
    clock = None if moment.time() == time() else moment.strftime("%H:%M")
    return moment.date().isoformat(), clock


def _duration_minutes(value: Any) -> int | None:
    if value in (None, ""):
        return None
    parts = str(value).split(":")
    try:
        hours, minutes = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None
    return hours * 60 + minutes


def _duration_text(minutes: Any) -> str | None:
    if minutes is None:
        return None
    # Pipedrive keeps a duration as a clock time: 23:59 is the longest it can hold.
    minutes = max(0, min(int(minutes), 23 * 60 + 59))
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """"Ada Lovelace Byron" -> ("Ada", "Lovelace Byron"); "Cher" -> ("Cher", None)."""
    if not name or not name.strip():
        return None, None
    first, _, last = name.strip().partition(" ")
    return first, (last.strip() or None)


def join_name(first: str | None, last: str | None) -> str | None:
    name = " ".join(p for p in (first, last) if p)
    return name or None


def _coerce(entity: str, unified_field: str, value: Any) -> Any:
    """Bring a value read from a (custom) Pipedrive field to the unified field's type."""
    if value is None:
        return None
    if isinstance(value, Mapping) and "value" in value:  # monetary/address/daterange subfields
        value = value["value"]
    declared = SCHEMAS[entity]._declared_fields.get(unified_field)
    kind = type(declared).__name__ if declared is not None else "String"
    try:
        if kind == "Float":
            return float(value)
        if kind == "Integer":
            return int(float(value))
        if kind == "AwareDateTime":
            return _as_datetime(value)
        if kind == "List":
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return [str(v) for v in value]
        if kind == "String":
            return value if isinstance(value, str) else str(value)
    except (TypeError, ValueError):
        return value
    return value


def _uncoerce(value: Any) -> Any:
    """A unified value on its way into a Pipedrive field (datetimes become RFC 3339 / dates)."""
    if isinstance(value, datetime):
        if value.astimezone(UTC).time() == time():
            return value.astimezone(UTC).date().isoformat()
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------------------------
# v1 -> v2 shape normalisation (v1 REST reads, v1 webhooks)
# --------------------------------------------------------------------------------------------
_V1_RELATIONS = ("org_id", "owner_id", "person_id", "user_id", "creator_user_id", "deal_id")


def normalize_record(obj: str, record: Mapping) -> dict:
    """Return a v2-shaped copy of a v1 or v2 record of Pipedrive object `obj`."""
    rec = dict(record)
    for key in _V1_RELATIONS:
        if isinstance(rec.get(key), Mapping):
            rec[key] = _int(rec[key])
    if obj == "deal" and "user_id" in rec and "owner_id" not in rec:
        rec["owner_id"] = _int(rec.pop("user_id"))
    if obj == "activity" and "user_id" in rec and "owner_id" not in rec:
        rec["owner_id"] = _int(rec.pop("user_id"))
    if obj == "person":
        for v1, v2 in (("email", "emails"), ("phone", "phones")):
            if v2 not in rec and v1 in rec:
                items = rec.pop(v1)
                if isinstance(items, str):
                    items = [{"value": items, "primary": True}]
                rec[v2] = list(items or [])
    if "is_deleted" not in rec:
        if "active_flag" in rec:
            rec["is_deleted"] = not rec["active_flag"]
        elif "deleted" in rec:
            rec["is_deleted"] = bool(rec["deleted"])
    if obj == "organization" and isinstance(rec.get("address"), str):
        address = {"value": rec["address"]}
        for part in ("locality", "country", "postal_code", "route", "street_number"):
            if rec.get(f"address_{part}") is not None:
                address[part] = rec[f"address_{part}"]
        rec["address"] = address
    # v1 custom fields: top-level hash keys with suffixed subfields.
    hashes = [k for k in rec if len(k) == 40 and _HASH_KEY.match(k)]
    if hashes:
        custom = dict(rec.get("custom_fields") or {})
        for key in hashes:
            value = rec.pop(key)
            subs = {s: rec.pop(f"{key}_{s}") for s in ("currency", "until") if f"{key}_{s}" in rec}
            if subs and value is not None:
                value = {"value": value, **subs}
            custom[key] = value
        rec["custom_fields"] = custom
    return rec


# --------------------------------------------------------------------------------------------
# Custom fields
# --------------------------------------------------------------------------------------------
def _decode_custom(fdef: dict | None, value: Any) -> Any:
    if fdef is None or value is None:
        return value
    options = fdef.get("options") or {}
    ftype = fdef.get("field_type")
    if ftype == "enum":
        return options.get(str(value), value)
    if ftype == "set":
        items = value.split(",") if isinstance(value, str) else value
        return [options.get(str(v).strip(), v) for v in items]
    if ftype == "double" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _encode_custom(fdef: dict, value: Any) -> Any:
    if value is None:
        return None
    options = fdef.get("options") or {}
    by_label = {label: int(oid) for oid, label in options.items()}
    ftype = fdef.get("field_type")
    if ftype == "enum":
        if value in by_label:
            return by_label[value]
        number = _int(value)
        if number is None:
            raise MappingError(f"{value!r} is not an option of {fdef.get('name')!r}", field=fdef.get("name"))
        return number
    if ftype == "set":
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            if item in by_label:
                out.append(by_label[item])
            elif _int(item) is not None:
                out.append(_int(item))
            else:
                raise MappingError(f"{item!r} is not an option of {fdef.get('name')!r}", field=fdef.get("name"))
        return out or None  # Pipedrive clears a set with null, not []
    if ftype in ("double",) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return _uncoerce(value)


def extract_pipedrive_custom_fields(record: Mapping, meta: PipedriveMetadata | None = None,
                                    obj: str = "person", *, skip_keys: set[str] | frozenset = frozenset()) -> dict:
    """The custom fields of a Pipedrive record (v1 or v2 shape), keyed by field name, with option
    ids turned into labels. Fields unknown to the metadata keep their hash key."""
    return _custom_by_name(normalize_record(obj, record), meta or EMPTY_METADATA, obj, skip_keys)


def _custom_by_name(rec: Mapping, meta: PipedriveMetadata, obj: str,
                    skip_keys: set[str] | frozenset = frozenset()) -> dict:
    out: dict[str, Any] = {}
    for key, value in (rec.get("custom_fields") or {}).items():
        if key in skip_keys:
            continue
        fdef = meta.field_by_key(obj, key)
        name = fdef["name"] if fdef else key
        if name in out or name in RESERVED_CUSTOM_KEYS.get(obj, ()):
            name = key  # two fields with one name, or a clash with our keys: fall back to the hash
        out[name] = _decode_custom(fdef, value)
    return out


def _custom_fields_body(custom: Mapping, meta: PipedriveMetadata, obj: str,
                        skip_names: set[str] = frozenset()) -> dict:
    body: dict[str, Any] = {}
    for name, value in (custom or {}).items():
        if name in RESERVED_CUSTOM_KEYS.get(obj, ()) or name in skip_names:
            continue
        fdef = meta.field_by_key(obj, name) if _HASH_KEY.match(name) else meta.custom_field_by_name(obj, name)
        if fdef is None:
            if _HASH_KEY.match(name):  # a field our metadata does not know (yet): pass it through
                body[name] = value
            continue  # a name this account has no field for (e.g. a HubSpot-only property)
        body[fdef["key"]] = _encode_custom(fdef, value)
    return body


# --------------------------------------------------------------------------------------------
# field_mappings
# --------------------------------------------------------------------------------------------
def _resolve(meta: PipedriveMetadata, obj: str, remote: str) -> tuple[str, dict | None]:
    """("custom", fdef) for a custom field (by hash key or name), ("standard", None) otherwise."""
    fdef = meta.field_by_key(obj, remote)
    if fdef is not None and fdef.get("custom"):
        return "custom", fdef
    if fdef is None:
        fdef = meta.custom_field_by_name(obj, remote)
        if fdef is not None:
            return "custom", fdef
        if _HASH_KEY.match(remote):
            return "custom", {"key": remote, "name": remote, "field_type": None, "options": {}}
    return "standard", None


def _apply_mappings_inbound(entity: str, obj: str, rec: Mapping, out: dict, meta: PipedriveMetadata,
                            field_mappings: Mapping[str, str] | None) -> None:
    for unified_field, remote in (field_mappings or {}).items():
        kind, fdef = _resolve(meta, obj, remote)
        if kind == "custom":
            raw = (rec.get("custom_fields") or {}).get(fdef["key"])
            out[unified_field] = _coerce(entity, unified_field, _decode_custom(fdef, raw))
            custom = out.get("custom_fields") or {}
            for name in (fdef["name"], fdef["key"]):
                custom.pop(name, None)
        else:
            out[unified_field] = _coerce(entity, unified_field, rec.get(remote))


def _apply_mappings_outbound(record: Mapping, obj: str, body: dict, meta: PipedriveMetadata,
                             field_mappings: Mapping[str, str] | None) -> None:
    for unified_field, remote in (field_mappings or {}).items():
        if unified_field not in record:
            continue
        value = record[unified_field]
        kind, fdef = _resolve(meta, obj, remote)
        if kind == "custom":
            body.setdefault("custom_fields", {})[fdef["key"]] = _encode_custom(fdef, value) \
                if fdef.get("field_type") else _uncoerce(value)
        else:
            body[remote] = _uncoerce(value)


def _mapped_custom_names(meta: PipedriveMetadata, obj: str, field_mappings: Mapping[str, str] | None) -> set[str]:
    names: set[str] = set()
    for remote in (field_mappings or {}).values():
        kind, fdef = _resolve(meta, obj, remote)
        if kind == "custom":
            names.update((fdef["name"], fdef["key"]))
    return names


def _finish_inbound(entity: str, obj: str, rec: dict, out: dict, meta: PipedriveMetadata,
                    field_mappings: Mapping[str, str] | None, reserved: dict) -> dict:
    custom = _custom_by_name(rec, meta, obj)
    custom.update({k: v for k, v in reserved.items() if v is not None})
    out["custom_fields"] = custom
    out["created_at"] = parse_time(rec.get("add_time"))
    out["updated_at"] = parse_time(rec.get("update_time"))
    _apply_mappings_inbound(entity, obj, rec, out, meta, field_mappings)
    return out


def _start_body(record: Mapping, obj: str, meta: PipedriveMetadata,
                field_mappings: Mapping[str, str] | None) -> dict:
    body: dict[str, Any] = {}
    if "custom_fields" in record:
        custom = _custom_fields_body(record.get("custom_fields") or {}, meta, obj,
                                     _mapped_custom_names(meta, obj, field_mappings))
        if custom:
            body["custom_fields"] = custom
    if "owner_id" in record:
        body["owner_id"] = _int(record["owner_id"])
    return body


def _optional_standard(meta: PipedriveMetadata, obj: str, key: str) -> bool:
    """Send a standard field some accounts lack (job_title, website...) only when the account's
    field list has it; without metadata, send it."""
    return not meta.fields.get(obj) or meta.has_standard_field(obj, key)


# --------------------------------------------------------------------------------------------
# person <-> contact
# --------------------------------------------------------------------------------------------
def _primary(items: list) -> tuple[str | None, list]:
    items = [dict(i) if isinstance(i, Mapping) else {"value": i} for i in (items or [])]
    items = [i for i in items if i.get("value")]
    if not items:
        return None, items
    primary = next((i for i in items if i.get("primary")), items[0])
    return primary.get("value"), items


def _extras(items: list, primary_value: str | None) -> list | None:
    """What a person's email/phone array holds beyond a plain primary "work" entry."""
    if not items:
        return None
    if len(items) == 1 and items[0].get("value") == primary_value and items[0].get("label") in (None, "work"):
        return None
    return [{"value": i.get("value"), "label": i.get("label") or "work", "primary": i.get("value") == primary_value}
            for i in items]


def _rebuild(primary: str | None, extras: Any) -> list:
    items = [dict(i) for i in extras] if isinstance(extras, list) else []
    if primary is None:
        return [i | {"primary": False} for i in items if not i.get("primary")] if items else []
    for i in items:
        if i.get("primary"):
            i["value"] = primary
            break
    else:
        items = [{"value": primary, "label": "work", "primary": True}] + [i | {"primary": False} for i in items]
    seen, out = set(), []
    for i in items:  # the primary may also have been one of the others
        if i["value"] in seen:
            continue
        seen.add(i["value"])
        out.append({"value": i["value"], "label": i.get("label") or "work", "primary": bool(i.get("primary"))})
    return out


def map_pipedrive_person_to_unified(person: Mapping, meta: PipedriveMetadata | None = None,
                                    field_mappings: Mapping[str, str] | None = None) -> dict:
    meta = meta or EMPTY_METADATA
    rec = normalize_record("person", person)
    first, last = rec.get("first_name"), rec.get("last_name")
    if first is None and last is None:
        first, last = split_name(rec.get("name"))
    email, emails = _primary(rec.get("emails"))
    if email and rec.get("name") == email and first == email:
        first, last = None, None  # our placeholder for a nameless contact (see person_placeholder_name)
    phone, phones = _primary(rec.get("phones"))
    address = rec.get("postal_address") if isinstance(rec.get("postal_address"), Mapping) else {}
    labels = meta.label_options("person")
    out = {
        "email": email, "first_name": first or None, "last_name": last or None, "phone": phone,
        "job_title": rec.get("job_title"), "notes": rec.get("notes"),
        "city": address.get("locality"), "country": address.get("country"),
        "owner_id": _ext_id(rec.get("owner_id")), "company_id": _ext_id(rec.get("org_id")),
        "tags": [labels.get(str(i), str(i)) for i in rec["label_ids"]] if rec.get("label_ids") else None,
    }
    reserved = {"emails": _extras(emails, email), "phones": _extras(phones, phone)}
    return _finish_inbound("contact", "person", rec, out, meta, field_mappings, reserved)


def person_placeholder_name(contact: Mapping) -> str:
    """Pipedrive requires a person's name; a contact known only by email (or phone) is created
    under it, and reads back with no first/last name."""
    return contact.get("email") or contact.get("phone") or "(no name)"


def map_unified_contact_to_pipedrive(contact: Mapping, meta: PipedriveMetadata | None = None,
                                     field_mappings: Mapping[str, str] | None = None) -> dict:
    meta = meta or EMPTY_METADATA
    body = _start_body(contact, "person", meta, field_mappings)
    custom = contact.get("custom_fields") or {}
    if "first_name" in contact or "last_name" in contact:
        first, last = contact.get("first_name"), contact.get("last_name")
        name = join_name(first, last)
        if "first_name" in contact and "last_name" in contact and name \
                and split_name(name) == (first or None, last or None):
            body["name"] = name  # the spec's field; Pipedrive derives the same first/last from it
        # else first/last alone (v2 accepts them, migration guide) so "Mary Ann" + "Lee" stays exact;
        # `name` would be re-split as "Mary" + "Ann Lee".
        body.update({k: contact[k] for k in ("first_name", "last_name") if k in contact})
        if not name:  # a person's name cannot be cleared
            body.pop("first_name", None)
            body.pop("last_name", None)
    if "email" in contact:
        body["emails"] = _rebuild(contact["email"], custom.get("emails"))
    if "phone" in contact:
        body["phones"] = _rebuild(contact["phone"], custom.get("phones"))
    if "company_id" in contact:
        body["org_id"] = _int(contact["company_id"])
    for key in ("job_title", "notes"):
        if key in contact and _optional_standard(meta, "person", key):
            body[key] = contact[key]
    if ("city" in contact or "country" in contact) and _optional_standard(meta, "person", "postal_address"):
        body["postal_address"] = {"locality": contact.get("city"), "country": contact.get("country")}
    if "tags" in contact:
        by_label = {label: int(i) for i, label in meta.label_options("person").items()}
        ids = []
        for tag in contact.get("tags") or []:
            if tag in by_label:
                ids.append(by_label[tag])
            elif str(tag).isdigit():
                ids.append(int(tag))
            else:
                raise MappingError(f"no person label named {tag!r}", field="tags")
        body["label_ids"] = ids
    _apply_mappings_outbound(contact, "person", body, meta, field_mappings)
    return body


# --------------------------------------------------------------------------------------------
# organization <-> company
# --------------------------------------------------------------------------------------------
# Standard organization fields some accounts have (reference §5.4), same name as unified.
_ORG_OPTIONAL = ("website", "industry", "employee_count", "annual_revenue")


def map_pipedrive_organization_to_unified(org: Mapping, meta: PipedriveMetadata | None = None,
                                          field_mappings: Mapping[str, str] | None = None) -> dict:
    meta = meta or EMPTY_METADATA
    rec = normalize_record("organization", org)
    address = rec.get("address") if isinstance(rec.get("address"), Mapping) else {}
    out = {"name": rec.get("name"), "city": address.get("locality"), "country": address.get("country"),
           "owner_id": _ext_id(rec.get("owner_id"))}
    for key in _ORG_OPTIONAL:
        out[key] = _coerce("company", key, rec.get(key))
    # The full address (street, postal code...) rides along so a city edit does not erase it.
    simple = {k: v for k, v in address.items() if v is not None}
    keep = simple and simple != {k: v for k, v in _merge_address(None, out["city"], out["country"]).items()
                                 if v is not None}
    reserved = {"address": dict(address) if keep else None}
    return _finish_inbound("company", "organization", rec, out, meta, field_mappings, reserved)


def _merge_address(original: Any, city: str | None, country: str | None) -> dict | None:
    address = {k: v for k, v in original.items() if v is not None} if isinstance(original, Mapping) else {}
    address.update(locality=city, country=country)
    if not address.get("value") or not isinstance(original, Mapping):
        address["value"] = ", ".join(p for p in (city, country) if p)
    if not address["value"] and not any(v for k, v in address.items() if k != "value"):
        return None
    return address


def map_unified_company_to_pipedrive(company: Mapping, meta: PipedriveMetadata | None = None,
                                     field_mappings: Mapping[str, str] | None = None) -> dict:
    meta = meta or EMPTY_METADATA
    body = _start_body(company, "organization", meta, field_mappings)
    if company.get("name"):
        body["name"] = company["name"]  # required, cannot be cleared
    if "city" in company or "country" in company:
        body["address"] = _merge_address(company.get("custom_fields", {}).get("address"),
                                         company.get("city"), company.get("country"))
    for key in _ORG_OPTIONAL:
        if key in company and meta.has_standard_field("organization", key):
            body[key] = company[key]
    _apply_mappings_outbound(company, "organization", body, meta, field_mappings)
    return body


# --------------------------------------------------------------------------------------------
# deal <-> deal
# --------------------------------------------------------------------------------------------
def map_pipedrive_deal_to_unified(deal: Mapping, meta: PipedriveMetadata | None = None,
                                  field_mappings: Mapping[str, str] | None = None) -> dict:
    meta = meta or EMPTY_METADATA
    rec = normalize_record("deal", deal)
    stage_id = _ext_id(rec.get("stage_id"))
    stage = meta.stages.get(stage_id) if stage_id else None
    pipeline_id = _ext_id(rec.get("pipeline_id")) or (_ext_id(stage.get("pipeline_id")) if stage else None)
    status = rec.get("status")
    out = {
        "name": rec.get("title"), "amount": _coerce("deal", "amount", rec.get("value")),
        "currency": rec.get("currency"),
        "stage": stage["name"] if stage else stage_id,
        "pipeline": meta.pipelines.get(pipeline_id, pipeline_id) if pipeline_id else None,
        "probability": _coerce("deal", "probability", rec.get("probability")),
        "close_date": _date_and_time(rec.get("expected_close_date"), None),
        "status": status if status in DEAL_STATUSES else None,
        "owner_id": _ext_id(rec.get("owner_id")),
        "company_id": _ext_id(rec.get("org_id")), "contact_id": _ext_id(rec.get("person_id")),
    }
    return _finish_inbound("deal", "deal", rec, out, meta, field_mappings, {})


def map_unified_deal_to_pipedrive(deal: Mapping, meta: PipedriveMetadata | None = None,
                                  field_mappings: Mapping[str, str] | None = None) -> dict:
    meta = meta or EMPTY_METADATA
    body = _start_body(deal, "deal", meta, field_mappings)
    if deal.get("name"):
        body["title"] = deal["name"]  # required, cannot be cleared
    if deal.get("amount") is not None:
        body["value"] = float(deal["amount"])  # Pipedrive has no empty value (it means 0)
    if deal.get("currency"):
        body["currency"] = deal["currency"]
    if deal.get("stage"):
        body["stage_id"], pipeline_id = meta.stage_id(str(deal["stage"]), deal.get("pipeline"))
        if pipeline_id is not None:
            body["pipeline_id"] = pipeline_id
    elif deal.get("pipeline"):
        body["pipeline_id"] = meta.pipeline_id(str(deal["pipeline"]))
    if "probability" in deal:
        body["probability"] = deal["probability"]
    if "close_date" in deal:
        body["expected_close_date"] = _split_due(deal["close_date"])[0]
    if deal.get("status"):
        if deal["status"] not in DEAL_STATUSES:
            raise MappingError(f"deal status {deal['status']!r} is not one of {DEAL_STATUSES}", field="status")
        body["status"] = deal["status"]
    if "company_id" in deal:
        body["org_id"] = _int(deal["company_id"])
    if "contact_id" in deal:
        body["person_id"] = _int(deal["contact_id"])
    _apply_mappings_outbound(deal, "deal", body, meta, field_mappings)
    return body


# --------------------------------------------------------------------------------------------
# activity <-> activity / task
# --------------------------------------------------------------------------------------------
def classify_pipedrive_activity(activity: Mapping) -> str:
    """"activity" for call/meeting/email types, "task" for every other type (task, deadline...)."""
    return "activity" if activity.get("type") in ACTIVITY_TYPE_KEYS else "task"


def _participant(rec: Mapping) -> str | None:
    for p in rec.get("participants") or []:
        if isinstance(p, Mapping) and (p.get("primary") or p.get("primary_flag")):
            return _ext_id(p.get("person_id"))
    return _ext_id(rec.get("person_id"))


def map_pipedrive_activity_to_unified(activity: Mapping, meta: PipedriveMetadata | None = None,
                                      field_mappings: Mapping[str, str] | None = None) -> dict:
    """A Pipedrive call/meeting/email activity as a unified activity."""
    meta = meta or EMPTY_METADATA
    rec = normalize_record("activity", activity)
    out = {
        "type": rec.get("type"), "subject": rec.get("subject"), "body": rec.get("note"),
        "occurred_at": _date_and_time(rec.get("due_date"), rec.get("due_time")),
        "duration_minutes": _duration_minutes(rec.get("duration")),
        "owner_id": _ext_id(rec.get("owner_id")), "contact_id": _participant(rec),
        "company_id": _ext_id(rec.get("org_id")), "deal_id": _ext_id(rec.get("deal_id")),
    }
    done = rec.get("done")
    reserved = {"done": bool(done) if done is not None else None}
    return _finish_inbound("activity", "activity", rec, out, meta, field_mappings, reserved)


def _priority_label(meta: PipedriveMetadata, value: Any) -> str | None:
    if value is None:
        return None
    fdef = meta.field_by_key("activity", "priority")
    label = (fdef or {}).get("options", {}).get(str(value))
    if label is None:
        return str(value)
    return label.lower() if label.lower() in TASK_PRIORITIES else label


def _priority_id(meta: PipedriveMetadata, label: str) -> int | None:
    fdef = meta.field_by_key("activity", "priority")
    for oid, text in ((fdef or {}).get("options") or {}).items():
        if (text or "").lower() == label.lower():
            return int(oid)
    return _int(label)


def map_pipedrive_activity_to_unified_task(activity: Mapping, meta: PipedriveMetadata | None = None,
                                           field_mappings: Mapping[str, str] | None = None) -> dict:
    """A Pipedrive activity of a to-do type (task, deadline, ...) as a unified task."""
    meta = meta or EMPTY_METADATA
    rec = normalize_record("activity", activity)
    out = {
        "title": rec.get("subject"), "body": rec.get("note"),
        "due_date": _date_and_time(rec.get("due_date"), rec.get("due_time")),
        "status": "completed" if rec.get("done") else "not_started",
        "priority": _priority_label(meta, rec.get("priority")),
        "task_type": rec.get("type"),
        "owner_id": _ext_id(rec.get("owner_id")), "contact_id": _participant(rec),
        "company_id": _ext_id(rec.get("org_id")), "deal_id": _ext_id(rec.get("deal_id")),
    }
    return _finish_inbound("task", "activity", rec, out, meta, field_mappings, {})


def _activity_links(record: Mapping, body: dict) -> None:
    if "contact_id" in record:
        person = _int(record["contact_id"])
        # v2 reads person_id but sets it only through the primary participant (reference §5.4).
        body["participants"] = [{"person_id": person, "primary": True}] if person is not None else []
    if "company_id" in record:
        body["org_id"] = _int(record["company_id"])
    if "deal_id" in record:
        body["deal_id"] = _int(record["deal_id"])


def map_unified_activity_to_pipedrive(activity: Mapping, meta: PipedriveMetadata | None = None,
                                      field_mappings: Mapping[str, str] | None = None) -> dict:
    meta = meta or EMPTY_METADATA
    body = _start_body(activity, "activity", meta, field_mappings)
    if "type" in activity:
        kind = activity["type"]
        if kind not in ACTIVITY_TYPE_KEYS and kind not in meta.activity_types:
            raise MappingError(f"Pipedrive has no activity type {kind!r}", field="type")
        body["type"] = kind
    if activity.get("subject"):
        body["subject"] = activity["subject"]  # an empty subject is refused; Pipedrive names it by type
    if "body" in activity:
        body["note"] = activity["body"]
    if "occurred_at" in activity:
        body["due_date"], body["due_time"] = _split_due(activity["occurred_at"])
    if "duration_minutes" in activity:
        body["duration"] = _duration_text(activity["duration_minutes"])
    custom = activity.get("custom_fields") or {}
    if custom.get("done") is not None:
        body["done"] = bool(custom["done"])
    _activity_links(activity, body)
    _apply_mappings_outbound(activity, "activity", body, meta, field_mappings)
    return body


def map_unified_task_to_pipedrive(task: Mapping, meta: PipedriveMetadata | None = None,
                                  field_mappings: Mapping[str, str] | None = None) -> dict:
    meta = meta or EMPTY_METADATA
    body = _start_body(task, "activity", meta, field_mappings)
    if "task_type" in task or "title" in task:
        kind = task.get("task_type") or "task"
        if kind in ACTIVITY_TYPE_KEYS:
            raise MappingError(f"activity type {kind!r} is an activity, not a task", field="task_type")
        body["type"] = kind
    if task.get("title"):
        body["subject"] = task["title"]
    if "body" in task:
        body["note"] = task["body"]
    if "due_date" in task:
        body["due_date"], body["due_time"] = _split_due(task["due_date"])
    if "status" in task and task["status"] is not None:
        body["done"] = task["status"] == "completed"
    if task.get("priority"):
        priority = _priority_id(meta, str(task["priority"]))
        if priority is not None:
            body["priority"] = priority
    _activity_links(task, body)
    _apply_mappings_outbound(task, "activity", body, meta, field_mappings)
    return body


# --------------------------------------------------------------------------------------------
# Dispatch by unified entity
# --------------------------------------------------------------------------------------------
TO_UNIFIED = {
    "contact": map_pipedrive_person_to_unified,
    "company": map_pipedrive_organization_to_unified,
    "deal": map_pipedrive_deal_to_unified,
    "activity": map_pipedrive_activity_to_unified,
    "task": map_pipedrive_activity_to_unified_task,
}
TO_PIPEDRIVE = {
    "contact": map_unified_contact_to_pipedrive,
    "company": map_unified_company_to_pipedrive,
    "deal": map_unified_deal_to_pipedrive,
    "activity": map_unified_activity_to_pipedrive,
    "task": map_unified_task_to_pipedrive,
}


def mappings_for(entity: str, field_mappings: Mapping[str, str] | None) -> dict[str, str]:
    """The config's field_mappings that concern `entity`: a key is a unified field ("description",
    for every entity that has one) or an entity-qualified one ("deal.description"), which wins."""
    known = set(SCHEMAS[entity]._declared_fields) - {"id", "tenant_id", "custom_fields", "created_at",
                                                     "updated_at", "deleted_at"}
    out: dict[str, str] = {}
    for key, remote in (field_mappings or {}).items():
        qualifier, _, name = key.rpartition(".")
        if (qualifier and qualifier != entity) or name not in known:
            continue
        if not qualifier and f"{entity}.{name}" in field_mappings:
            continue
        out[name] = remote
    return out


def to_unified(entity: str, record: Mapping, meta: PipedriveMetadata | None = None,
               field_mappings: Mapping[str, str] | None = None) -> dict:
    """`record` (v1 or v2 shape) as a unified `entity`; `field_mappings` as the config holds them."""
    return TO_UNIFIED[entity](record, meta, mappings_for(entity, field_mappings))


def to_pipedrive(entity: str, record: Mapping, meta: PipedriveMetadata | None = None,
                 field_mappings: Mapping[str, str] | None = None) -> dict:
    return TO_PIPEDRIVE[entity](record, meta, mappings_for(entity, field_mappings))

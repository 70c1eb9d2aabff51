"""Field definitions (what ``/v1/personFields`` & co. list) and v2 custom-field value rules.

Custom fields are keyed by 40-character hex hashes that differ per company account, as on Pipedrive;
we derive them from the company id and the field's name so one sandbox account keeps stable keys.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .errors import BadRequest
from .timefmt import check_clock_time, check_date, v1_time


def custom_field_key(company_id: int, entity: str, name: str) -> str:
    return hashlib.sha1(f"{company_id}:{entity}:{name}".encode()).hexdigest()


@dataclass
class FieldDef:
    id: int
    key: str
    name: str
    field_type: str
    order_nr: int
    custom: bool = False
    mandatory: bool = False
    options: list[dict] | None = None  # [{"id": 31, "label": "Gold"}]
    add_ts: int = 0

    def v1(self) -> dict:
        t = v1_time(self.add_ts)
        return {
            "id": self.id, "key": self.key, "name": self.name, "order_nr": self.order_nr,
            "field_type": self.field_type, "add_time": t, "update_time": t,
            "last_updated_by_user_id": 1, "created_by_user_id": 1, "active_flag": True,
            "edit_flag": self.custom, "index_visible_flag": True, "details_visible_flag": True,
            "add_visible_flag": True, "important_flag": False, "bulk_edit_allowed": True,
            "searchable_flag": self.field_type in ("varchar", "text", "phone"),
            "filtering_allowed": True, "sortable_flag": True, "mandatory_flag": self.mandatory,
            "options": [dict(o) for o in self.options] if self.options is not None else None,
        }


# Standard fields per entity: (key, name, field_type). Enough of Pipedrive's own list for a client to
# resolve keys by name; the real lists are longer.
STANDARD_FIELDS: dict[str, list[tuple[str, str, str]]] = {
    "person": [("name", "Name", "varchar"), ("first_name", "First name", "varchar"),
               ("last_name", "Last name", "varchar"), ("org_id", "Organization", "org"),
               ("email", "Email", "varchar"), ("phone", "Phone", "phone"),
               ("owner_id", "Owner", "user"), ("label_ids", "Labels", "set"),
               ("visible_to", "Visible to", "visible_to"), ("add_time", "Person created", "date"),
               ("update_time", "Update time", "date")],
    "organization": [("name", "Name", "varchar"), ("address", "Address", "address"),
                     ("owner_id", "Owner", "user"), ("label_ids", "Labels", "set"),
                     ("visible_to", "Visible to", "visible_to"),
                     ("add_time", "Organization created", "date"), ("update_time", "Update time", "date")],
    "deal": [("title", "Title", "varchar"), ("value", "Value", "monetary"),
             ("currency", "Currency", "varchar"), ("person_id", "Contact person", "people"),
             ("org_id", "Organization", "org"), ("pipeline_id", "Pipeline", "double"),
             ("stage_id", "Stage", "double"), ("status", "Status", "enum"),
             ("owner_id", "Owner", "user"), ("expected_close_date", "Expected close date", "date"),
             ("probability", "Probability", "double"), ("lost_reason", "Lost reason", "varchar"),
             ("visible_to", "Visible to", "visible_to"), ("add_time", "Deal created", "date"),
             ("update_time", "Update time", "date")],
    "activity": [("subject", "Subject", "varchar"), ("type", "Type", "enum"),
                 ("due_date", "Due date", "date"), ("due_time", "Due time", "time"),
                 ("duration", "Duration", "time"), ("done", "Done", "enum"),
                 ("owner_id", "Assigned to user", "user"), ("deal_id", "Deal", "double"),
                 ("person_id", "Contact person", "people"), ("org_id", "Organization", "org"),
                 ("note", "Note", "text"), ("add_time", "Add time", "date"),
                 ("update_time", "Update time", "date")],
}
# What POST /v1/personFields (and organizationFields, dealFields) accepts as `field_type`.
CREATABLE_FIELD_TYPES = ("address", "date", "daterange", "double", "enum", "monetary", "org", "people", "phone",
                         "set", "text", "time", "timerange", "user", "varchar", "varchar_auto", "visible_to")
MANDATORY = {"person": {"name"}, "organization": {"name"}, "deal": {"title"}, "activity": {"subject"}}

# Custom fields every generated account has: (entity, name, field_type, option labels).
CUSTOM_FIELDS: list[tuple[str, str, str, list[str] | None]] = [
    ("person", "Tier", "enum", ["Gold", "Silver", "Bronze"]),
    ("person", "Lead score", "double", None),
    ("person", "LinkedIn profile", "varchar", None),
    ("person", "Interests", "set", ["Analytics", "Integrations", "Mobile", "Security"]),
    ("organization", "Industry", "enum", ["Software", "Retail", "Manufacturing", "Finance", "Healthcare"]),
    ("organization", "Employee count", "double", None),
    ("organization", "Website", "varchar", None),
    ("deal", "Contract value", "monetary", None),
    ("deal", "Lead source", "enum", ["Website", "Referral", "Event", "Outbound"]),
    ("deal", "Renewal date", "date", None),
]


@dataclass
class FieldCatalog:
    """Every field of every entity for one company account."""

    company_id: int
    by_entity: dict[str, list[FieldDef]] = field(default_factory=dict)

    @classmethod
    def build(cls, company_id: int, add_ts: int) -> FieldCatalog:
        catalog = cls(company_id)
        next_id, next_option = 1, 1
        for entity, standard in STANDARD_FIELDS.items():
            defs = []
            for order, (key, name, ftype) in enumerate(standard):
                defs.append(FieldDef(next_id, key, name, ftype, order, mandatory=key in MANDATORY[entity],
                                     add_ts=add_ts))
                next_id += 1
            for c_entity, name, ftype, labels in CUSTOM_FIELDS:
                if c_entity != entity:
                    continue
                options = None
                if labels is not None:
                    options = []
                    for label in labels:
                        options.append({"id": next_option, "label": label})
                        next_option += 1
                defs.append(FieldDef(next_id, custom_field_key(company_id, entity, name), name, ftype,
                                     len(defs), custom=True, options=options, add_ts=add_ts))
                next_id += 1
            catalog.by_entity[entity] = defs
        return catalog

    def add(self, entity: str, name: str, field_type: str, labels: list[str] | None, add_ts: int) -> FieldDef:
        """A custom field added through the API: a new key even for a name already taken (as on
        Pipedrive, where names need not be unique)."""
        every = [f for defs in self.by_entity.values() for f in defs]
        next_id = max((f.id for f in every), default=0) + 1
        next_option = max((o["id"] for f in every for o in (f.options or [])), default=0) + 1
        options = [{"id": next_option + i, "label": label} for i, label in enumerate(labels)] if labels else None
        defs = self.by_entity.setdefault(entity, [])
        fdef = FieldDef(next_id, custom_field_key(self.company_id, entity, f"{name}#{next_id}"), name, field_type,
                        len(defs), custom=True, options=options, add_ts=add_ts)
        defs.append(fdef)
        return fdef

    def custom(self, entity: str) -> list[FieldDef]:
        return [f for f in self.by_entity.get(entity, []) if f.custom]

    def custom_by_key(self, entity: str) -> dict[str, FieldDef]:
        return {f.key: f for f in self.custom(entity)}

    def key_for(self, entity: str, name: str) -> str:
        for f in self.custom(entity):
            if f.name == name:
                return f.key
        raise KeyError(f"{entity} has no custom field named {name!r}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_custom_value(fdef: FieldDef, value, *, valid_ids: set | None = None):
    """Check one v2 custom-field value (docs/pipedrive.md §5.5) and return it normalised; ``None`` clears."""
    if value is None:
        return None
    t, where = fdef.field_type, f"custom field {fdef.key}"
    if t in ("varchar", "varchar_auto", "text", "phone"):
        if not isinstance(value, str):
            raise BadRequest(f"Invalid value for {where}: expected a string")
        if t == "varchar" and len(value) > 255:
            raise BadRequest(f"Invalid value for {where}: longer than 255 characters")
        return value
    if t in ("double", "user", "org", "people"):
        if not _is_number(value) or (t != "double" and not isinstance(value, int)):
            raise BadRequest(f"Invalid value for {where}: expected a number")
        return value
    if t == "monetary":
        if not isinstance(value, dict) or not _is_number(value.get("value")) or not isinstance(
                value.get("currency"), str):
            raise BadRequest(f"Invalid value for {where}: expected {{\"value\": number, \"currency\": str}}")
        return {"value": value["value"], "currency": value["currency"]}
    option_ids = {o["id"] for o in fdef.options or []}
    if t == "enum":
        if not isinstance(value, int) or isinstance(value, bool) or value not in option_ids:
            raise BadRequest(f"Invalid value for {where}: expected one of the option ids {sorted(option_ids)}")
        return value
    if t == "set":
        if not isinstance(value, list) or not value or any(
                not isinstance(v, int) or isinstance(v, bool) or v not in option_ids for v in value):
            raise BadRequest(f"Invalid value for {where}: expected a non-empty list of option ids "
                             f"{sorted(option_ids)} (clear with null)")
        return list(value)
    if t == "date":
        return check_date(value, where)
    if t == "daterange":
        if not isinstance(value, dict):
            raise BadRequest(f"Invalid value for {where}: expected {{\"value\", \"until\"}}")
        return {"value": check_date(value.get("value"), where), "until": check_date(value.get("until"), where)}
    if t in ("time", "timerange"):
        if not isinstance(value, dict):
            raise BadRequest(f"Invalid value for {where}: expected an object with value")
        out = {"value": check_clock_time(value.get("value"), where),
               "timezone_name": value.get("timezone_name")}
        if t == "timerange":
            out["until"] = check_clock_time(value.get("until"), where)
        return out
    if t == "address":
        if not isinstance(value, dict) or not isinstance(value.get("value"), str):
            raise BadRequest(f"Invalid value for {where}: expected an object with a string value")
        return {k: value.get(k) for k in ADDRESS_PARTS}
    return value


ADDRESS_PARTS = ("value", "country", "admin_area_level_1", "admin_area_level_2", "locality", "sublocality",
                 "route", "street_number", "postal_code")

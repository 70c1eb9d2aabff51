"""What a rule may refer to: each trigger declares the variables it provides, with a kind, so
a rule naming anything else is refused when it is saved rather than failing when it runs."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from marshmallow import fields as mfields

TEXT, NUMBER, DATETIME, LIST, ANY = "text", "number", "datetime", "list", "any"
ENTITY_KINDS = ("contact", "company", "deal", "activity", "task")


def _kind_of(field: mfields.Field) -> str:
    from marshmallow import fields as mfields
    if isinstance(field, (mfields.DateTime, mfields.Date)):
        return DATETIME
    if isinstance(field, mfields.Number):
        return NUMBER
    if isinstance(field, mfields.List):
        return LIST
    if isinstance(field, mfields.Dict):
        return ANY
    return TEXT


@cache
def _entity_fields() -> dict[str, dict[str, str]]:
    """entity -> field -> kind, from the unified schemas (the columns rules can read and write).
    Built on first use: the record-change trigger (`triggers`, imported by every sync that changes
    a record) needs none of it, nor the marshmallow schemas it is read from."""
    from crmsync.entities import SCHEMAS
    return {entity: {name: _kind_of(f) for name, f in schema._declared_fields.items() if name != "tenant_id"}
            for entity, schema in SCHEMAS.items()}


def __getattr__(name: str):
    if name == "ENTITY_FIELDS":    # `from crmsync.automation.variables import ENTITY_FIELDS`, as before
        return _entity_fields()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class TriggerSpec:
    name: str
    source: str                     # "product" (POST /events) or "record" (syncs, webhooks, rules)
    variables: dict[str, str]       # name -> kind (TEXT, NUMBER, ... or an entity name)
    entity: str | None = None       # the record kind a record trigger fires on
    description: str = ""


def resolve_kind(path: str, variables: dict[str, str]) -> str:
    """The kind of a dotted path such as `deal.stage`, or ValueError naming what is unknown."""
    parts = path.split(".")
    if any(not p for p in parts):
        raise ValueError(f"malformed path {path!r}")
    root, rest = parts[0], parts[1:]
    if root not in variables:
        raise ValueError(f"unknown variable {root!r}; this trigger provides: {', '.join(sorted(variables))}")
    kind = variables[root]
    if kind == ANY:
        return ANY
    if kind in ENTITY_KINDS:
        if not rest:
            return kind
        fields = _entity_fields()[kind]
        if rest[0] not in fields:
            raise ValueError(f"{root} has no field {rest[0]!r}")
        field_kind = fields[rest[0]]
        if len(rest) > 1 and field_kind != ANY:
            raise ValueError(f"{root}.{rest[0]} has no sub-fields")
        return field_kind
    if rest:
        raise ValueError(f"{root} has no sub-fields")
    return kind

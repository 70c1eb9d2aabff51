"""The v2 search of persons, organizations and deals: ``GET /api/v2/{persons|organizations|deals}/search``
(the official v2 spec's searchPersons, searchOrganization and searchDeals; x-token-cost 20).

What is searched (``fields``, comma-separated, default all): persons ``name``, ``email``, ``phone``,
``notes``, ``custom_fields``; organizations ``name``, ``address``, ``notes``, ``custom_fields``; deals
``title``, ``notes``, ``custom_fields``. Custom fields count only for the types the spec calls searchable
(address, varchar, text, varchar_auto, double, monetary, phone). The sandbox keeps no notes, so ``notes``
matches nothing and every item's ``notes`` is ``[]``. Deleted records are never found; archived deals are.

Behaviour choices where the real API is undocumented: matching is case-insensitive, a substring match
unless ``exact_match=true`` (then the whole value must equal the term); ``result_score`` is the share of
the best-matching value the term covers (1.0 for a whole-value match); results come by score, then id,
and the opaque cursor is a keyset position in that order, encoded like the list endpoints' cursors.
Changes are searchable at once (the real search index may lag). An item's ``custom_fields`` lists the
custom-field values the term matched, as strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .fields import FieldDef

if TYPE_CHECKING:
    from .state import PipedriveState

SEARCH_FIELDS = {"person": ("custom_fields", "email", "notes", "phone", "name"),
                 "organization": ("address", "custom_fields", "notes", "name"),
                 "deal": ("custom_fields", "notes", "title")}
SEARCHABLE_CUSTOM_TYPES = ("address", "varchar", "text", "varchar_auto", "double", "monetary", "phone")
INCLUDE_FIELDS = {"person": ("person.picture",), "organization": (), "deal": ("deal.cc_email",)}
# query parameter -> row key of the id filters each search offers
ID_FILTERS = {"person": {"organization_id": "org_id"}, "organization": {},
              "deal": {"person_id": "person_id", "organization_id": "org_id"}}
DEAL_STATUSES = ("open", "won", "lost")
SORT_KEY = "result_score"  # the cursor's "field": results run by score (descending), then id


@dataclass
class SearchQuery:
    term: str
    fields: tuple[str, ...]
    exact: bool = False
    limit: int = 100
    after: tuple | None = None        # cursor position (result_score, id)
    equals: dict | None = None        # row key -> required value (org_id, person_id)
    status: str | None = None         # deals: open/won/lost
    include: frozenset = frozenset()  # include_fields


def _number_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _custom_text(fdef: FieldDef, value) -> str | None:
    """A custom-field value as the text search sees, or None when the field type is not searchable."""
    if value is None or fdef.field_type not in SEARCHABLE_CUSTOM_TYPES:
        return None
    if fdef.field_type == "address":
        return value.get("value") if isinstance(value, dict) else None
    if fdef.field_type == "monetary":
        return _number_text(value["value"]) if isinstance(value, dict) else None
    if fdef.field_type == "double":
        return _number_text(value)
    return value if isinstance(value, str) else None


def _texts(row: dict, field: str, custom: list[FieldDef]) -> list[str]:
    """The values one search field covers in ``row``."""
    if field in ("name", "title"):
        return [row[field]] if row.get(field) else []
    if field == "email":
        return [e["value"] for e in row.get("emails") or []]
    if field == "phone":
        return [p["value"] for p in row.get("phones") or []]
    if field == "address":
        value = (row.get("address") or {}).get("value")
        return [value] if value else []
    if field == "custom_fields":
        values = row.get("custom_fields") or {}
        return [t for t in (_custom_text(f, values.get(f.key)) for f in custom) if t]
    return []  # notes: the sandbox keeps none


def _score(term: str, text: str, exact: bool) -> float | None:
    folded = text.casefold()
    if exact:
        return 1.0 if folded == term else None
    if term not in folded:
        return None
    return round(len(term) / len(folded), 4)


def _match(row: dict, q: SearchQuery, term: str, custom: list[FieldDef]) -> tuple[float, list[str]] | None:
    """(result_score, matched custom-field values) of a row the query finds, else None."""
    best = None
    matched_custom: list[str] = []
    for field in q.fields:
        for text in _texts(row, field, custom):
            score = _score(term, text, q.exact)
            if score is None:
                continue
            if field == "custom_fields":
                matched_custom.append(text)
            if best is None or score > best:
                best = score
    return None if best is None else (best, matched_custom)


def _ref(row: dict | None, with_address: bool = False) -> dict | None:
    if row is None:
        return None
    ref = {"id": row["id"], "name": row["name"]}
    if with_address:  # the spec's person example carries the organization's address
        ref["address"] = (row.get("address") or {}).get("value")
    return ref


def _item(state: PipedriveState, entity: str, row: dict, matched_custom: list[str], include: frozenset) -> dict:
    owner = {"id": row["owner_id"]}
    if entity == "person":
        org = state.tables["organization"].rows.get(row["org_id"]) if row["org_id"] is not None else None
        item = {"id": row["id"], "type": "person", "name": row["name"],
                "phones": [p["value"] for p in row["phones"]], "emails": [e["value"] for e in row["emails"]],
                "visible_to": row["visible_to"], "owner": owner, "organization": _ref(org, with_address=True),
                "custom_fields": matched_custom, "notes": []}
        if "person.picture" in include:
            item["picture"] = None  # the sandbox stores no pictures (picture_id is always null)
        return item
    if entity == "organization":
        return {"id": row["id"], "type": "organization", "name": row["name"],
                "address": (row.get("address") or {}).get("value"), "visible_to": row["visible_to"],
                "owner": owner, "custom_fields": matched_custom, "notes": []}
    person = state.tables["person"].rows.get(row["person_id"]) if row["person_id"] is not None else None
    org = state.tables["organization"].rows.get(row["org_id"]) if row["org_id"] is not None else None
    stage = state.stages.get(row["stage_id"])
    value = row["value"]
    item = {"id": row["id"], "type": "deal", "title": row["title"],
            "value": int(value) if isinstance(value, float) and value.is_integer() else value,
            "currency": row["currency"], "status": row["status"], "visible_to": row["visible_to"], "owner": owner,
            "stage": {"id": stage["id"], "name": stage["name"]} if stage else None,
            "person": _ref(person), "organization": _ref(org), "custom_fields": matched_custom, "notes": [],
            "is_archived": row["is_archived"]}
    if "deal.cc_email" in include:
        item["cc_email"] = f"{state.company['domain']}+deal{row['id']}@pipedrivemail.com"
    return item


def search(state: PipedriveState, entity: str, q: SearchQuery) -> tuple[list[dict], tuple | None]:
    """One page of ``{"result_score", "item"}`` hits and the (score, id) key of the last one when more
    follow (None at the end)."""
    term = q.term.casefold()
    with state.lock:
        custom = state.fields.custom(entity)
        hits = []
        for row in state.tables[entity].rows.values():
            if row["is_deleted"]:
                continue
            if q.equals and any(row.get(k) != v for k, v in q.equals.items()):
                continue
            if q.status is not None and row["status"] != q.status:
                continue
            found = _match(row, q, term, custom)
            if found is None:
                continue
            score, matched_custom = found
            if q.after is not None and (score, -row["id"]) >= (q.after[0], -q.after[1]):
                continue  # at or before the cursor position
            hits.append((score, row, matched_custom))
        hits.sort(key=lambda h: (-h[0], h[1]["id"]))
        page = hits[:q.limit]
        items = [{"result_score": score, "item": _item(state, entity, row, matched_custom, q.include)}
                 for score, row, matched_custom in page]
    last = (page[-1][0], page[-1][1]["id"]) if len(hits) > q.limit else None
    return items, last

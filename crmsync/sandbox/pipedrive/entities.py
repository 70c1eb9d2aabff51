"""Write rules of the four v2 entities: which body keys each accepts, their strict types, defaults and
derived fields (docs/pipedrive.md §5.4-5.5). v2 validates strictly: booleans must be true/false, numbers must be
numbers, so a wrong type is a 400, never a silent coercion.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import BadRequest
from .fields import ADDRESS_PARTS, validate_custom_value
from .timefmt import check_clock_time, check_date, parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from .state import PipedriveState

ENTITIES = ("person", "organization", "deal", "activity")
PLURAL = {"person": "persons", "organization": "organizations", "deal": "deals", "activity": "activities"}
SINGULAR = {v: k for k, v in PLURAL.items()}
VISIBLE_TO = (1, 3, 5, 7)
EMAIL_LABELS = ("work", "home", "other")
PHONE_LABELS = ("work", "home", "mobile", "other")


def _int(body: dict, key: str, nullable: bool = True):
    v = body[key]
    if v is None and nullable:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRequest(f"Invalid value for {key}: expected an integer")
    return v


def _num(body: dict, key: str, nullable: bool = True):
    v = body[key]
    if v is None and nullable:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise BadRequest(f"Invalid value for {key}: expected a number")
    return v


def _str(body: dict, key: str, nullable: bool = True, empty: bool = True):
    v = body[key]
    if v is None and nullable:
        return None
    if not isinstance(v, str) or (not empty and not v.strip()):
        raise BadRequest(f"Invalid value for {key}: expected a {'non-empty ' if not empty else ''}string")
    return v


def _bool(body: dict, key: str):
    v = body[key]
    if not isinstance(v, bool):
        raise BadRequest(f"Invalid value for {key}: expected true or false")
    return v


def _int_list(body: dict, key: str):
    v = body[key]
    if v is None:
        return []
    if not isinstance(v, list) or any(not isinstance(i, int) or isinstance(i, bool) for i in v):
        raise BadRequest(f"Invalid value for {key}: expected an array of integers")
    return list(v)


def _contact_points(body: dict, key: str, labels: tuple) -> list[dict]:
    """emails/phones: objects with ``value``; label defaults to work; exactly one primary (the first if
    none is marked; more than one marked is a 400)."""
    v = body[key]
    if v is None:
        return []
    if not isinstance(v, list):
        raise BadRequest(f"Invalid value for {key}: expected an array of objects")
    out = []
    for item in v:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise BadRequest(f"Invalid value for {key}: every item needs a string value")
        label = item.get("label", "work")
        if label is None:
            label = "work"
        if not isinstance(label, str) or label not in labels:
            raise BadRequest(f"Invalid value for {key}.label: expected one of {', '.join(labels)}")
        primary = item.get("primary", False)
        if not isinstance(primary, bool):
            raise BadRequest(f"Invalid value for {key}.primary: expected true or false")
        out.append({"value": item["value"], "primary": primary, "label": label})
    primaries = sum(1 for i in out if i["primary"])
    if primaries > 1:
        raise BadRequest(f"Invalid value for {key}: only one item can be primary")
    if out and primaries == 0:
        out[0]["primary"] = True
    return out


def _address(body: dict, key: str):
    v = body[key]
    if v is None:
        return None
    if isinstance(v, str):
        v = {"value": v}
    if not isinstance(v, dict) or not isinstance(v.get("value"), str):
        raise BadRequest(f"Invalid value for {key}: expected an object with a string value")
    return {k: v.get(k) for k in ADDRESS_PARTS}


def _visible_to(body: dict):
    v = _int(body, "visible_to", nullable=False)
    if v not in VISIBLE_TO:
        raise BadRequest("Invalid value for visible_to: expected one of 1, 3, 5, 7")
    return v


def _custom_fields(state: PipedriveState, entity: str, body: dict, current: dict | None) -> dict:
    v = body["custom_fields"]
    if not isinstance(v, dict):
        raise BadRequest("Invalid value for custom_fields: expected an object")
    defs = state.fields.custom_by_key(entity)
    merged = dict(current.get("custom_fields") or {}) if current else dict.fromkeys(defs)
    for key, value in v.items():
        fdef = defs.get(key)
        if fdef is None:  # Pipedrive ignores keys of unknown/deleted custom fields
            continue
        merged[key] = validate_custom_value(fdef, value)
    return merged


def _check_ref(state: PipedriveState, entity: str, key: str, value) -> None:
    if value is None:
        return
    row = state.tables[entity].rows.get(value)
    if row is None or row.get("is_deleted"):
        raise BadRequest(f"{entity.capitalize()} with id {value} not found ({key})")


def _check_user(state: PipedriveState, key: str, value) -> None:
    if value is not None and value not in state.users_by_id:
        raise BadRequest(f"User with id {value} not found ({key})")


def _reject_unknown(body: dict, allowed: set, entity: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"Unknown field(s) for {entity}: {', '.join(unknown)}")


def split_name(name: str) -> tuple[str, str]:
    first, _, last = name.strip().partition(" ")
    return first, last.strip()


PERSON_KEYS = {"name", "first_name", "last_name", "owner_id", "org_id", "emails", "phones", "visible_to",
               "label_ids", "custom_fields", "add_time", "update_time", "marketing_status"}
ORG_KEYS = {"name", "owner_id", "address", "visible_to", "label_ids", "custom_fields", "add_time", "update_time"}
DEAL_KEYS = {"title", "owner_id", "person_id", "org_id", "pipeline_id", "stage_id", "value", "currency",
             "is_deleted", "is_archived", "archive_time", "status", "probability", "lost_reason",
             "visible_to", "close_time", "won_time", "lost_time", "expected_close_date", "label_ids",
             "custom_fields", "add_time"}
ACTIVITY_KEYS = {"subject", "type", "owner_id", "deal_id", "lead_id", "person_id", "org_id", "project_id",
                 "due_date", "due_time", "duration", "busy", "done", "location", "participants", "attendees",
                 "public_description", "priority", "note"}


def build_row(state: PipedriveState, entity: str, body: dict, current: dict | None, user_id: int,
              now: int) -> tuple[dict, int | None]:
    """Validate ``body`` (POST when ``current`` is None, else PATCH) and return the new row plus an
    explicit ``add_time`` from the body, if any. The caller stamps id and times."""
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    builder = {"person": _person, "organization": _organization, "deal": _deal, "activity": _activity}[entity]
    return builder(state, body, current, user_id, now)


def _add_time(body: dict, current: dict | None) -> int | None:
    if "add_time" not in body or body["add_time"] is None:
        return None
    if current is not None:
        raise BadRequest("add_time can only be set when the record is created")
    return parse_rfc3339(_str(body, "add_time", nullable=False), "add_time")


def _person(state, body, current, user_id, now):
    _reject_unknown(body, PERSON_KEYS, "person")
    row = dict(current) if current else {
        "id": 0, "name": None, "first_name": None, "last_name": None, "owner_id": user_id, "org_id": None,
        "add_time": None, "update_time": None, "emails": [], "phones": [], "is_deleted": False,
        "visible_to": 3, "label_ids": [], "picture_id": None,
        "custom_fields": {f.key: None for f in state.fields.custom("person")}}
    if "name" in body:
        row["name"] = _str(body, "name", nullable=False, empty=False).strip()
        row["first_name"], row["last_name"] = split_name(row["name"])
    elif "first_name" in body or "last_name" in body:
        first = _str(body, "first_name", empty=False) if "first_name" in body else row["first_name"]
        last = _str(body, "last_name") if "last_name" in body else row["last_name"]
        if not first and not last:
            raise BadRequest("A person needs a name or a first_name and last_name")
        row["first_name"], row["last_name"] = first, last
        row["name"] = " ".join(p for p in (first, last) if p)
    if current is None and not row["name"]:
        raise BadRequest("Name is required")
    if "owner_id" in body:
        row["owner_id"] = _int(body, "owner_id", nullable=False)
        _check_user(state, "owner_id", row["owner_id"])
    if "org_id" in body:
        row["org_id"] = _int(body, "org_id")
        _check_ref(state, "organization", "org_id", row["org_id"])
    if "emails" in body:
        row["emails"] = _contact_points(body, "emails", EMAIL_LABELS)
    if "phones" in body:
        row["phones"] = _contact_points(body, "phones", PHONE_LABELS)
    if "visible_to" in body:
        row["visible_to"] = _visible_to(body)
    if "label_ids" in body:
        row["label_ids"] = _int_list(body, "label_ids")
    if "custom_fields" in body:
        row["custom_fields"] = _custom_fields(state, "person", body, current)
    return row, _add_time(body, current)


def _organization(state, body, current, user_id, now):
    _reject_unknown(body, ORG_KEYS, "organization")
    row = dict(current) if current else {
        "id": 0, "name": None, "owner_id": user_id, "add_time": None, "update_time": None,
        "is_deleted": False, "visible_to": 3, "address": None, "label_ids": [],
        "custom_fields": {f.key: None for f in state.fields.custom("organization")}}
    if "name" in body:
        row["name"] = _str(body, "name", nullable=False, empty=False).strip()
    if current is None and not row["name"]:
        raise BadRequest("Name is required")
    if "owner_id" in body:
        row["owner_id"] = _int(body, "owner_id", nullable=False)
        _check_user(state, "owner_id", row["owner_id"])
    if "address" in body:
        row["address"] = _address(body, "address")
    if "visible_to" in body:
        row["visible_to"] = _visible_to(body)
    if "label_ids" in body:
        row["label_ids"] = _int_list(body, "label_ids")
    if "custom_fields" in body:
        row["custom_fields"] = _custom_fields(state, "organization", body, current)
    return row, _add_time(body, current)


DEAL_STATUSES = ("open", "won", "lost")


def _deal(state, body, current, user_id, now):
    _reject_unknown(body, DEAL_KEYS, "deal")
    if "is_deleted" in body and body["is_deleted"] is not False:
        raise BadRequest("Deals are deleted with DELETE, not with is_deleted")
    row = dict(current) if current else {
        "id": 0, "title": None, "creator_user_id": user_id, "owner_id": user_id, "person_id": None,
        "org_id": None, "pipeline_id": None, "stage_id": None, "value": 0, "currency": state.company["currency"],
        "add_time": None, "update_time": None, "stage_change_time": None, "is_deleted": False,
        "is_archived": False, "archive_time": None, "status": "open", "probability": None,
        "lost_reason": None, "visible_to": 3, "close_time": None, "won_time": None, "lost_time": None,
        "expected_close_date": None, "label_ids": [], "origin": "API", "origin_id": None, "channel": None,
        "channel_id": None, "arr": None, "mrr": None, "acv": None,
        "custom_fields": {f.key: None for f in state.fields.custom("deal")}}
    if "title" in body:
        row["title"] = _str(body, "title", nullable=False, empty=False).strip()
    if current is None and not row["title"]:
        raise BadRequest("Title is required")
    for key in ("owner_id",):
        if key in body:
            row[key] = _int(body, key, nullable=False)
            _check_user(state, key, row[key])
    for key, entity in (("person_id", "person"), ("org_id", "organization")):
        if key in body:
            row[key] = _int(body, key)
            _check_ref(state, entity, key, row[key])
    if "value" in body:
        row["value"] = _num(body, "value", nullable=False)
    if "currency" in body:
        cur = _str(body, "currency", nullable=False)
        if len(cur) != 3 or not cur.isalpha():
            raise BadRequest("Invalid value for currency: expected a 3-letter code")
        row["currency"] = cur.upper()
    old_stage = row["stage_id"]
    if "stage_id" in body:
        stage = state.stages.get(_int(body, "stage_id", nullable=False))
        if stage is None or stage["is_deleted"]:
            raise BadRequest(f"Stage with id {body['stage_id']} not found")
        row["stage_id"] = stage["id"]
        if "pipeline_id" in body and _int(body, "pipeline_id", nullable=False) != stage["pipeline_id"]:
            raise BadRequest("stage_id does not belong to pipeline_id")
        row["pipeline_id"] = stage["pipeline_id"]
    elif "pipeline_id" in body:
        pid = _int(body, "pipeline_id", nullable=False)
        stages = state.stages_of(pid)
        if not stages:
            raise BadRequest(f"Pipeline with id {pid} not found")
        if row["pipeline_id"] != pid:
            row["pipeline_id"], row["stage_id"] = pid, stages[0]["id"]
    if row["stage_id"] is None:
        first = state.stages_of(state.default_pipeline_id())[0]
        row["stage_id"], row["pipeline_id"] = first["id"], first["pipeline_id"]
    if row["stage_id"] != old_stage:
        row["stage_change_time"] = rfc3339(now) if current is not None else None
    old_status = row["status"]
    if "status" in body:
        status = _str(body, "status", nullable=False)
        if status not in DEAL_STATUSES:
            raise BadRequest("Invalid value for status: expected open, won or lost (delete with DELETE)")
        row["status"] = status
    if row["status"] != old_status or current is None:
        row["won_time"] = rfc3339(now) if row["status"] == "won" else None
        row["lost_time"] = rfc3339(now) if row["status"] == "lost" else None
        row["close_time"] = rfc3339(now) if row["status"] in ("won", "lost") else None
        if row["status"] != "lost":
            row["lost_reason"] = None
    for key in ("won_time", "lost_time", "close_time"):
        if key in body and body[key] is not None:
            needed = {"won_time": ("won",), "lost_time": ("lost",), "close_time": ("won", "lost")}[key]
            if row["status"] not in needed:
                raise BadRequest(f"{key} can only be set when status is {' or '.join(needed)}")
            row[key] = rfc3339(parse_rfc3339(_str(body, key, nullable=False), key))
    if "lost_reason" in body:
        reason = _str(body, "lost_reason")
        if reason is not None and row["status"] != "lost":
            raise BadRequest("lost_reason can only be set when status is lost")
        row["lost_reason"] = reason
    if "probability" in body:
        row["probability"] = _num(body, "probability")
    if "expected_close_date" in body:
        row["expected_close_date"] = check_date(body["expected_close_date"], "expected_close_date")
    if "visible_to" in body:
        row["visible_to"] = _visible_to(body)
    if "label_ids" in body:
        row["label_ids"] = _int_list(body, "label_ids")
    if "is_archived" in body:
        row["is_archived"] = _bool(body, "is_archived")
        row["archive_time"] = rfc3339(now) if row["is_archived"] else None
    if "custom_fields" in body:
        row["custom_fields"] = _custom_fields(state, "deal", body, current)
    return row, _add_time(body, current)


def _activity(state, body, current, user_id, now):
    _reject_unknown(body, ACTIVITY_KEYS, "activity")
    row = dict(current) if current else {
        "id": 0, "subject": None, "type": "call", "owner_id": user_id, "creator_user_id": user_id,
        "is_deleted": False, "add_time": None, "update_time": None, "deal_id": None, "lead_id": None,
        "person_id": None, "org_id": None, "project_id": None, "due_date": None, "due_time": None,
        "duration": None, "busy": False, "done": False, "marked_as_done_time": None, "location": None,
        "participants": [], "public_description": None, "priority": None, "note": None}
    if "type" in body:
        t = _str(body, "type", nullable=False)
        if t not in state.activity_type_keys():
            raise BadRequest(f"Invalid value for type: {t!r} is not an activity type key_string")
        row["type"] = t
    if "subject" in body:
        row["subject"] = _str(body, "subject", nullable=False, empty=False)
    if not row["subject"]:
        row["subject"] = state.activity_type_name(row["type"])
    if "owner_id" in body:
        row["owner_id"] = _int(body, "owner_id", nullable=False)
        _check_user(state, "owner_id", row["owner_id"])
    for key, entity in (("deal_id", "deal"), ("org_id", "organization")):
        if key in body:
            row[key] = _int(body, key)
            _check_ref(state, entity, key, row[key])
    for key in ("project_id", "priority"):
        if key in body:
            row[key] = _int(body, key)
    if "lead_id" in body:
        row["lead_id"] = _str(body, "lead_id")
    if "participants" in body:
        parts = body["participants"] or []
        if not isinstance(parts, list) or any(
                not isinstance(p, dict) or not isinstance(p.get("person_id"), int) for p in parts):
            raise BadRequest("Invalid value for participants: expected [{person_id, primary}]")
        row["participants"] = [{"person_id": p["person_id"], "primary": bool(p.get("primary"))} for p in parts]
        for p in row["participants"]:
            _check_ref(state, "person", "participants", p["person_id"])
        if row["participants"] and not any(p["primary"] for p in row["participants"]):
            row["participants"][0]["primary"] = True
    elif "person_id" in body:
        pid = _int(body, "person_id")
        _check_ref(state, "person", "person_id", pid)
        row["participants"] = [{"person_id": pid, "primary": True}] if pid is not None else []
    # person_id is read-only in v2: it is the primary participant
    row["person_id"] = next((p["person_id"] for p in row["participants"] if p["primary"]), None)
    if "due_date" in body:
        row["due_date"] = check_date(body["due_date"], "due_date")
    if "due_time" in body:
        row["due_time"] = check_clock_time(body["due_time"], "due_time")
    if "duration" in body:
        row["duration"] = check_clock_time(body["duration"], "duration")
    if "busy" in body:
        row["busy"] = _bool(body, "busy")
    if "done" in body:
        done = _bool(body, "done")
        if done != row["done"]:
            row["marked_as_done_time"] = rfc3339(now) if done else None
        row["done"] = done
    if "location" in body:
        row["location"] = _address(body, "location")
    for key in ("public_description", "note"):
        if key in body:
            row[key] = _str(body, key)
    return row, None

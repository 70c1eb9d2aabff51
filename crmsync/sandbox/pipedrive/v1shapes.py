"""v2 rows rendered the v1 way, for v1 webhook payloads (``version: "1.0"``): ``email``/``phone``,
``active_flag``, space-separated UTC times, string ``visible_to`` and custom fields as top-level hash
keys with suffixed subfields (docs/pipedrive.md §4.2-4.6, §8.3)."""
from __future__ import annotations

from .state import PipedriveState

_RENAME = {"emails": "email", "phones": "phone"}
_TIME_KEYS = ("add_time", "update_time", "stage_change_time", "close_time", "won_time", "lost_time",
              "marked_as_done_time", "archive_time")


def _v1_time(value):
    return value.replace("T", " ").rstrip("Z") if isinstance(value, str) else value


def to_v1(state: PipedriveState, entity: str, row: dict | None) -> dict | None:
    if row is None:
        return None
    out: dict = {}
    for key, value in row.items():
        if key == "custom_fields":
            continue
        if key == "is_deleted":
            out["active_flag"] = not value
            if entity == "deal":
                out["deleted"] = value
                out["active"] = not value and row.get("status") == "open"
            continue
        if key == "owner_id" and entity in ("deal", "activity"):
            out["user_id"] = value
            continue
        if key == "visible_to":
            out[key] = str(value)
            continue
        if key == "busy":
            out["busy_flag"] = value
            continue
        if key == "creator_user_id" and entity == "activity":
            out["created_by_user_id"] = value
            continue
        out[_RENAME.get(key, key)] = _v1_time(value) if key in _TIME_KEYS else value
    if entity == "person" and row.get("emails"):
        out["primary_email"] = next((e["value"] for e in row["emails"] if e["primary"]), None)
    out["company_id"] = state.company["id"]
    defs = state.fields.custom_by_key(entity)
    for key, value in (row.get("custom_fields") or {}).items():
        ftype = defs[key].field_type if key in defs else None
        if isinstance(value, dict) and ftype == "monetary":
            out[key], out[f"{key}_currency"] = value.get("value"), value.get("currency")
        elif isinstance(value, dict) and ftype in ("daterange", "timerange"):
            out[key], out[f"{key}_until"] = value.get("value"), value.get("until")
        elif isinstance(value, dict) and ftype == "address":
            out[key] = value.get("value")
            for part, sub in value.items():
                if part != "value":
                    out[f"{key}_{part}"] = sub
        elif isinstance(value, list):
            out[key] = ",".join(str(v) for v in value)
        elif ftype == "enum" and value is not None:
            out[key] = str(value)
        else:
            out[key] = value
    return out

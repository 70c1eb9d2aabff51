"""Three-way merge and the original design's four conflict strategies.

Every field is compared against the *base* — the value both sides last agreed on (kept on the
sync link). Changed on one side only: that side wins, no conflict. Changed on both sides to
different values: a real conflict, which the config's strategy settles:

- `timestamp_based`: the newer `updated_at` wins; a tie goes to the remote.
- `source_priority`: the first of the config's order (e.g. hubspot, pipedrive, local) wins.
- `field_merge`: per-field rules — text appended, scores take the max, multi-selects the union,
  otherwise the newer value.
- `manual_review`: the field is held — untouched on both sides — and reported for a person.

Without a base (a first match by email or domain) a field filled on one side only takes that
value; a field both sides fill with different values is a conflict.
Values are compared in a canonical form (`canonical`), so 1500 == 1500.0 and datetimes compare
at the millisecond HubSpot keeps.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from crmsync.entities import FIELD_MERGE_RULES

STRATEGIES = ("timestamp_based", "source_priority", "field_merge", "manual_review")
LOCAL = "local"
CUSTOM = "custom_fields."
_MISSING = object()


def canonical(value: Any) -> Any:
    """The JSON form a value is compared and stored (in the base) in."""
    if value.__class__ is str:     # most values: checked first
        return value or None
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        f = float(value)
        return int(f) if f.is_integer() else round(f, 6)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple, set)):
        items = [canonical(v) for v in value]
        return sorted((i for i in items if i is not None), key=str) or None
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, str):
        return value
    return str(value)


def flatten(record: Mapping[str, Any], fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A unified record as {field: canonical value}; custom fields become `custom_fields.<name>`.
    With `fields`, only those (plus custom fields) are kept."""
    out: dict[str, Any] = {}
    if fields is not None and not isinstance(fields, frozenset):
        fields = _field_set(fields) if isinstance(fields, tuple) else frozenset(fields)
    for key, value in record.items():
        if key == "custom_fields":
            for ck, cv in (value or {}).items():
                out[CUSTOM + ck] = cv or None if cv.__class__ is str else canonical(cv)
        elif fields is None or key in fields:
            out[key] = value or None if value.__class__ is str else canonical(value)
    return out


@lru_cache(maxsize=64)
def _field_set(fields: tuple[str, ...]) -> frozenset[str]:
    return frozenset(fields)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith(CUSTOM):
            out.setdefault("custom_fields", {})[key[len(CUSTOM):]] = value
        else:
            out[key] = value
    return out


_META = {"id", "tenant_id", "created_at", "updated_at", "deleted_at", "external_ids", "last_change_cause"}


def _strip_meta(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _META}


@dataclass
class Resolution:
    """`resolution` is "auto" when every conflict was settled, "manual" when some are held.
    `merged` holds every compared field's agreed value (held fields keep the local value);
    `winners` says where each changed field's value came from: local, remote or merged."""
    resolution: str
    merged: dict[str, Any]
    conflicting_fields: list[str]
    held_fields: list[str] = field(default_factory=list)
    winners: dict[str, str] = field(default_factory=dict)

    @property
    def conflictingFields(self) -> list[str]:  # the original design's spelling  # noqa: N802  the original design's spelling
        return self.conflicting_fields


def _newer_is_local(local_updated_at, remote_updated_at) -> bool:
    if local_updated_at is None or remote_updated_at is None:
        return False
    return canonical(local_updated_at) > canonical(remote_updated_at)


def _merge_field(rule: str, name: str, lv: Any, rv: Any, bv: Any, local_newer: bool) -> Any:
    if rule == "append":
        lt, rt, bt = lv or "", rv or "", bv or ""
        if bt and lt.startswith(bt) and rt.startswith(bt):
            # Both appended to the same text: keep the base once, then both additions.
            local_add, remote_add = lt[len(bt):], rt[len(bt):]
            joint = "" if not local_add or local_add.endswith("\n") or remote_add.startswith("\n") else "\n"
            return canonical(bt + local_add + joint + remote_add)
        if lt in rt:
            return canonical(rt)
        if rt in lt:
            return canonical(lt)
        return canonical(f"{lt}\n{rt}")
    if rule == "max":
        nums = [v for v in (lv, rv) if isinstance(v, (int, float))]
        return canonical(max(nums)) if nums else (lv if local_newer else rv)
    if rule == "union":
        return canonical(sorted(set(lv or []) | set(rv or []), key=str))
    return lv if local_newer else rv


def resolve_conflict(*, local: Mapping[str, Any], remote: Mapping[str, Any], strategy: str,
                     base: Mapping[str, Any] | None = None, source_priority: list[str] | None = None,
                     field_rules: Mapping[str, str] | None = None, remote_platform: str = "hubspot",
                     local_updated_at: Any = None, remote_updated_at: Any = None,
                     preferences: Mapping[str, str] | None = None) -> Resolution:
    """Merge one record's local and remote versions against their base, field by field.
    `preferences` ({field: "local" | "remote"}, a config's field rules) settle a conflict on
    their field before the strategy is asked."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown conflict strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    local_updated_at = local_updated_at if local_updated_at is not None else local.get("updated_at")
    remote_updated_at = remote_updated_at if remote_updated_at is not None else remote.get("updated_at")
    lf, rf = flatten(_strip_meta(local)), flatten(_strip_meta(remote))
    bf = flatten(base) if base is not None else None
    rules = {**FIELD_MERGE_RULES, **(field_rules or {})}
    local_newer = _newer_is_local(local_updated_at, remote_updated_at)
    order = list(source_priority or [remote_platform, LOCAL])

    def rank(name: str) -> int:
        return order.index(name) if name in order else len(order)
    local_first = rank(LOCAL) < rank(remote_platform)

    merged = dict(lf)
    winners: dict[str, str] = {}
    conflicting: list[str] = []
    held: list[str] = []
    for f, rv in rf.items():
        lv = lf.get(f)
        if lv == rv:
            continue
        bv = bf.get(f) if bf is not None else _MISSING
        if bv is _MISSING:
            # No base (a first match): a value on one side and nothing on the other is no
            # conflict — the value fills the gap; only two different values conflict.
            local_changed, remote_changed = lv is not None, rv is not None
        else:
            local_changed, remote_changed = lv != bv, rv != bv
        if remote_changed and not local_changed:
            merged[f], winners[f] = rv, "remote"
            continue
        if local_changed and not remote_changed:
            winners[f] = "local"
            continue
        conflicting.append(f)
        prefer = preferences.get(f) if preferences else None
        if prefer is not None:
            merged[f], winners[f] = (lv if prefer == "local" else rv), prefer
        elif strategy == "manual_review":
            held.append(f)
        elif strategy == "timestamp_based":
            winner = "local" if local_newer else "remote"
            merged[f], winners[f] = (lv if winner == "local" else rv), winner
        elif strategy == "source_priority":
            winner = "local" if local_first else "remote"
            merged[f], winners[f] = (lv if winner == "local" else rv), winner
        else:  # field_merge
            rule = rules.get(f.removeprefix(CUSTOM), "newer")
            value = _merge_field(rule, f, lv, rv, None if bv is _MISSING else bv, local_newer)
            merged[f] = value
            winners[f] = "local" if value == lv else "remote" if value == rv else "merged"
    return Resolution(resolution="manual" if held else "auto", merged=merged,
                      conflicting_fields=sorted(conflicting), held_fields=sorted(held), winners=winners)

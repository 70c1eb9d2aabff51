"""Conditions: `{"field": "deal.stage", "operator": "equals", "value": "qualified_to_buy"}`.

All top-level conditions must hold; `{"any": [cond, ...]}` holds when one of its members does
(members may be groups again). String comparisons ignore case (emails, stage names). A string
value may be a template (`{now - 7 days}`), rendered against the same context.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime
from typing import Any

from crmsync.automation.templates import as_datetime, lookup, render_value

OPERATORS = ("equals", "not_equals", "contains", "not_contains", "starts_with", "greater_than",
             "less_than", "in", "not_in", "is_empty", "is_not_empty")
UNARY = ("is_empty", "is_not_empty")
LIST_VALUED = ("in", "not_in")
ORDERED = ("greater_than", "less_than")


@dataclass
class ConditionResult:
    path: str
    holds: bool
    field: str | None = None
    operator: str | None = None
    value: Any = None
    actual: Any = None
    members: list[ConditionResult] = dc_field(default_factory=list)

    def as_dict(self) -> dict:
        if self.operator is None:
            return {"path": self.path, "any": [m.as_dict() for m in self.members], "holds": self.holds}
        return {"path": self.path, "field": self.field, "operator": self.operator, "value": self.value,
                "actual": self.actual, "holds": self.holds}


def evaluate_all(conditions: list[dict], context: dict[str, Any], path: str = "conditions") -> list[ConditionResult]:
    """Every condition evaluated (no short-circuit, so a dry run shows them all)."""
    return [evaluate(c, context, f"{path}[{i}]") for i, c in enumerate(conditions or [])]


def evaluate(condition: dict, context: dict[str, Any], path: str) -> ConditionResult:
    if "any" in condition:
        members = [evaluate(c, context, f"{path}.any[{i}]") for i, c in enumerate(condition["any"])]
        return ConditionResult(path, any(m.holds for m in members), members=members)
    op = condition["operator"]
    actual = lookup(condition["field"], context)
    expected = render_value(condition.get("value"), context)
    return ConditionResult(path, _holds(op, actual, expected), condition["field"], op, expected, actual)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, tuple, dict, set)) and not value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None and not (isinstance(a, str) and isinstance(b, str)):
        return na == nb
    if isinstance(a, datetime) or isinstance(b, datetime):
        da, db = as_datetime(a), as_datetime(b)
        return da is not None and da == db
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    return a == b


def _order(a: Any, b: Any) -> tuple[Any, Any] | None:
    """A comparable pair (numbers, or dates) or None when they do not compare."""
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na, nb
    da, db = as_datetime(a), as_datetime(b)
    if da is not None and db is not None:
        return da, db
    return None


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _holds(op: str, actual: Any, expected: Any) -> bool:
    if op == "is_empty":
        return _empty(actual)
    if op == "is_not_empty":
        return not _empty(actual)
    if op == "equals":
        return _same(actual, expected)
    if op == "not_equals":
        return not _same(actual, expected)
    if op in ("contains", "not_contains"):
        if isinstance(actual, (list, tuple, set)):
            found = any(_same(item, expected) for item in actual)
        else:
            found = actual is not None and _text(expected).casefold() in _text(actual).casefold()
        return found if op == "contains" else not found
    if op == "starts_with":
        return actual is not None and _text(actual).casefold().startswith(_text(expected).casefold())
    if op in ORDERED:
        pair = _order(actual, expected)
        if pair is None:
            return False
        return pair[0] > pair[1] if op == "greater_than" else pair[0] < pair[1]
    if op in LIST_VALUED:
        actual_items = actual if isinstance(actual, (list, tuple, set)) else [actual]
        found = any(_same(a, e) for a in actual_items for e in expected or [])
        return found if op == "in" else not found
    raise ValueError(f"unknown operator {op!r}")   # validation refuses these at save time


def all_hold(results: list[ConditionResult]) -> bool:
    return all(r.holds for r in results)

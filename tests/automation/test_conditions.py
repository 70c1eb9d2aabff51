"""Condition operators, dotted paths and any-of groups."""
from datetime import UTC, datetime

import pytest

from crmsync.automation.conditions import all_hold, evaluate_all

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
CTX = {
    "sender_email": "Ada@Example.org", "now": NOW, "empty": "", "tags": ["vip", "emea"],
    "deal": {"stage": "qualified_to_buy", "amount": 1500.0, "close_date": datetime(2025, 3, 12, tzinfo=UTC),
             "custom_fields": {"tier": "gold"}},
    "contact": None,
}


@pytest.mark.parametrize("field, operator, value, holds", [
    ("deal.stage", "equals", "qualified_to_buy", True),
    ("deal.stage", "equals", "Qualified_To_Buy", True),          # strings ignore case
    ("deal.stage", "equals", "closedwon", False),
    ("deal.stage", "not_equals", "closedwon", True),
    ("deal.amount", "equals", "1500", True),                     # a number equals its text
    ("deal.amount", "greater_than", 1000, True),
    ("deal.amount", "greater_than", 1500, False),
    ("deal.amount", "less_than", "2000", True),
    ("deal.close_date", "less_than", "{now + 7 days}", True),    # values may be templates
    ("deal.close_date", "greater_than", "2025-03-13T00:00:00Z", False),
    ("deal.missing", "greater_than", 1, False),                  # nothing compares with a missing value
    ("deal.stage", "greater_than", 1, False),                    # text vs number: does not hold, no crash
    ("sender_email", "contains", "example", True),
    ("sender_email", "not_contains", "gmail", True),
    ("sender_email", "starts_with", "ada@", True),
    ("sender_email", "starts_with", "bob", False),
    ("tags", "contains", "VIP", True),
    ("tags", "not_contains", "apac", True),
    ("deal.stage", "in", ["appointmentscheduled", "qualified_to_buy"], True),
    ("deal.stage", "not_in", ["closedwon", "closedlost"], True),
    ("tags", "in", ["emea"], True),
    ("deal.custom_fields.tier", "equals", "gold", True),
    ("empty", "is_empty", None, True),
    ("contact.email", "is_empty", None, True),                   # through a missing record
    ("deal", "is_not_empty", None, True),
    ("contact", "is_not_empty", None, False),
    ("sender_email", "is_not_empty", None, True),
])
def test_operator(field, operator, value, holds):
    [result] = evaluate_all([{"field": field, "operator": operator, "value": value}], CTX)
    assert result.holds is holds, result


def test_all_must_hold_and_any_groups():
    conditions = [
        {"field": "deal.stage", "operator": "equals", "value": "qualified_to_buy"},
        {"any": [{"field": "deal.amount", "operator": "greater_than", "value": 10_000},
                 {"field": "tags", "operator": "contains", "value": "vip"}]},
    ]
    results = evaluate_all(conditions, CTX)
    assert all_hold(results)
    assert [m.holds for m in results[1].members] == [False, True]
    assert results[1].as_dict()["any"][1]["path"] == "conditions[1].any[1]"
    conditions[1]["any"][1]["value"] = "apac"
    assert not all_hold(evaluate_all(conditions, CTX))
    nested = [{"any": [{"any": [{"field": "empty", "operator": "is_empty"}]}]}]
    assert all_hold(evaluate_all(nested, CTX))

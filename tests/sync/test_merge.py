"""The three-way merge and the original design's four strategies, field by field."""
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.sync.merge import canonical, resolve_conflict

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE = {"email": "ada@x.org", "first_name": "Ada", "last_name": "L", "lead_score": 10, "notes": "met at expo",
        "tags": ["a"]}


def test_one_sided_edits_are_not_conflicts():
    local = {**BASE, "first_name": "Ada K."}
    remote = {**BASE, "last_name": "Lovelace"}
    res = resolve_conflict(local=local, remote=remote, base=BASE, strategy="manual_review")
    assert res.resolution == "auto"
    assert res.merged["first_name"] == "Ada K." and res.merged["last_name"] == "Lovelace"
    assert res.winners == {"first_name": "local", "last_name": "remote"}


def test_same_change_on_both_sides_agrees():
    both = {**BASE, "first_name": "Augusta"}
    res = resolve_conflict(local=both, remote=both, base=BASE, strategy="manual_review")
    assert res.resolution == "auto" and res.conflicting_fields == []


@pytest.mark.parametrize("local_newer,winner", [(True, "L"), (False, "R")])
def test_timestamp_based(local_newer, winner):
    lt, rt = (T0 + timedelta(hours=1), T0) if local_newer else (T0, T0 + timedelta(hours=1))
    res = resolve_conflict(local={**BASE, "first_name": "L"}, remote={**BASE, "first_name": "R"}, base=BASE,
                           strategy="timestamp_based", local_updated_at=lt, remote_updated_at=rt)
    assert res.merged["first_name"] == winner and res.conflicting_fields == ["first_name"]


def test_timestamp_tie_goes_to_remote():
    res = resolve_conflict(local={**BASE, "first_name": "L"}, remote={**BASE, "first_name": "R"}, base=BASE,
                           strategy="timestamp_based", local_updated_at=T0, remote_updated_at=T0)
    assert res.merged["first_name"] == "R"


@pytest.mark.parametrize("order,winner", [(["hubspot", "pipedrive", "local"], "R"), (["local", "hubspot"], "L"),
                                          (["pipedrive", "local"], "L")])
def test_source_priority(order, winner):
    res = resolve_conflict(local={**BASE, "first_name": "L"}, remote={**BASE, "first_name": "R"}, base=BASE,
                           strategy="source_priority", source_priority=order, remote_platform="hubspot")
    assert res.merged["first_name"] == winner


def test_field_merge_rules():
    local = {**BASE, "notes": "met at expo\ncalled monday", "lead_score": 30, "tags": ["a", "b"], "first_name": "L"}
    remote = {**BASE, "notes": "met at expo\nsent deck", "lead_score": 20, "tags": ["a", "c"], "first_name": "R"}
    res = resolve_conflict(local=local, remote=remote, base=BASE, strategy="field_merge",
                           local_updated_at=T0, remote_updated_at=T0 + timedelta(1))
    assert res.merged["notes"] == "met at expo\ncalled monday\nsent deck"
    assert res.merged["lead_score"] == 30
    assert res.merged["tags"] == ["a", "b", "c"]
    assert res.merged["first_name"] == "R"  # otherwise the newer
    assert res.resolution == "auto"


def test_manual_review_holds_only_conflicting_fields():
    local = {**BASE, "first_name": "L", "last_name": "Local-only"}
    remote = {**BASE, "first_name": "R", "lead_score": 99}
    res = resolve_conflict(local=local, remote=remote, base=BASE, strategy="manual_review")
    assert res.resolution == "manual" and res.held_fields == ["first_name"]
    assert res.merged["first_name"] == "L"          # untouched locally
    assert res.merged["lead_score"] == 99 and res.merged["last_name"] == "Local-only"
    assert res.conflictingFields == ["first_name"]


def test_custom_fields_merge_per_key():
    base = {"custom_fields": {"a": "1", "b": "1"}}
    res = resolve_conflict(local={"custom_fields": {"a": "2", "b": "1"}}, remote={"custom_fields": {"a": "1", "b": "3"}},
                           base=base, strategy="manual_review")
    assert res.resolution == "auto"
    assert res.merged["custom_fields.a"] == "2" and res.merged["custom_fields.b"] == "3"


def test_canonical_forms():
    assert canonical(1500) == canonical(1500.0) == canonical(1500)
    assert canonical("") is None and canonical([]) is None
    assert canonical(datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)) == "2026-01-01T12:00:00.123Z"
    assert canonical(["b", "a"]) == ["a", "b"]


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="coin_flip"):
        resolve_conflict(local={}, remote={}, strategy="coin_flip")

"""Cursor paging, sorting and update-time filters of the v2 list endpoints."""
from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

RESOURCES = ("persons", "organizations", "deals", "activities")


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


@pytest.mark.parametrize("resource", RESOURCES)
def test_cursor_paging_returns_every_record_exactly_once(pd, resource):
    stored = pd.admin("GET", f"records/{resource}")["data"]
    pages = pd.list_all(resource, limit=7)
    ids = [r["id"] for r in pages]
    assert len(ids) == len(set(ids)) == len(stored)
    assert ids == sorted(ids)


@pytest.mark.parametrize("sort_by", ["update_time", "add_time", "id"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_sorted_paging_with_shared_update_times(make_pipedrive, sort_by, direction):
    # 25 of 60 persons share one update_time: ties must break by id so no page repeats or skips one
    sandbox = make_pipedrive(persons=60, shared_update_time=25)
    rows = sandbox.list_all("persons", limit=4, sort_by=sort_by, sort_direction=direction)
    assert sorted(r["id"] for r in rows) == list(range(1, 61))
    keys = [(r[sort_by] if sort_by != "id" else r["id"], r["id"]) for r in rows]
    assert keys == sorted(keys, reverse=direction == "desc")
    assert Counter(r["update_time"] for r in rows).most_common(1)[0][1] == 25


def test_updated_since_inclusive_until_exclusive(pd):
    stored = pd.admin("GET", "records/persons")["data"]
    times = sorted({r["update_time"] for r in stored})
    since, until = times[len(times) // 4], times[3 * len(times) // 4]
    got = pd.list_all("persons", updated_since=since, updated_until=until, sort_by="update_time", limit=5)
    expected = {r["id"] for r in stored if since <= r["update_time"] < until}
    assert {r["id"] for r in got} == expected
    assert any(r["update_time"] == since for r in got)
    assert all(r["update_time"] != until for r in got)
    # same answer when sorted by id (no range jump, plain filter)
    by_id = pd.list_all("persons", updated_since=since, updated_until=until, limit=3)
    assert [r["id"] for r in by_id] == sorted(expected)


def test_incremental_sync_sees_api_write(pd):
    rows = pd.list_all("deals", sort_by="update_time", limit=500)
    high_water = rows[-1]["update_time"]
    r = pd.api("PATCH", "/api/v2/deals/3", json={"value": 999.5})
    assert r.status_code == 200
    newer = pd.list_all("deals", sort_by="update_time", updated_since=high_water)
    assert 3 in {d["id"] for d in newer}
    assert _ts(r.json()["data"]["update_time"].replace("Z", "+00:00")) >= _ts(high_water.replace("Z", "+00:00"))


def test_list_filters_and_custom_field_selection(pd):
    org_id = next(p["org_id"] for p in pd.admin("GET", "records/persons")["data"] if p["org_id"])
    persons = pd.list_all("persons", org_id=org_id)
    assert persons and all(p["org_id"] == org_id for p in persons)
    fields = pd.api("GET", "/api/v1/personFields").json()["data"]
    tier = next(f["key"] for f in fields if f["name"] == "Tier")
    one = pd.api("GET", "/api/v2/persons", params={"custom_fields": tier, "limit": 3}).json()["data"]
    assert all(list(p["custom_fields"]) == [tier] for p in one)
    ids = pd.api("GET", "/api/v2/deals", params={"ids": "2,4,99999"}).json()["data"]
    assert [d["id"] for d in ids] == [2, 4]
    done = pd.list_all("activities", done="true")
    assert done and all(a["done"] for a in done)


@pytest.mark.parametrize("params", [{"limit": 501}, {"limit": 0}, {"sort_by": "name"}, {"sort_direction": "up"},
                                    {"updated_since": "yesterday"}, {"cursor": "not-a-cursor"},
                                    {"status": "archived"}, {"done": "1"}])
def test_bad_list_parameters_are_400(pd, params):
    resource = "activities" if "done" in params else "deals"
    r = pd.api("GET", f"/api/v2/{resource}", params=params)
    assert r.status_code == 400
    assert r.json()["success"] is False and r.json()["error"]


def test_cursor_for_other_sort_is_refused(pd):
    first = pd.api("GET", "/api/v2/persons", params={"limit": 2, "sort_by": "add_time"}).json()
    cursor = first["additional_data"]["next_cursor"]
    r = pd.api("GET", "/api/v2/persons", params={"limit": 2, "cursor": cursor})
    assert r.status_code == 400


def test_limit_500_is_the_maximum_page(make_pipedrive):
    sandbox = make_pipedrive(persons=1200)
    r = sandbox.api("GET", "/api/v2/persons", params={"limit": 500})
    assert len(r.json()["data"]) == 500 and r.json()["additional_data"]["next_cursor"]
    assert len(sandbox.list_all("persons", limit=500)) == 1200

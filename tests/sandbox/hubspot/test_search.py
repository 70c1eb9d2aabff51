"""Search: operators, sorting, paging, the 10,000-result cap, index lag and the per-second limit."""
from __future__ import annotations

import time

import pytest

from crmsync.sandbox.hubspot.objects import TYPES


def search(sb, type_name="contacts", **body):
    return sb.api("POST", f"/crm/v3/objects/{type_name}/search", json=body)


def ids(resp):
    return [int(r["id"]) for r in resp.json()["results"]]


@pytest.fixture
def people(hubspot_sandbox):
    sb = hubspot_sandbox
    made = []
    for i, (first, score, tier) in enumerate([("Ada", 10, "gold"), ("Bob", 20, None), ("Cyd", 30, "silver"),
                                               ("Dee", 40, "gold"), ("Eve", 50, None)]):
        props = {"email": f"{first.lower()}@example.com", "firstname": first, "crm_score": score}
        if tier:
            props["crm_tier"] = tier
        made.append(sb.state.create(TYPES["contacts"], props, at_ms=1_700_000_000_000 + i * 1000))
    return sb, [r.id for r in made]


def f(name, op, value=None, **kw):
    out = {"propertyName": name, "operator": op}
    if value is not None:
        out["value"] = value
    out.update(kw)
    return {"filters": [out]}


def test_operators(people):
    sb, cid = people
    assert ids(search(sb, filterGroups=[f("crm_score", "EQ", "30")])) == [cid[2]]
    assert ids(search(sb, filterGroups=[f("crm_score", "NEQ", "30")])) == [cid[0], cid[1], cid[3], cid[4]]
    assert ids(search(sb, filterGroups=[f("crm_score", "GT", "30")])) == cid[3:]
    assert ids(search(sb, filterGroups=[f("crm_score", "GTE", "30")])) == cid[2:]
    assert ids(search(sb, filterGroups=[f("crm_score", "LT", "30")])) == cid[:2]
    assert ids(search(sb, filterGroups=[f("crm_score", "LTE", "30")])) == cid[:3]
    assert ids(search(sb, filterGroups=[f("crm_score", "BETWEEN", "20", highValue="40")])) == cid[1:4]
    assert ids(search(sb, filterGroups=[f("firstname", "IN", values=["ada", "eve"])])) == [cid[0], cid[4]]
    assert ids(search(sb, filterGroups=[f("crm_tier", "HAS_PROPERTY")])) == [cid[0], cid[2], cid[3]]
    assert ids(search(sb, filterGroups=[f("crm_tier", "NOT_HAS_PROPERTY")])) == [cid[1], cid[4]]
    assert ids(search(sb, filterGroups=[f("email", "EQ", "ADA@example.com")])) == [cid[0]]  # case-insensitive
    assert ids(search(sb, filterGroups=[f("hs_object_id", "GT", str(cid[3]))])) == [cid[4]]
    # datetime filters take epoch milliseconds; both lastmodifieddate spellings work on contacts
    t = str(1_700_000_002_000)
    assert ids(search(sb, filterGroups=[f("lastmodifieddate", "GTE", t)])) == cid[2:]
    assert ids(search(sb, filterGroups=[f("hs_lastmodifieddate", "LT", t)])) == cid[:2]
    bad = search(sb, filterGroups=[f("lastmodifieddate", "GTE", "2023-11-14")])
    assert bad.status_code == 400
    # AND inside a group, OR across groups
    group = {"filters": [{"propertyName": "crm_tier", "operator": "EQ", "value": "gold"},
                         {"propertyName": "crm_score", "operator": "GT", "value": "10"}]}
    assert ids(search(sb, filterGroups=[group])) == [cid[3]]
    assert ids(search(sb, filterGroups=[group, f("firstname", "EQ", "bob")])) == [cid[1], cid[3]]
    assert search(sb, filterGroups=[f("nope", "EQ", "x")]).status_code == 400


def test_sorting_paging_and_shape(people):
    sb, cid = people
    r = search(sb, sorts=[{"propertyName": "crm_score", "direction": "DESCENDING"}], limit=2,
               properties=["firstname"])
    body = r.json()
    assert body["total"] == 5 and ids(r) == [cid[4], cid[3]]
    assert body["paging"]["next"]["after"] == "2" and "link" not in body["paging"]["next"]
    assert "associations" not in body["results"][0]
    assert set(body["results"][0]["properties"]) == {"createdate", "firstname", "hs_object_id", "lastmodifieddate"}
    r2 = search(sb, sorts=["-crm_score"], limit=2, after=body["paging"]["next"]["after"])
    assert ids(r2) == [cid[2], cid[1]]
    last = search(sb, sorts=["-crm_score"], limit=2, after="4").json()
    assert "paging" not in last
    assert search(sb, limit=201).status_code == 400
    sb.api("DELETE", f"/crm/v3/objects/contacts/{cid[0]}")
    assert cid[0] not in ids(search(sb, limit=10))  # archived records are never searchable


def test_ten_thousand_cap(hubspot_sandbox):
    sb = hubspot_sandbox
    sb.seed(contacts=10_050, same_modified=10_050)
    r = search(sb, filterGroups=[f("lastmodifieddate", "EQ", str(sb.state.records["contacts"][101].updated))],
               limit=200, after="9800")
    assert r.status_code == 200 and r.json()["total"] == 10_050
    r = search(sb, limit=200, after="9900")
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    # the keyset workaround (hs_object_id GT last id) is not capped
    by_id = [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
    last = ids(search(sb, sorts=by_id, limit=200, after="9800"))[-1]
    r = search(sb, filterGroups=[f("hs_object_id", "GT", str(last))],
               sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}], limit=200)
    assert r.status_code == 200 and r.json()["total"] == 10_050 - 10_000


def test_index_lag_hides_fresh_changes(hubspot_sandbox):
    sb = hubspot_sandbox
    sb.configure(index_lag_ms=300)
    r = sb.api("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "lag@example.com",
                                                                         "firstname": "Old"}})
    cid = int(r.json()["id"])
    assert ids(search(sb, filterGroups=[f("email", "EQ", "lag@example.com")])) == []
    assert sb.api("GET", f"/crm/v3/objects/contacts/{cid}").status_code == 200  # reads are not lagged
    deadline = time.monotonic() + 5
    while not ids(search(sb, filterGroups=[f("email", "EQ", "lag@example.com")])):
        assert time.monotonic() < deadline
    sb.api("PATCH", f"/crm/v3/objects/contacts/{cid}", json={"properties": {"firstname": "New"}})
    stale = search(sb, filterGroups=[f("email", "EQ", "lag@example.com")], properties=["firstname"]).json()
    assert stale["results"][0]["properties"]["firstname"] == "Old"  # the index still has the old version


def test_search_secondly_limit(hubspot_sandbox):
    sb = hubspot_sandbox
    sb.configure(search_rate_limit=5)
    statuses = [search(sb).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
    r = next(search(sb) for _ in range(3))
    if r.status_code == 429:
        body = r.json()
        assert body["message"] == "You have reached your secondly limit." and body["category"] == "RATE_LIMITS"
        assert "policyName" not in body
    ok = search(sb) if r.status_code == 200 else None
    if ok is not None:
        assert "X-HubSpot-RateLimit-Max" not in ok.headers  # search carries no rate-limit headers

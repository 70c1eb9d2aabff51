"""Generator determinism and realism, and the v1/v2 account endpoints (users, fields, stages, ...)."""
from __future__ import annotations

from collections import Counter

from crmsync.sandbox.pipedrive import GeneratorOptions, PipedriveState, generate

COUNTS = {"persons": 60, "organizations": 10, "deals": 30, "activities": 50}


def _dump(state: PipedriveState) -> dict:
    with state.lock:
        return {e: [dict(t.rows[i]) for i in sorted(t.rows)] for e, t in state.tables.items()}


def test_same_seed_same_records_other_seed_other_records():
    a, b, c = PipedriveState(), PipedriveState(), PipedriveState()
    generate(a, GeneratorOptions(seed=42, **COUNTS))
    generate(b, GeneratorOptions(seed=42, **COUNTS))
    generate(c, GeneratorOptions(seed=43, **COUNTS))
    assert _dump(a) == _dump(b)
    assert _dump(a)["person"] != _dump(c)["person"]
    assert {e: len(rows) for e, rows in _dump(a).items()} == {
        "person": 60, "organization": 10, "deal": 30, "activity": 50}


def test_generated_records_are_consistent_and_realistic():
    state = PipedriveState()
    generate(state, GeneratorOptions(seed=3, shared_update_time=12, **COUNTS))
    data = _dump(state)
    orgs = {o["id"] for o in data["organization"]}
    persons = {p["id"]: p for p in data["person"]}
    deals = {d["id"] for d in data["deal"]}
    emails = [e["value"] for p in persons.values() for e in p["emails"] if e["primary"]]
    assert len(emails) == len(set(emails)) == 60 and all("@" in e for e in emails)
    assert all(p["org_id"] in orgs for p in persons.values() if p["org_id"])
    assert sum(1 for p in persons.values() if p["org_id"]) > 30
    for d in data["deal"]:
        assert d["person_id"] in persons and (d["org_id"] is None or d["org_id"] in orgs)
        assert state.stages[d["stage_id"]]["pipeline_id"] == d["pipeline_id"]
        assert (d["won_time"] is not None) == (d["status"] == "won")
    for a in data["activity"]:
        assert a["deal_id"] is None or a["deal_id"] in deals
        assert a["person_id"] is None or a["person_id"] in persons
    for entity in ("person", "organization", "deal", "activity"):
        times = Counter(r["update_time"] for r in data[entity])
        assert times.most_common(1)[0][1] == min(12, len(data[entity]))
        assert all(r["add_time"] <= r["update_time"] for r in data[entity])
    custom = state.fields.custom_by_key("person")
    values = [v for p in persons.values() for k, v in p["custom_fields"].items() if v is not None]
    assert values and set(persons[1]["custom_fields"]) == set(custom)
    tier = state.fields.key_for("person", "Tier")
    assert {p["custom_fields"][tier] for p in persons.values()} - {None} <= {o["id"] for o in custom[tier].options}


def test_reseed_through_admin_is_reproducible(pd):
    first = pd.admin("POST", "seed", {"seed": 9, "persons": 15})
    assert first["counts"]["person"] == 15
    a = pd.list_all("persons")
    pd.api("PATCH", "/api/v2/persons/1", json={"name": "Changed"})
    pd.admin("POST", "seed", {"seed": 9, "persons": 15})
    assert pd.list_all("persons") == a


def test_users_and_account_identity(pd):
    me = pd.api("GET", "/api/v1/users/me").json()["data"]
    assert me["company_id"] == 7788 and me["company_domain"] == "sandbox-7788" and me["is_you"] is True
    users = pd.api("GET", "/api/v1/users").json()["data"]
    assert [u["id"] for u in users] == [1, 2, 3] and sum(u["is_you"] for u in users) == 1
    assert pd.api("GET", "/api/v1/users/2").json()["data"]["name"]
    assert pd.api("GET", "/api/v1/users/99").status_code == 404


def test_field_lists_page_like_v1(pd):
    first = pd.api("GET", "/api/v1/dealFields", params={"limit": 5}).json()
    pagination = first["additional_data"]["pagination"]
    assert len(first["data"]) == 5 and pagination["more_items_in_collection"] and pagination["next_start"] == 5
    everything, start = [], 0
    while True:
        page = pd.api("GET", "/api/v1/dealFields", params={"start": start, "limit": 5}).json()
        everything.extend(page["data"])
        if not page["additional_data"]["pagination"]["more_items_in_collection"]:
            break
        start = page["additional_data"]["pagination"]["next_start"]
    assert len({f["key"] for f in everything}) == len(everything) > 10
    for bad, message in (("-1", "Invalid value for start: must be ≥ 0, got -1"),
                         ("x", "Invalid value for start: expected an integer")):
        r = pd.api("GET", "/api/v1/dealFields", params={"start": bad})
        assert r.status_code == 400 and r.json()["error"] == message, r.text
    for resource in ("personFields", "organizationFields", "activityFields"):
        assert pd.api("GET", f"/api/v1/{resource}").json()["data"]
    types = pd.api("GET", "/api/v1/activityTypes").json()["data"]
    assert {"call", "meeting", "task"} <= {t["key_string"] for t in types}


def test_pipelines_and_stages_v1_and_v2(pd):
    v2 = pd.api("GET", "/api/v2/stages", params={"pipeline_id": 2}).json()["data"]
    v1 = pd.api("GET", "/api/v1/stages", params={"pipeline_id": 2}).json()["data"]
    assert [s["id"] for s in v2] == [s["id"] for s in v1] == [6, 7, 8]
    assert v1[0]["pipeline_name"] == "Renewals"
    pipelines = pd.api("GET", "/api/v2/pipelines").json()
    assert [p["name"] for p in pipelines["data"]] == ["Sales", "Renewals"]
    assert pipelines["additional_data"]["next_cursor"] is None
    paged = pd.api("GET", "/api/v2/stages", params={"limit": 3}).json()
    assert len(paged["data"]) == 3
    rest = pd.api("GET", "/api/v2/stages", params={"cursor": paged["additional_data"]["next_cursor"]}).json()
    assert [s["id"] for s in paged["data"] + rest["data"]] == list(range(1, 9))
    assert pd.api("GET", "/api/v1/pipelines/1").json()["data"]["selected"] is True
    assert pd.api("GET", "/api/v2/stages/4").json()["data"]["name"] == "Proposal made"
    assert pd.api("GET", "/api/v1/stages/4").json()["data"]["pipeline_id"] == 1

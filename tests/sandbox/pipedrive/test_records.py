"""v2 create/get/update/delete, soft delete and purge, deleted deals, custom fields, strict validation."""
from __future__ import annotations

import re

import pytest

HASH = re.compile(r"^[0-9a-f]{40}$")


def test_spec_checker_catches_a_wrong_shape(pipedrive_spec):
    # the guard every other test relies on: a bad body must be reported, a good one must not
    assert pipedrive_spec.check("GET", "/api/v2/persons/1", 200, b'{"success": true, "data": {"id": "x"}}')
    assert not pipedrive_spec.check("GET", "/api/v2/persons/1", 200, b'{"success": true, "data": {"id": 1}}')


def test_create_person_normalises_contact_points(pd):
    r = pd.api("POST", "/api/v2/persons", json={
        "name": "Ada Lovelace", "emails": [{"value": "ada@analytical.test"}, {"value": "ada@home.test",
                                                                               "label": "home"}],
        "phones": [{"value": "+44 20 7946 0000", "primary": True, "label": "mobile"}]})
    assert r.status_code == 200, r.text
    person = r.json()["data"]
    assert person["first_name"] == "Ada" and person["last_name"] == "Lovelace"
    assert person["emails"] == [{"value": "ada@analytical.test", "primary": True, "label": "work"},
                                {"value": "ada@home.test", "primary": False, "label": "home"}]
    assert person["add_time"] == person["update_time"] and person["add_time"].endswith("Z")
    assert pd.api("GET", f"/api/v2/persons/{person['id']}").json()["data"] == person


def test_patch_changes_only_given_fields_and_bumps_update_time(pd):
    before = pd.api("GET", "/api/v2/persons/5").json()["data"]
    r = pd.api("PATCH", "/api/v2/persons/5", json={"name": "Grete Ilves"})
    after = r.json()["data"]
    assert after["name"] == "Grete Ilves" and after["last_name"] == "Ilves"
    assert after["emails"] == before["emails"] and after["custom_fields"] == before["custom_fields"]
    assert after["update_time"] > before["update_time"]


def test_deal_defaults_and_status_times(pd):
    deal = pd.api("POST", "/api/v2/deals", json={"title": "Pilot", "value": 1200, "person_id": 1}).json()["data"]
    assert (deal["pipeline_id"], deal["stage_id"], deal["status"], deal["currency"]) == (1, 1, "open", "EUR")
    won = pd.api("PATCH", f"/api/v2/deals/{deal['id']}", json={"status": "won", "stage_id": 7}).json()["data"]
    assert won["won_time"] and won["close_time"] and won["lost_time"] is None
    assert won["pipeline_id"] == 2 and won["stage_change_time"]
    r = pd.api("PATCH", f"/api/v2/deals/{deal['id']}", json={"lost_reason": "Price"})
    assert r.status_code == 400  # lost_reason only with status lost


def test_activity_person_is_the_primary_participant(pd):
    act = pd.api("POST", "/api/v2/activities", json={
        "type": "meeting", "deal_id": 2, "due_date": "2026-12-01", "due_time": "09:30",
        "participants": [{"person_id": 3, "primary": False}, {"person_id": 4, "primary": True}]}).json()["data"]
    assert act["person_id"] == 4 and act["subject"] == "Meeting" and act["due_time"] == "09:30:00"
    done = pd.api("PATCH", f"/api/v2/activities/{act['id']}", json={"done": True}).json()["data"]
    assert done["done"] is True and done["marked_as_done_time"]


@pytest.mark.parametrize("resource,body", [
    ("persons", {"name": 5}), ("persons", {"emails": "a@b.test"}), ("persons", {"name": "X", "org_id": "1"}),
    ("persons", {"name": "X", "visible_to": 2}), ("persons", {"name": "X", "org_id": 99999}),
    ("persons", {"name": "X", "emails": [{"value": "a@b.test", "primary": 1}]}), ("persons", {}),
    ("organizations", {"name": ""}), ("deals", {"title": "X", "value": "100"}),
    ("deals", {"title": "X", "status": "deleted"}), ("deals", {"title": "X", "stage_id": 999}),
    ("activities", {"subject": "X", "done": 1}), ("activities", {"subject": "X", "type": "party"}),
    ("activities", {"subject": "X", "due_date": "01/02/2026"}), ("persons", {"name": "X", "nickname": "x"}),
])
def test_strict_validation_answers_400(pd, resource, body):
    r = pd.api("POST", f"/api/v2/{resource}", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["success"] is False


def test_soft_delete_hides_record_from_lists(pd):
    assert pd.api("DELETE", "/api/v2/persons/7").json() == {"success": True, "data": {"id": 7}}
    assert 7 not in {p["id"] for p in pd.list_all("persons")}
    got = pd.api("GET", "/api/v2/persons/7").json()["data"]
    assert got["is_deleted"] is True
    assert pd.api("PATCH", "/api/v2/persons/7", json={"name": "Back"}).status_code == 404
    assert pd.api("DELETE", "/api/v2/persons/7").status_code == 404
    # deleted items' update_time is the delete time, so incremental syncs can see it via webhooks/ids
    assert got["update_time"] >= max(p["update_time"] for p in pd.list_all("persons"))


def test_deleted_deals_are_listed_with_status_deleted_then_purged(pd):
    pd.api("DELETE", "/api/v2/deals/4")
    pd.api("DELETE", "/api/v2/deals/6")
    assert {d["id"] for d in pd.list_all("deals")}.isdisjoint({4, 6})
    deleted = pd.list_all("deals", status="deleted")
    assert [d["id"] for d in deleted] == [4, 6] and all(d["is_deleted"] for d in deleted)
    both = pd.list_all("deals", status="open,deleted")
    assert {4, 6} <= {d["id"] for d in both} and all(d["status"] == "open" or d["is_deleted"] for d in both)
    pd.admin("POST", "clock", {"advance_seconds": 31 * 86400})  # Pipedrive purges after 30 days
    assert pd.list_all("deals", status="deleted") == []
    assert pd.api("GET", "/api/v2/deals/4").status_code == 404


def test_archived_deals_only_on_archived_endpoint(pd):
    pd.api("PATCH", "/api/v2/deals/8", json={"is_archived": True})
    assert 8 not in {d["id"] for d in pd.list_all("deals")}
    archived = pd.list_all("deals/archived")
    assert [d["id"] for d in archived] == [8] and archived[0]["archive_time"]


def test_custom_fields_keyed_by_40_char_hashes(pd):
    fields = pd.api("GET", "/api/v1/personFields").json()["data"]
    custom = {f["key"]: f for f in fields if f["edit_flag"]}
    assert custom and all(HASH.match(k) for k in custom)
    assert all(not HASH.match(f["key"]) for f in fields if not f["edit_flag"])
    person = pd.api("GET", "/api/v2/persons/1").json()["data"]
    assert set(person["custom_fields"]) == set(custom)
    tier = next(f for f in custom.values() if f["name"] == "Tier")
    interests = next(f for f in custom.values() if f["name"] == "Interests")
    gold = tier["options"][0]["id"]
    ok = pd.api("PATCH", "/api/v2/persons/1", json={"custom_fields": {
        tier["key"]: gold, interests["key"]: [o["id"] for o in interests["options"][:2]]}})
    assert ok.json()["data"]["custom_fields"][tier["key"]] == gold
    assert pd.api("PATCH", "/api/v2/persons/1", json={"custom_fields": {tier["key"]: "Gold"}}).status_code == 400
    assert pd.api("PATCH", "/api/v2/persons/1", json={"custom_fields": {interests["key"]: []}}).status_code == 400
    cleared = pd.api("PATCH", "/api/v2/persons/1", json={"custom_fields": {tier["key"]: None}}).json()["data"]
    assert cleared["custom_fields"][tier["key"]] is None
    # unknown keys are ignored, as Pipedrive does for deleted custom fields
    same = pd.api("PATCH", "/api/v2/persons/1", json={"custom_fields": {"f" * 40: 1}})
    assert same.status_code == 200 and "f" * 40 not in same.json()["data"]["custom_fields"]
    deal_fields = pd.api("GET", "/api/v1/dealFields").json()["data"]
    money = next(f["key"] for f in deal_fields if f["name"] == "Contract value")
    deal = pd.api("PATCH", "/api/v2/deals/1", json={"custom_fields": {money: {"value": 500, "currency": "USD"}}})
    assert deal.json()["data"]["custom_fields"][money] == {"value": 500, "currency": "USD"}


def test_custom_field_keys_differ_per_company(make_pipedrive):
    a = make_pipedrive(company_id=1001).api("GET", "/api/v1/personFields").json()["data"]
    b = make_pipedrive(company_id=1002).api("GET", "/api/v1/personFields").json()["data"]
    assert {f["key"] for f in a if f["edit_flag"]}.isdisjoint({f["key"] for f in b if f["edit_flag"]})


def test_unknown_paths_and_ids_are_404(pd):
    assert pd.api("GET", "/api/v2/persons/424242").status_code == 404
    assert pd.api("GET", "/api/v2/persons/424242").json()["success"] is False

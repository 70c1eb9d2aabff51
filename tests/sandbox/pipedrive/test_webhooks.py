"""Webhooks: registration through v1, v2 (and v1) payloads, HTTP Basic auth, retries, UI edits, merges."""
from __future__ import annotations

import pytest


def _register(sandbox, url: str, **extra) -> dict:
    body = {"subscription_url": url, "event_action": "*", "event_object": "*", "name": "sync",
            "http_auth_user": "pd", "http_auth_password": "s3cr3t:x", **extra}
    r = sandbox.api("POST", "/api/v1/webhooks", json=body)
    assert r.status_code == 201, r.text
    return r.json()["data"]


def test_api_changes_are_delivered_as_v2_payloads_with_basic_auth(pd, webhook_receiver):
    receiver = webhook_receiver()
    hook = _register(pd, receiver.url)
    assert hook["version"] == "2.0" and hook["is_active"] == 1
    created = pd.api("POST", "/api/v2/persons", json={"name": "Liis Tamm"}).json()["data"]
    pd.api("PATCH", f"/api/v2/persons/{created['id']}", json={"name": "Liis Tamme"})
    pd.api("DELETE", f"/api/v2/persons/{created['id']}")
    got = receiver.wait_for(lambda r: len(r) >= 3)
    assert {r["basic"] for r in got} == {"pd:s3cr3t:x"}
    create, change, delete = (r["json"] for r in got)
    assert [p["meta"]["action"] for p in (create, change, delete)] == ["create", "change", "delete"]
    meta = change["meta"]
    assert meta["entity"] == "person" and meta["entity_id"] == str(created["id"])
    assert meta["company_id"] == "7788" and meta["user_id"] == "1" and meta["version"] == "2.0"
    assert meta["change_source"] == "api" and meta["attempt"] == 1 and meta["webhook_id"] == str(hook["id"])
    assert create["previous"] is None and create["data"]["name"] == "Liis Tamm"
    assert change["data"]["name"] == "Liis Tamme"
    assert change["previous"]["name"] == "Liis Tamm" and "emails" not in change["previous"]  # changed only
    assert delete["data"] is None and delete["previous"]["id"] == created["id"]
    assert pd.admin("POST", "webhooks/flush", {"timeout": 5})["drained"]
    hooks = pd.api("GET", "/api/v1/webhooks").json()["data"]
    assert hooks[0]["last_http_status"] == 200 and hooks[0]["last_delivery_time"]


def test_ui_edits_and_filters_by_object_and_action(pd, webhook_receiver):
    receiver = webhook_receiver()
    _register(pd, receiver.url, event_object="deal", event_action="change")
    pd.admin("PATCH", "records/persons/1", {"name": "Not Delivered"})
    pd.admin("PATCH", "records/deals/2", {"value": 4321})
    pd.admin("POST", "edits", {"entity": "deal", "count": 3, "seed": 5})
    got = receiver.wait_for(lambda r: len(r) >= 4)
    assert pd.admin("POST", "webhooks/flush", {"timeout": 5})["drained"]
    metas = [r["json"]["meta"] for r in receiver.received]
    assert len(metas) == 4 and {m["entity"] for m in metas} == {"deal"} and {m["action"] for m in metas} == {"change"}
    assert {m["change_source"] for m in metas} == {"app"} and {m["user_id"] for m in metas} == {"2"}
    assert got[0]["json"]["data"]["value"] == 4321


def test_failed_deliveries_are_retried_with_attempt_counter(pd, webhook_receiver):
    receiver = webhook_receiver(fail_first=2)
    _register(pd, receiver.url)
    pd.api("PATCH", "/api/v2/organizations/1", json={"name": "Retry Works OÜ"})
    got = receiver.wait_for(lambda r: any(x["status"] == 200 for x in r))
    assert [r["json"]["meta"]["attempt"] for r in got] == [1, 2, 3]
    assert [r["status"] for r in got] == [500, 500, 200]
    assert pd.admin("POST", "webhooks/flush", {"timeout": 5})["drained"]
    counters = pd.admin("GET", "webhooks")["counters"]
    assert counters["failed_attempts"] == 2 and counters["succeeded"] == 1


def test_gives_up_after_three_retries(pd, webhook_receiver):
    receiver = webhook_receiver(fail_first=100)
    _register(pd, receiver.url)
    pd.api("PATCH", "/api/v2/organizations/1", json={"name": "Never OK"})
    assert pd.admin("POST", "webhooks/flush", {"timeout": 5})["drained"]
    assert len(receiver.received) == 4  # Pipedrive: first try + 3 retries
    assert pd.admin("GET", "webhooks")["counters"]["given_up"] == 1


def test_merge_sends_delete_with_merged_to_and_change_with_merged_from(pd, webhook_receiver):
    receiver = webhook_receiver()
    _register(pd, receiver.url, event_object="person")
    loser = pd.api("GET", "/api/v2/persons/2").json()["data"]
    deals_before = [d["id"] for d in pd.list_all("deals", person_id=2)]
    survivor = pd.admin("POST", "merge/persons", {"id": 2, "merge_with_id": 3})
    assert {e["value"] for e in loser["emails"]} <= {e["value"] for e in survivor["emails"]}
    assert sum(e["primary"] for e in survivor["emails"]) == 1
    assert {d["id"] for d in pd.list_all("deals", person_id=3)} >= set(deals_before)
    got = receiver.wait_for(lambda r: len(r) >= 2)
    by_action = {r["json"]["meta"]["action"]: r["json"] for r in got}
    assert by_action["change"]["meta"]["merged_from_id"] == "2" and by_action["change"]["data"]["id"] == 3
    assert by_action["delete"]["meta"]["merged_to_id"] == "3" and by_action["delete"]["meta"]["entity_id"] == "2"
    assert pd.api("GET", "/api/v2/persons/2").json()["data"]["is_deleted"] is True


def test_v1_payload_format(pd, webhook_receiver):
    receiver = webhook_receiver()
    _register(pd, receiver.url, version="1.0", event_object="person", event_action="updated")
    pd.api("PATCH", "/api/v2/persons/4", json={"phones": [{"value": "+372 555 0101"}]})
    payload = receiver.wait_for(lambda r: len(r) >= 1)[0]["json"]
    assert payload["event"] == "updated.person" and payload["meta"]["action"] == "updated"
    assert payload["meta"]["company_id"] == 7788 and payload["retry"] == 0
    current = payload["current"]
    assert current["phone"][0]["value"] == "+372 555 0101" and current["active_flag"] is True
    assert " " in current["update_time"] and "T" not in current["update_time"]
    assert payload["previous"]["phone"] != current["phone"]
    assert any(len(k) == 40 for k in current)  # custom fields flattened to the top level


def test_admin_configured_default_webhook(make_pipedrive, webhook_receiver):
    receiver = webhook_receiver()
    sandbox = make_pipedrive(webhook_url=receiver.url, webhook_auth="hook:pw")
    assert [h["name"] for h in sandbox.api("GET", "/api/v1/webhooks").json()["data"]] == ["sandbox default"]
    sandbox.api("POST", "/api/v2/activities", json={"subject": "Call back", "type": "call"})
    got = receiver.wait_for(lambda r: len(r) >= 1)
    assert got[0]["basic"] == "hook:pw" and got[0]["json"]["meta"]["entity"] == "activity"


def test_webhook_management_errors(pd, webhook_receiver):
    receiver = webhook_receiver()
    bad = pd.api("POST", "/api/v1/webhooks", json={"subscription_url": "ftp://x", "event_action": "*",
                                                    "event_object": "*", "name": "x"})
    assert bad.status_code == 400 and "subscription_url" in bad.json()["errors"]
    nameless = pd.api("POST", "/api/v1/webhooks", json={"subscription_url": receiver.url, "event_action": "*",
                                                         "event_object": "*"})
    assert nameless.status_code == 400 and "name" in nameless.json()["errors"]  # required by the spec
    hook = _register(pd, receiver.url)
    assert pd.api("DELETE", f"/api/v1/webhooks/{hook['id']}").json() == {"status": "ok", "success": True}
    assert pd.api("DELETE", f"/api/v1/webhooks/{hook['id']}").status_code == 404
    pd.api("PATCH", "/api/v2/persons/1", json={"name": "Nobody Listens"})
    assert pd.admin("POST", "webhooks/flush", {"timeout": 5})["drained"] and receiver.received == []
    for _ in range(40):
        _register(pd, receiver.url)
    over = pd.api("POST", "/api/v1/webhooks", json={"subscription_url": receiver.url, "event_action": "*",
                                                     "event_object": "*", "name": "41st"})
    assert over.status_code == 422


@pytest.mark.parametrize("entity", ["person", "organization", "deal", "activity"])
def test_random_ui_edits_change_records(pd, entity):
    before = {r["id"]: r for r in pd.admin("GET", f"records/{entity}")["data"]}
    edited = pd.admin("POST", "edits", {"entity": entity, "count": 2, "seed": 1})["edited"]
    after = {r["id"]: r for r in pd.admin("GET", f"records/{entity}")["data"]}
    assert len(edited) == 2
    for e in edited:
        assert after[e["id"]]["update_time"] >= before[e["id"]]["update_time"]


def test_ten_first_attempt_failures_ban_the_webhook(make_pipedrive, webhook_receiver):
    # time_scale 0.001: retries after ~3/6/12 ms, the 30-minute ban lasts 1.8 s
    sandbox = make_pipedrive(webhook_time_scale=0.001)
    receiver = webhook_receiver(fail_first=10_000)
    _register(sandbox, receiver.url, event_object="organization")
    for n in range(10):
        sandbox.api("PATCH", "/api/v2/organizations/1", json={"name": f"Failing {n}"})
        assert sandbox.admin("POST", "webhooks/flush", {"timeout": 5})["drained"]
    sent = len(receiver.received)
    assert sent == 40  # 10 events x 4 attempts
    sandbox.api("PATCH", "/api/v2/organizations/1", json={"name": "Lost during the ban"})
    assert sandbox.admin("POST", "webhooks/flush", {"timeout": 5})["drained"]
    assert len(receiver.received) == sent
    assert sandbox.admin("GET", "webhooks")["counters"]["lost_to_ban"] == 1

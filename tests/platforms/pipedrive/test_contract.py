"""Contract tests: every adapter and client call against the Pipedrive sandbox over real HTTP."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from crmsync.cache import MetadataCache
from crmsync.platforms.base import OutboundRecord
from crmsync.platforms.errors import (
    AuthenticationError,
    NotFound,
    RateLimited,
    TransientError,
    ValidationError,
)
from crmsync.platforms.pipedrive import PipedriveAdapter
from crmsync.platforms.pipedrive.client import PipedriveClient
from crmsync.ratelimit import Limit, RateBudget

HASH = re.compile(r"^[0-9a-f]{40}$")


def _drain(adapter, entity, since=None, page_size=7):
    cursor = adapter.start_cursor(entity, since)
    seen, pages = [], 0
    while cursor is not None:
        json.dumps(cursor)  # the engine stores it verbatim
        page = adapter.list_changed(entity, cursor, page_size=page_size)
        seen.extend(page.records)
        cursor, pages = page.cursor, pages + 1
        assert pages < 100
    return seen


def test_account_id_is_the_company(adapter):
    assert adapter.account_id() == "7788"
    assert adapter.client.users_me()["company_id"] == 7788


def test_full_listing_sees_every_person_once_mapped(adapter, pd_sandbox):
    records = _drain(adapter, "contact")
    ids = [r.external_id for r in records]
    assert len(ids) == len(set(ids)) == len(pd_sandbox.rows("person"))
    times = [r.updated_at for r in records]
    assert times == sorted(times)  # oldest first
    for r in records:
        assert r.entity == "contact" and not r.archived
        assert set(r.associations) == {"company_id"}
        assert "company_id" not in r.fields
        assert not any(HASH.match(k) for k in r.fields["custom_fields"])  # names, never hashes
    assert any(r.fields["custom_fields"].get("Tier") in ("Gold", "Silver", "Bronze") for r in records)


def test_activities_split_into_activities_and_tasks(adapter, pd_sandbox):
    activities = _drain(adapter, "activity", page_size=8)
    tasks = _drain(adapter, "task", page_size=8)
    assert {r.fields["type"] for r in activities} <= {"call", "meeting", "email"}
    assert all(r.fields["task_type"] not in ("call", "meeting", "email") for r in tasks)
    assert len(activities) + len(tasks) == len(pd_sandbox.rows("activity"))


def test_incremental_listing_from_since(adapter):
    everything = _drain(adapter, "company")
    newest = max(r.updated_at for r in everything)
    later = list(_drain(adapter, "company", since=newest))
    assert [r.external_id for r in later] == [r.external_id for r in everything if r.updated_at >= newest]
    [result] = adapter.update_many("company", [OutboundRecord("L1", {"name": "Renamed Ltd"}, everything[0].external_id)])
    assert result.ok
    after = _drain(adapter, "company", since=result.record.updated_at)
    assert everything[0].external_id in [r.external_id for r in after]


def test_metadata_is_cached(adapter, pd_sandbox):
    _drain(adapter, "deal")
    _drain(adapter, "deal")
    assert pd_sandbox.requests_to("GET /api/v1/dealFields") == 1
    assert pd_sandbox.requests_to("GET /api/v2/stages") == 1


def test_get_many_skips_missing_and_deleted(adapter, pd_sandbox):
    ids = [str(r["id"]) for r in pd_sandbox.rows("person")][:5]
    adapter.archive_many("contact", [ids[0]])
    got = adapter.get_many("contact", ids + ["999999", "not-a-number"])
    assert sorted(r.external_id for r in got) == sorted(ids[1:])


def test_create_many_one_result_per_input_and_failures_isolated(adapter, pd_sandbox):
    org = pd_sandbox.rows("organization")[0]["id"]
    records = [
        OutboundRecord("L1", {"first_name": "Mary Ann", "last_name": "Lee", "email": "mal@example.org",
                              "phone": "+1 555 0100", "custom_fields": {"Tier": "Gold", "Interests": ["Mobile"]}},
                       associations={"company_id": str(org)}),
        OutboundRecord("L2", {"first_name": "Bad", "last_name": "Org"}, associations={"company_id": "999999"}),
        OutboundRecord("L3", {"first_name": "Grace", "last_name": None, "email": "grace@example.org"}),
    ]
    results = adapter.create_many("contact", records)
    assert [r.local_id for r in results] == ["L1", "L2", "L3"]
    assert results[0].ok and results[2].ok
    assert isinstance(results[1].error, ValidationError) and results[1].error.status == 400
    first = results[0].record
    assert (first.fields["first_name"], first.fields["last_name"]) == ("Mary Ann", "Lee")
    assert first.fields["email"] == "mal@example.org" and first.associations == {"company_id": str(org)}
    assert first.fields["custom_fields"]["Tier"] == "Gold"
    assert first.fields["custom_fields"]["Interests"] == ["Mobile"]
    [again] = adapter.get_many("contact", [first.external_id])
    assert again.fields == first.fields


def test_update_many_and_missing_record(adapter, pd_sandbox):
    person = pd_sandbox.rows("person")[0]
    results = adapter.update_many("contact", [
        OutboundRecord("L1", {"phone": "+44 20 7946 0000", "custom_fields": {"Lead score": 88.0}},
                       external_id=str(person["id"])),
        OutboundRecord("L2", {"phone": "+1"}, external_id="999999"),
        OutboundRecord("L3", {"phone": "+1"}),
    ])
    assert results[0].ok and results[0].record.fields["phone"] == "+44 20 7946 0000"
    assert results[0].record.fields["custom_fields"]["Lead score"] == 88.0
    assert results[0].record.fields["email"] == (person["emails"][0]["value"] if person["emails"] else None)
    assert isinstance(results[1].error, NotFound)
    assert isinstance(results[2].error, ValidationError)


def test_archive_many(adapter, pd_sandbox):
    deal_ids = [str(r["id"]) for r in pd_sandbox.rows("deal")][:2]
    results = adapter.archive_many("deal", deal_ids + ["999999"])
    assert all(r.ok for r in results)  # a record already gone counts as archived
    assert adapter.get_many("deal", deal_ids) == []


def test_deal_stage_names_round_trip(adapter, pd_sandbox):
    person, org = pd_sandbox.rows("person")[0]["id"], pd_sandbox.rows("organization")[0]["id"]
    [created] = adapter.create_many("deal", [OutboundRecord(
        "D1", {"name": "Renewal 2026", "amount": 1200.5, "currency": "USD", "pipeline": "Renewals",
               "stage": "Renewal quoted", "status": "open", "close_date": datetime(2026, 3, 31, tzinfo=UTC)},
        associations={"company_id": str(org), "contact_id": str(person)})])
    assert created.ok, created.error
    fields = created.record.fields
    assert (fields["stage"], fields["pipeline"], fields["amount"], fields["currency"]) == \
        ("Renewal quoted", "Renewals", 1200.5, "USD")
    assert fields["close_date"] == datetime(2026, 3, 31, tzinfo=UTC)
    [won] = adapter.update_many("deal", [OutboundRecord("D1", {"status": "won"}, created.external_id)])
    assert won.record.fields["status"] == "won"
    [bad] = adapter.create_many("deal", [OutboundRecord("D2", {"name": "x", "stage": "No such stage"})])
    assert isinstance(bad.error, ValidationError) and "No such stage" in str(bad.error)


def test_activity_and_task_writes(adapter, pd_sandbox):
    person = str(pd_sandbox.rows("person")[0]["id"])
    when = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    [call] = adapter.create_many("activity", [OutboundRecord(
        "A1", {"type": "call", "subject": "Intro call", "body": "<p>notes</p>", "occurred_at": when,
               "duration_minutes": 45}, associations={"contact_id": person})])
    assert call.ok, call.error
    assert call.record.entity == "activity" and call.record.fields["occurred_at"] == when
    assert call.record.fields["duration_minutes"] == 45 and call.record.associations["contact_id"] == person
    assert call.record.fields["custom_fields"]["done"] is True  # a logged call has happened
    [task] = adapter.create_many("task", [OutboundRecord(
        "T1", {"title": "Send offer", "task_type": "deadline", "status": "not_started",
               "due_date": datetime(2026, 1, 9, tzinfo=UTC)}, associations={"contact_id": person})])
    assert task.ok, task.error
    assert (task.record.entity, task.record.fields["status"], task.record.fields["task_type"]) == \
        ("task", "not_started", "deadline")
    [done] = adapter.update_many("task", [OutboundRecord("T1", {"status": "completed"}, task.external_id)])
    assert done.record.fields["status"] == "completed"
    # a task is not listed as an activity and vice versa
    assert adapter.get_many("activity", [task.external_id]) == []
    assert [r.external_id for r in adapter.get_many("task", [task.external_id])] == [task.external_id]
    [note] = adapter.create_many("activity", [OutboundRecord("A2", {"type": "note", "subject": "x"})])
    assert isinstance(note.error, ValidationError)


def test_find_existing_after_a_lost_create_answer(adapter, pd_sandbox):
    org = str(pd_sandbox.rows("organization")[0]["id"])
    contact = OutboundRecord("C9", {"first_name": "Lost", "last_name": "Answer", "email": "Lost@Example.org"})
    company = OutboundRecord("O9", {"name": "Lost Answer GmbH"})
    deal = OutboundRecord("D9", {"name": "Lost deal"}, associations={"company_id": org})
    task = OutboundRecord("T9", {"title": "Call back", "task_type": "task",
                                 "due_date": datetime(2026, 2, 2, tzinfo=UTC)}, associations={"company_id": org})
    for entity, record in (("contact", contact), ("company", company), ("deal", deal), ("task", task)):
        assert adapter.find_existing(entity, record) is None
        [made] = adapter.create_many(entity, [record])
        assert made.ok, made.error
        assert adapter.find_existing(entity, record) == made.external_id
    other = OutboundRecord("D10", {"name": "Lost deal"}, associations={"company_id": "123456"})
    assert adapter.find_existing("deal", other) is None  # same title, other organization


def test_wrong_token_is_an_authentication_error(pd_sandbox):
    secret = "0123456789abcdef0123456789abcdef01234567"
    bad = PipedriveAdapter(credentials={"api_token": secret}, base_url=pd_sandbox.base_url, cache=MetadataCache())
    with pytest.raises(AuthenticationError) as caught:
        bad.account_id()
    assert caught.value.status == 401 and secret not in str(caught.value)


def test_server_errors_become_transient_after_retries(adapter, pd_sandbox):
    adapter.account_id()
    pd_sandbox.configure(faults={"error_rate": 1.0})
    with pytest.raises(TransientError) as caught:
        adapter.client.get_record("person", 1)
    assert caught.value.status in (500, 502, 503)
    assert pd_sandbox.counters()["faults_injected"]["error"] == adapter.client.max_attempts
    pd_sandbox.configure(faults={"error_rate": 0.0, "drop_rate": 1.0})
    with pytest.raises(TransientError):
        adapter.client.create_record("person", {"name": "Nobody"})  # a POST is never retried blindly
    assert pd_sandbox.counters()["faults_injected"]["drop"] == 1


def test_budget_learns_the_burst_limit_from_headers(pd_sandbox):
    pd_sandbox.configure(rate_limit=3)
    client = PipedriveClient(pd_sandbox.token, base_url=pd_sandbox.base_url, budget=RateBudget(None),
                             wait=False, account="acct-learn", limits={"standard": Limit(100, 2.0)})
    with pytest.raises(RateLimited) as caught:
        for _ in range(5):
            client.get_record("person", 1)
    # x-ratelimit-limit: 3 lowered our own bucket, so we stopped before Pipedrive had to say 429
    assert caught.value.status is None
    assert pd_sandbox.counters()["rejected"]["burst_2s"] == 0


def test_burst_429_becomes_rate_limited_and_stops_the_account(pd_sandbox):
    pd_sandbox.configure(faults={"rate_limit_rate": 1.0})
    budget = RateBudget(None)
    client = PipedriveClient(pd_sandbox.token, base_url=pd_sandbox.base_url, budget=budget, wait=False,
                             account="7788", limits={"standard": Limit(100, 2.0)})
    with pytest.raises(RateLimited) as caught:
        client.get_record("person", 1)
    assert caught.value.status == 429 and 0 < caught.value.retry_after <= 2 and caught.value.resume_at is None
    pd_sandbox.configure(faults={"rate_limit_rate": 0.0})
    # the 429 penalized the account: the next call is refused by our budget, without reaching Pipedrive
    sent = pd_sandbox.counters()["total"]
    with pytest.raises(RateLimited):
        client.get_record("person", 1)
    assert pd_sandbox.counters()["total"] == sent


def test_own_budget_refuses_before_pipedrive_does(pd_sandbox):
    budget = RateBudget(None)
    client = PipedriveClient(pd_sandbox.token, base_url=pd_sandbox.base_url, budget=budget, wait=False,
                             account="acct-own", limits={"standard": Limit(2, 2.0)})
    client.get_record("person", 1)
    client.get_record("person", 2)
    with pytest.raises(RateLimited) as caught:
        client.get_record("person", 3)
    assert caught.value.status is None and 0 < caught.value.retry_after <= 2.1
    assert pd_sandbox.counters()["by_endpoint"]["GET /api/v2/persons/{id}"] == 2


def test_daily_budget_spent_answers_resume_at(pd_sandbox):
    pd_sandbox.configure(daily_budget=12)
    client = PipedriveClient(pd_sandbox.token, base_url=pd_sandbox.base_url, budget=RateBudget(None),
                             wait=False, account="acct-daily")
    client.list_records("person", limit=5)  # 10 tokens
    with pytest.raises(RateLimited) as caught:
        client.list_records("person", limit=5)
    assert caught.value.resume_at is not None and caught.value.resume_at > datetime.now(UTC)
    assert caught.value.policy == "daily"


def test_oauth_refreshes_an_expired_token(pd_sandbox):
    tokens = pd_sandbox.app.state.issue_oauth_tokens(1, expires_in=3600)
    saved = []
    creds = {"access_token": "v1u:expired-or-revoked", "refresh_token": tokens["refresh_token"],
             "client_id": "sandbox-client", "client_secret": "sandbox-secret", "expires_at": 0}
    adapter = PipedriveAdapter(credentials=creds, base_url=pd_sandbox.base_url, cache=MetadataCache(),
                               save_credentials=saved.append)
    assert adapter.account_id() == "7788"
    assert saved and saved[0]["access_token"] != "v1u:expired-or-revoked"
    assert saved[0]["refresh_token"] == tokens["refresh_token"]


def test_fields_and_catalogs(adapter):
    names = adapter.client.field_names("person")
    assert names["name"] == "Name" and "Tier" in names.values()
    assert {p["name"] for p in adapter.client.list_pipelines()} >= {"Sales", "Renewals"}
    assert {s["pipeline_id"] for s in adapter.client.list_stages()} >= {1, 2}
    assert {"call", "task", "deadline"} <= {t["key_string"] for t in adapter.client.list_activity_types()}


def test_wait_mode_waits_out_a_short_429(pd_sandbox):
    pd_sandbox.configure(rate_limit=2)
    client = PipedriveClient(pd_sandbox.token, base_url=pd_sandbox.base_url, budget=None, wait=True, max_wait=3)
    for i in range(3):  # the third call is refused with a 1-2 s retry-after, waited out, then answered
        assert client.get_record("person", i + 1)["id"] == i + 1
    assert pd_sandbox.counters()["rejected"]["burst_2s"] >= 1


def test_contact_with_only_an_email_can_be_pushed(adapter):
    [made] = adapter.create_many("contact", [OutboundRecord("L1", {"email": "solo@example.org"})])
    assert made.ok, made.error
    assert (made.record.fields["first_name"], made.record.fields["last_name"]) == (None, None)
    assert made.record.fields["email"] == "solo@example.org"


def test_webhook_payloads_map_like_api_reads(adapter, pd_sandbox):
    """A v2 webhook `data` and a v1 `current` (object relations, top-level hash keys) map to the same
    unified record as the API's own read of that person."""
    row = pd_sandbox.rows("person")[0]
    from_api = adapter.get_many("contact", [str(row["id"])])[0]
    v1 = {k: v for k, v in row.items() if k not in ("custom_fields", "emails", "phones", "is_deleted")}
    v1.update({"email": row["emails"], "phone": row["phones"], "active_flag": True,
               "org_id": {"value": row["org_id"], "name": "x"} if row["org_id"] else None,
               "owner_id": {"id": row["owner_id"], "value": row["owner_id"]}, **row["custom_fields"]})
    assert adapter.to_remote("contact", v1).fields == from_api.fields
    assert adapter.to_remote("contact", row).associations == from_api.associations


def test_markers_are_created_once_and_stamp_every_create(adapter, pd_sandbox):
    # Persons, organizations and deals take the crmsync_id field; activities cannot (activityFields
    # is read-only), so tasks ask for nothing.
    assert adapter.ensure_markers(["contact", "company", "deal", "task"]) == \
        {"person": "created", "organization": "created", "deal": "created"}
    assert pd_sandbox.requests_to("POST /api/v1/personFields") == 1
    assert adapter.ensure_markers(["contact", "company", "deal"]) == \
        {"person": "present", "organization": "present", "deal": "present"}
    assert pd_sandbox.requests_to("POST /api/v1/personFields") == 1
    [made] = adapter.create_many("contact", [OutboundRecord("local-7", {"first_name": "Stamped", "last_name": "Once"})])
    assert made.ok, made.error
    key = next(f["key"] for f in adapter.client.list_fields("person") if f["name"] == "crmsync_id")
    person = next(r for r in pd_sandbox.rows("person") if str(r["id"]) == made.external_id)
    assert person["custom_fields"][key] == "local-7"


def test_the_sandbox_refuses_a_choice_field_without_options(adapter, pd_sandbox):
    # As Pipedrive's createFieldRequest says: enum and set fields need their options.
    answer = adapter.client.session.post(f"{pd_sandbox.base_url}/api/v1/personFields",
                                         headers={"x-api-token": pd_sandbox.token},
                                         json={"name": "Tier 2", "field_type": "enum"})
    assert answer.status_code == 400 and "Options are required" in answer.text

"""The Salesforce adapter against the sandbox over HTTP: pull (full, incremental by SystemModstamp
with ties broken by Id, look-back for late commits), push through sObject Collections and upserts by
external id, deletions, OAuth refresh (one at a time), the shared budget on REQUEST_LIMIT_EXCEEDED."""
from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crmsync.cache import MetadataCache
from crmsync.platforms.base import OutboundRecord
from crmsync.platforms.errors import AuthenticationError, NotFound, RateLimited, ValidationError
from crmsync.platforms.salesforce import SalesforceAdapter
from crmsync.ratelimit import RateBudget

from .conftest import oauth_credentials


def _drain(adapter, entity, since=None, page_size=10):
    cursor, seen, pages = adapter.start_cursor(entity, since), [], 0
    while cursor is not None:
        json.dumps(cursor)   # the engine stores it verbatim
        page = adapter.list_changed(entity, cursor, page_size=page_size)
        seen += page.records
        cursor, pages = page.cursor, pages + 1
        assert pages < 200
    return seen


def test_account_id_is_the_org_id_from_the_token_answer(adapter, salesforce_sandbox):
    assert adapter.account_id() == salesforce_sandbox.app.options.org_id
    assert adapter.client.auth.instance_url == salesforce_sandbox.base_url


def test_full_pull_maps_every_object_once(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    contacts = _drain(adapter, "contact")
    assert len({r.external_id for r in contacts}) == len(contacts) == 100
    stamps = [(r.updated_at, r.external_id.lower()) for r in contacts]
    assert stamps == sorted(stamps)
    linked = next(r for r in contacts if r.associations["company_id"])
    assert linked.associations["company_id"] in {a["Id"] for a in sf.records("Account")}
    assert isinstance(linked.fields["custom_fields"]["Interests__c"], list)
    deals = _drain(adapter, "deal")
    assert {d.fields["status"] for d in deals} <= {"open", "won", "lost"} and len(deals) == 30
    won = [d for d in deals if d.fields["stage"] == "Closed Won"]
    assert all(d.fields["status"] == "won" for d in won)
    tasks, activities = _drain(adapter, "task"), _drain(adapter, "activity")
    assert len(tasks) + len(activities) == 20 + 10
    assert {a.fields["type"] for a in activities} == {"call", "meeting"}
    assert all(t.fields["status"] in ("not_started", "in_progress", "completed") for t in tasks)


def test_a_burst_of_equal_system_modstamps_pages_by_id(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    before = datetime.now(UTC) - timedelta(seconds=1)
    burst = sf.admin("POST", "burst", {"object": "Contact", "count": 37, "changes": {"Department": "Ops"}})
    adapter.lookback = timedelta(0)
    changed = _drain(adapter, "contact", since=before, page_size=10)
    assert sorted(r.external_id for r in changed) == sorted(burst["ids"])   # each once, none skipped
    assert len({r.updated_at for r in changed}) == 1


def test_incremental_pull_looks_back_for_rows_committed_late(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    sf.configure(late_commit_seconds=90)   # stamped 90 s before it became visible
    cursor_time = datetime.now(UTC) - timedelta(seconds=30)   # a previous sync ended here
    rid = sf.api("POST", "/sobjects/Account/", json={"Name": "Late Commit Ltd"}).json()["id"]
    assert rid in {r.external_id for r in _drain(adapter, "company", since=cursor_time)}
    adapter.lookback = timedelta(0)
    assert rid not in {r.external_id for r in _drain(adapter, "company", since=cursor_time)}


def test_push_creates_by_upsert_updates_and_finds_a_lost_create(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    account = sf.records("Account")[0]["Id"]
    new = [OutboundRecord("L1", {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org",
                                 "custom_fields": {"Tier__c": "Gold", "Interests__c": ["Mobile", "Cloud"]}},
                          associations={"company_id": account}),
           OutboundRecord("L2", {"last_name": "Bad", "email": "not-an-email"})]
    first = adapter.create_many("contact", new)
    assert first[0].ok and isinstance(first[1].error, ValidationError)
    made = first[0].record
    assert made.associations == {"company_id": account}
    assert made.fields["custom_fields"] == {"Tier__c": "Gold", "Interests__c": ["Mobile", "Cloud"]}
    again = adapter.create_many("contact", new[:1])     # a retried create: the same record, no twin
    assert again[0].external_id == first[0].external_id
    assert sum(1 for c in sf.records("Contact") if c["Email"] == "ada@example.org") == 1
    assert adapter.find_existing("contact", new[0]) == first[0].external_id
    [moved] = adapter.update_many("contact", [OutboundRecord("L1", {"job_title": "Countess"},
                                                             external_id=first[0].external_id,
                                                             associations={"company_id": None})])
    assert moved.record.fields["job_title"] == "Countess" and moved.record.associations == {"company_id": None}
    [missing] = adapter.update_many("contact", [OutboundRecord("L9", {"phone": "1"}, external_id="003000000000000AAA")])
    assert isinstance(missing.error, NotFound)


def test_deal_stage_and_close_date_round_trip(adapter):
    [deal] = adapter.create_many("deal", [OutboundRecord("D1", {
        "name": "Renewal", "stage": "Negotiation/Review", "amount": 1200.5,
        "close_date": datetime(2026, 3, 31, tzinfo=UTC), "status": "won"})])
    assert deal.ok, deal.error
    fields = deal.record.fields
    assert (fields["stage"], fields["amount"], fields["status"]) == ("Negotiation/Review", 1200.5, "open")
    assert fields["close_date"] == datetime(2026, 3, 31, tzinfo=UTC) and fields["probability"] == 90.0
    [bad] = adapter.create_many("deal", [OutboundRecord("D2", {"name": "x", "stage": "Nope",
                                                                "close_date": datetime(2026, 1, 1, tzinfo=UTC)})])
    assert isinstance(bad.error, ValidationError) and "RESTRICTED_PICKLIST" in str(bad.error)


def test_activities_and_tasks_are_written_to_their_objects(adapter, salesforce_sandbox):
    contact = salesforce_sandbox.records("Contact")[0]["Id"]
    when = datetime(2026, 5, 4, 10, 30, tzinfo=UTC)
    results = adapter.create_many("activity", [
        OutboundRecord("A1", {"type": "call", "subject": "Intro", "occurred_at": when, "duration_minutes": 12,
                              "direction": "outbound"}, associations={"contact_id": contact}),
        OutboundRecord("A2", {"type": "meeting", "subject": "Demo", "occurred_at": when, "duration_minutes": 45}),
        OutboundRecord("A3", {"type": "note", "subject": "x"}),
        OutboundRecord("A4", {"type": "email", "subject": "Proposal sent", "occurred_at": when},
                       associations={"contact_id": contact})])
    assert results[0].external_id.startswith("00T") and results[1].external_id.startswith("00U")
    # A logged email is a Task of subtype Email: an activity, read back as one, never a to-do.
    email = results[3]
    assert email.ok, email.error
    assert email.external_id.startswith("00T") and email.record.fields["type"] == "email"
    stored = next(t for t in salesforce_sandbox.records("Task") if t["Id"] == email.external_id)
    assert (stored["TaskSubtype"], stored["Type"], stored["Status"]) == ("Email", "Email", "Completed")
    assert adapter.get_many("task", [email.external_id]) == []
    assert [r.fields["type"] for r in adapter.get_many("activity", [email.external_id])] == ["email"]
    assert email.external_id in {r.external_id for r in _drain(adapter, "activity")}    # listed (SOQL) as one
    assert email.external_id not in {r.external_id for r in _drain(adapter, "task")}
    assert results[0].record.fields["duration_minutes"] == 12 and results[0].record.associations["contact_id"] == \
        contact
    assert results[1].record.fields["occurred_at"] == when
    assert isinstance(results[2].error, ValidationError)
    [task] = adapter.create_many("task", [OutboundRecord("T1", {"title": "Send contract", "status": "waiting",
                                                                "priority": "high"})])
    assert (task.record.fields["status"], task.record.fields["priority"]) == ("waiting", "high")
    assert adapter.get_many("task", [results[0].external_id]) == []     # a call is not a task
    assert [r.external_id for r in adapter.get_many("activity", [results[0].external_id])] == \
        [results[0].external_id]


def test_archive_many_deletes_and_twice_is_fine(adapter, salesforce_sandbox):
    ids = [c["Id"] for c in salesforce_sandbox.records("Contact")[:3]]
    assert all(r.ok for r in adapter.archive_many("contact", ids[:2] + ids[:1]))   # twice is fine
    assert [r.external_id for r in adapter.get_many("contact", ids)] == [ids[2]]


def test_expired_session_is_refreshed_once_for_many_threads(salesforce_sandbox):
    sf = salesforce_sandbox
    saved = []
    adapter = SalesforceAdapter(credentials=oauth_credentials(sf.app), base_url=sf.base_url, cache=MetadataCache(),
                                save_credentials=saved.append)
    adapter.account_id()
    issued = sf.app.sessions.issued
    sf.admin("POST", "oauth/expire")
    errors = []

    def work():
        try:
            adapter.client.query_records("SELECT Id FROM Account LIMIT 1")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sf.app.sessions.issued == issued + 1
    assert saved[-1]["access_token"] and saved[-1]["instance_url"] == sf.base_url
    assert "refresh_token" in saved[-1]


def test_revoked_refresh_token_is_an_authentication_error(salesforce_sandbox):
    sf = salesforce_sandbox
    creds = {**oauth_credentials(sf.app), "refresh_token": "revoked"}
    adapter = SalesforceAdapter(credentials=creds, base_url=sf.base_url, cache=MetadataCache())
    with pytest.raises(AuthenticationError) as err:
        adapter.account_id()
    assert "revoked" not in str(err.value) and "invalid_grant" in str(err.value)


def test_jwt_bearer_sign_in(salesforce_sandbox):
    sf = salesforce_sandbox
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    sf.admin("POST", "oauth/jwt", {"client_id": "jwt-app", "public_key": public, "username": "sync@acme.test"})
    adapter = SalesforceAdapter(credentials={"client_id": "jwt-app", "username": "sync@acme.test",
                                             "private_key": pem}, base_url=sf.base_url, cache=MetadataCache())
    assert adapter.account_id() == sf.app.options.org_id
    assert len(_drain(adapter, "company")) == 20


def test_spent_allocation_parks_the_org_in_the_shared_budget(salesforce_sandbox):
    sf = salesforce_sandbox
    sf.configure(api_limit=50)
    budget = RateBudget(None)
    adapter = SalesforceAdapter(credentials=oauth_credentials(sf.app), base_url=sf.base_url, cache=MetadataCache(),
                                budget=budget, wait=False)
    adapter.account_id()
    sf.admin("POST", "usage", {"used": 50})
    with pytest.raises(RateLimited) as first:
        adapter.client.query_records("SELECT Id FROM Account")
    assert first.value.policy == "daily" and first.value.resume_at > datetime.now(UTC) + timedelta(seconds=1)
    served = sf.app.log.total
    other = SalesforceAdapter(credentials=oauth_credentials(sf.app), base_url=sf.base_url, cache=MetadataCache(),
                              budget=budget, wait=False, account_id=sf.app.options.org_id)
    with pytest.raises(RateLimited) as second:
        other.client.query_records("SELECT Id FROM Account")
    assert second.value.resume_at is not None
    assert sf.app.log.total == served     # parked by our budget: Salesforce was not asked again


def test_allocation_is_learned_from_sforce_limit_info(salesforce_sandbox):
    sf = salesforce_sandbox
    sf.configure(api_limit=1000)
    sf.admin("POST", "usage", {"used": 997})
    budget = RateBudget(None)
    adapter = SalesforceAdapter(credentials=oauth_credentials(sf.app), base_url=sf.base_url, cache=MetadataCache(),
                                budget=budget, wait=False, account_id=sf.app.options.org_id)
    adapter.client.query_records("SELECT Id FROM Account LIMIT 1")    # token call free, query -> 998/1000
    assert adapter.client.api_usage == (998, 1000)
    adapter.client.query_records("SELECT Id FROM Account LIMIT 1")
    adapter.client.query_records("SELECT Id FROM Account LIMIT 1")    # 1000/1000: nothing left
    served = sf.app.log.total
    with pytest.raises(RateLimited):
        adapter.client.query_records("SELECT Id FROM Account LIMIT 1")
    assert sf.app.log.total == served


def test_bulk_query_reads_every_row(adapter):
    rows = list(adapter.client.bulk_query("SELECT Id, Email FROM Contact", page_records=30, poll_seconds=0))
    assert len({r["Id"] for r in rows}) == 100


def test_the_sweep_lists_every_live_id_once(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    gone = sf.records("Contact")[0]["Id"]
    sf.delete("Contact", gone)
    adapter.refresh_metadata("contact")
    listed, cursor, pages = [], None, 0
    while True:
        page = adapter.list_ids("contact", cursor, page_size=30)
        json.dumps(page.cursor)   # the sweep stores it
        listed += page.ids
        cursor, pages = page.cursor, pages + 1
        if cursor is None:
            break
    ids = [i for i, _ in listed]
    assert sorted(ids) == sorted(c["Id"] for c in sf.records("Contact")) and gone not in ids
    assert len(ids) == len(set(ids)) == 99 and pages == 4
    assert all(isinstance(stamp, datetime) for _, stamp in listed)
    tasks = {i for i, _ in adapter.list_ids("task", None).ids}
    calls = {i for i, _ in _all_ids(adapter, "activity") if i.startswith("00T")}
    assert tasks and calls and not tasks & calls   # a Task is a task or a call, never both


def _all_ids(adapter, entity):
    cursor, out = None, []
    while True:
        page = adapter.list_ids(entity, cursor)
        out += page.ids
        if page.cursor is None:
            return out
        cursor = page.cursor


def test_a_big_full_pull_reads_through_one_bulk_job_and_incrementals_stay_on_soql(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    by_soql = {r.external_id: r for r in _drain(adapter, "contact", page_size=2000)}
    adapter.bulk_threshold = 50                      # the sandbox's 100 contacts count as a big object
    log = sf.app.log
    jobs_before = log.by_endpoint.get("POST jobs/query", 0)
    cursor = adapter.start_cursor("contact", None)
    first = adapter.list_changed("contact", cursor, page_size=40)
    assert len(first.records) == 40 and first.cursor["bulk"]["locator"]
    again = adapter.list_changed("contact", first.cursor, page_size=40)     # a unit run twice reads the same
    assert [r.external_id for r in again.records] == \
        [r.external_id for r in adapter.list_changed("contact", first.cursor, page_size=40).records]
    by_bulk = {r.external_id: r for r in first.records + _drain_from(adapter, "contact", first.cursor, 40)}
    assert log.by_endpoint.get("POST jobs/query", 0) - jobs_before == 1
    # The same records, typed alike: numbers, booleans, dates and lists as the REST API gives them.
    assert by_bulk.keys() == by_soql.keys()
    for ext, record in by_soql.items():
        assert by_bulk[ext].fields == record.fields and by_bulk[ext].associations == record.associations
    # A pull since a moment never makes a job, however big the object.
    _drain(adapter, "contact", since=datetime.now(UTC) - timedelta(days=1))
    assert log.by_endpoint.get("POST jobs/query", 0) - jobs_before == 1


def test_a_bulk_pull_of_activities_leaves_the_tasks_out(adapter, salesforce_sandbox):
    by_soql = {r.external_id for r in _drain(adapter, "activity")}
    adapter.bulk_threshold = 1
    assert {r.external_id for r in _drain(adapter, "activity", page_size=7)} == by_soql
    assert not by_soql & {r.external_id for r in _drain(adapter, "task", page_size=7)}


def _drain_from(adapter, entity, cursor, page_size):
    seen = []
    while cursor is not None:
        json.dumps(cursor)   # the engine stores it verbatim
        page = adapter.list_changed(entity, cursor, page_size=page_size)
        seen += page.records
        cursor = page.cursor
    return seen

"""Contract tests of HubSpotClient against the HubSpot sandbox: every call, 207 partial
failures, 409 conflicts, error classes, batch splitting, OAuth refresh and the rate budget."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.platforms.errors import AuthenticationError, Conflict, NotFound, RateLimited, ValidationError
from crmsync.platforms.hubspot import HubSpotClient
from crmsync.ratelimit import Limit, RateBudget


def endpoint_count(app, endpoint: str) -> int:
    return sum(v for k, v in app.counters(0)["by_endpoint"].items() if endpoint in k)


def changed_since(client, object_type: str, since: datetime) -> list[dict]:
    records, _, _ = client.search_changed(object_type, client.changed_cursor(object_type, since, timedelta(0)))
    return records


def test_contact_calls(hs):
    c = hs.client
    made = c.create_object("contacts", {"email": "ada@example.com", "firstname": "Ada"})
    assert made["properties"]["email"] == "ada@example.com"
    assert c.get_object("contacts", made["id"], properties=["firstname"])["properties"]["firstname"] == "Ada"
    assert c.get_object("contacts", "ada@example.com", id_property="email")["id"] == made["id"]
    c.update_object("contacts", made["id"], {"lastname": "Lovelace"})
    by_email = [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "ada@example.com"}]}]
    assert c.search("contacts", filter_groups=by_email)["results"][0]["id"] == made["id"]
    assert c.search("contacts", query="Lovelace")["results"][0]["id"] == made["id"]
    recent = changed_since(c, "contacts", datetime.now(UTC) - timedelta(minutes=1))
    assert [r["id"] for r in recent] == [made["id"]]
    c.archive_object("contacts", made["id"])
    with pytest.raises(NotFound):
        c.get_object("contacts", made["id"])


@pytest.mark.parametrize("plural,props", [
    ("companies", {"name": "Acme", "domain": "acme.example"}),
    ("deals", {"dealname": "Renewal", "dealstage": "qualifiedtobuy", "pipeline": "default"}),
    ("tasks", {"hs_timestamp": "1700000000000", "hs_task_subject": "Call back"}),
    ("notes", {"hs_timestamp": "1700000000000", "hs_note_body": "hello"}),
    ("calls", {"hs_timestamp": "1700000000000", "hs_call_title": "Intro"}),
    ("meetings", {"hs_timestamp": "1700000000000", "hs_meeting_title": "Demo"}),
    ("emails", {"hs_timestamp": "1700000000000", "hs_email_direction": "EMAIL", "hs_email_subject": "Hi"}),
])
def test_calls_of_every_object_type(hs, plural, props):
    c = hs.client
    made = c.create_object(plural, props)
    assert c.get_object(plural, made["id"])["id"] == made["id"]
    c.update_object(plural, made["id"], {k: v for k, v in props.items() if k != "hs_timestamp"})
    assert made["id"] in [r["id"] for r in changed_since(c, plural, datetime.now(UTC) - timedelta(minutes=1))]
    items = c.batch_create(plural, [{"properties": props}] * 3)
    ids = [i.object["id"] for i in items]
    assert all(i.ok for i in items) and len(set(ids)) == 3
    read = c.batch_read(plural, ids + ["999999"])
    assert sorted(read) == sorted(ids)
    c.batch_archive(plural, ids)
    assert c.batch_read(plural, ids) == {}


def test_409_conflict_carries_the_existing_id(hs):
    first = hs.client.create_object("contacts", {"email": "dup@example.com"})
    with pytest.raises(Conflict) as info:
        hs.client.create_object("contacts", {"email": "DUP@example.com"})
    assert info.value.existing_id == first["id"] and info.value.status == 409
    # a batch HubSpot refuses whole with 409 is answered per input
    items = hs.client.batch_create("contacts", [{"properties": {"email": "new1@example.com"}},
                                                {"properties": {"email": "dup@example.com"}},
                                                {"properties": {"email": "new2@example.com"}}])
    assert [i.ok for i in items] == [True, False, True]
    assert isinstance(items[1].error, Conflict) and items[1].error.existing_id == first["id"]
    assert items[0].object["properties"]["email"] == "new1@example.com"


def test_207_partial_failures_become_per_item_results(hs):
    a = hs.client.create_object("contacts", {"email": "a@example.com"})
    b = hs.client.create_object("contacts", {"email": "b@example.com"})
    items = hs.client.batch_update("contacts", [{"id": a["id"], "properties": {"firstname": "A"}},
                                                {"id": "424242", "properties": {"firstname": "X"}},
                                                {"id": b["id"], "properties": {"firstname": "B"}}])
    assert [i.ok for i in items] == [True, False, True]
    assert isinstance(items[1].error, NotFound)
    assert items[2].object["properties"]["firstname"] == "B"
    # invalid values in a batch create with trace ids: 207, the good inputs are created
    made = hs.client.batch_create("contacts", [{"properties": {"email": "ok@example.com"}},
                                               {"properties": {"email": "not-an-email"}}])
    assert made[0].ok and isinstance(made[1].error, ValidationError)
    found = hs.client.batch_read("contacts", ["a@example.com", "zz@example.com"], id_property="email")
    assert list(found) == ["a@example.com"]


def test_batch_upsert_by_email(hs):
    hs.client.create_object("contacts", {"email": "up@example.com", "firstname": "Old"})
    items = hs.client.batch_upsert("contacts", [
        {"id": "up@example.com", "properties": {"firstname": "New"}},
        {"id": "fresh@example.com", "properties": {"email": "fresh@example.com", "firstname": "F"}}],
        id_property="email")
    assert all(i.ok for i in items)
    assert hs.client.get_object("contacts", "up@example.com", id_property="email",
                                 properties=["firstname"])["properties"]["firstname"] == "New"
    assert hs.client.get_object("contacts", "fresh@example.com", id_property="email")["id"] == items[1].object["id"]


def test_batches_split_at_100(hs):
    items = hs.client.batch_create("companies", [{"properties": {"name": f"C{i}"}} for i in range(250)])
    assert len(items) == 250 and all(i.ok for i in items)
    assert [i.object["properties"]["name"] for i in items] == [f"C{i}" for i in range(250)]
    assert endpoint_count(hs.app, "batch/create") == 3
    read = hs.client.batch_read("companies", [i.object["id"] for i in items])
    assert len(read) == 250 and endpoint_count(hs.app, "batch/read") == 3


def test_error_classes(hs):
    with pytest.raises(AuthenticationError) as info:
        HubSpotClient("pat-na1-wrong", hs.base_url).get_object("contacts", "1")
    assert info.value.status == 401 and "pat-na1-wrong" not in str(info.value)
    with pytest.raises(ValidationError):
        hs.client.create_object("contacts", {"no_such_property": "x"})
    with pytest.raises(NotFound):
        hs.client.update_object("contacts", "777777", {"firstname": "x"})


def test_transient_errors_are_retried_for_safe_calls(hs):
    made = hs.client.create_object("contacts", {"email": "t@example.com"})
    hs.app.configure(faults={"error_rate": 0.5, "seed": 3})
    for _ in range(6):
        assert hs.client.get_object("contacts", made["id"])["id"] == made["id"]
    assert hs.app.counters(0)["faults_injected"]  # some calls did fail and were retried


def test_429_raises_rate_limited_without_wait_and_is_waited_out_with_budget(hs):
    hs.app.configure(rate_limit=3, rate_window_ms=1000)
    nowait = HubSpotClient(hs.token, hs.base_url, wait=False)
    with pytest.raises(RateLimited) as info:
        for _ in range(5):
            nowait.get_account_details()
    assert info.value.policy == "standard" and info.value.retry_after == 1.0
    # with a shared budget sized like the portal's window, no request is refused at all
    hs.app.configure(rate_limit=5, rate_window_ms=1000)
    hs.app.log.reset()
    budget = RateBudget(None)
    client = HubSpotClient(hs.token, hs.base_url, budget=budget, account_id="acct-429",
                           limits={"standard": Limit(5, 1.0), "search": Limit(5, 1.0)})
    for _ in range(12):
        client.get_account_details()
    assert hs.app.counters(0)["by_status"] == {"200": 12}


def test_daily_limit_resumes_at_midnight(hs):
    hs.app.configure(daily_limit=1)
    hs.app.daily.configure(1)
    client = HubSpotClient(hs.token, hs.base_url, wait=True, time_zone="US/Eastern")
    with pytest.raises(RateLimited) as info:
        for _ in range(3):
            client.get_account_details()
    err = info.value
    assert err.policy == "daily" and err.resume_at is not None
    local = err.resume_at.astimezone(__import__("zoneinfo").ZoneInfo("US/Eastern"))
    assert (local.hour, local.minute) == (0, 0) and err.resume_at > datetime.now(UTC)


def test_oauth_refresh_before_expiry_and_on_expired_token(hs):
    saved = []
    creds = {"client_id": hs.app.options.client_id, "client_secret": hs.app.options.client_secret,
             "refresh_token": hs.app.options.refresh_token}
    client = HubSpotClient(creds, hs.base_url, save_credentials=saved.append)
    threads = [threading.Thread(target=client.get_account_details) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.auth.refreshes == 1 and saved[-1]["access_token"]
    assert hs.app.options.client_secret not in repr(client.auth)
    hs.app.expire_access_tokens(5)  # HubSpot now answers 401 EXPIRED_AUTHENTICATION
    assert client.get_account_details()["portalId"]
    assert client.auth.refreshes == 2 and len(saved) == 2


def test_oauth_refresh_is_one_at_a_time_across_clients_with_redis(hs, redis_client):
    creds = {"client_id": hs.app.options.client_id, "client_secret": hs.app.options.client_secret,
             "refresh_token": hs.app.options.refresh_token}
    clients = [HubSpotClient(dict(creds), hs.base_url, redis_client=redis_client, account_id="oauth-lock-test")
               for _ in range(4)]
    threads = [threading.Thread(target=c.get_account_details) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(c.auth.refreshes == 1 for c in clients)


def test_bad_refresh_token_is_an_authentication_error_without_secrets(hs):
    creds = {"client_id": "x", "client_secret": "top-secret-value", "refresh_token": "na1-bad-refresh"}
    with pytest.raises(AuthenticationError) as info:
        HubSpotClient(creds, hs.base_url).get_account_details()
    assert "top-secret-value" not in str(info.value) and "na1-bad-refresh" not in str(info.value)

"""A CRM keeps values our columns cannot (HubSpot: a text property of up to 65,536 characters, a
NUL character, any number): one such record, which anybody can make through a web form, must not
fail its page, and with it every later sync of the config. It is counted failed and left out; the
rest of the page is stored."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from crmsync.sync.apply import _unstorable


@pytest.mark.parametrize("kind,properties", [
    ("contacts", {"firstname": "x" * 300}),            # first_name holds 200
    ("contacts", {"lastname": "Null\x00byte"}),         # PostgreSQL text holds no NUL
    ("companies", {"numberofemployees": "1000000000000"}),   # employee_count is a 32-bit integer
])
def test_a_record_our_columns_cannot_hold_fails_alone(world, hubspot_sandbox, caplog, kind, properties):
    entity, key = {"contacts": ("contact", "email"), "companies": ("company", "domain")}[kind]

    def named(name: str) -> str:
        return f"{name}@example.org" if key == "email" else f"{name}.example.org"

    hubspot_sandbox.admin("POST", f"records/{kind}", {"properties": {key: named("ok")}})
    bad_id = hubspot_sandbox.admin("POST", f"records/{kind}", {"properties": {key: named("bad"), **properties}})["id"]
    job = world.sync()
    assert job["status"] == "succeeded", job["error"]
    assert job["counts"][entity]["created"] == 1 and job["counts"][entity]["failed"] == 1, job["counts"][entity]
    assert [r[key] for r in world.rows(entity)] == [named("ok")]
    assert str(bad_id) not in world.links(entity)
    assert any(str(bad_id) in r.getMessage() and "not stored" in r.getMessage() for r in caplog.records)
    # The job names it (id and reason, never the value), as a push names what it could not write.
    assert len(job["counts"]["errors"]) == 1
    assert job["counts"]["errors"][0].startswith(f"hubspot {entity} {bad_id}: not stored: ")
    assert "x" * 201 not in job["counts"]["errors"][0] and "1000000000000" not in job["counts"]["errors"][0]
    # Nor is the next sync blocked: a new record arrives.
    hubspot_sandbox.admin("POST", f"records/{kind}", {"properties": {key: named("later")}})
    again = world.sync()
    assert again["status"] == "succeeded", again["error"]
    assert sorted(r[key] for r in world.rows(entity)) == sorted([named("later"), named("ok")])


def test_a_sweep_says_which_record_it_could_not_store_and_why(world, hubspot_sandbox):
    """The job's view names a record counted failed (its id and the reason, never its value), as
    it names the records a push could not write."""
    hubspot_sandbox.admin("POST", "records/companies", {"properties": {"domain": "ok.example.org"}})
    bad_id = hubspot_sandbox.admin("POST", "records/companies", {"properties": {
        "domain": "bad.example.org", "numberofemployees": "1000000000000"}})["id"]
    assert world.sync()["counts"]["company"]["failed"] == 1
    job = world.sync(trigger="sweep")           # lists it as remote-only, repairs it: fails again
    assert job["status"] == "succeeded", job["error"]
    assert job["counts"]["company"]["failed"] == 1
    assert job["counts"]["errors"] == [
        f"hubspot company {bad_id}: not stored: employee_count is beyond a 32-bit whole number"]


def test_a_push_that_meets_an_unstorable_crm_record_says_which(world, hubspot_sandbox):
    """A create HubSpot refuses with 409 (the email is taken) links to the record there and merges
    it; when that record cannot be stored here, the job says which and why."""
    from crmsync.db import session_scope
    from crmsync.db.models import Contact, SyncConfig
    bad_id = hubspot_sandbox.admin("POST", "records/contacts", {"properties": {
        "email": "dup@example.org", "firstname": "x" * 300}})["id"]
    with session_scope(world.db_url) as s:
        s.get(SyncConfig, world.config_id).sync_direction = "push"
        s.add(Contact(tenant_id=world.tenant_id, email="dup@example.org", first_name="Here"))
    job = world.sync()
    assert job["status"] == "succeeded", job["error"]
    assert job["counts"]["errors"] == [
        f"hubspot contact {bad_id}: not stored: first_name has 300 characters, more than the 200 stored here"]
    assert "x" * 50 not in str(job)


@pytest.mark.parametrize("fields,why", [
    ({"tags": ["vip", "b\x00d"]}, "tags holds a NUL character"),
    ({"custom_fields": {"interests": ["golf", "ch\x00ess"]}}, "custom field 'interests' holds a NUL character"),
    ({"custom_fields": {"ke\x00y": "value"}}, "custom field 'ke?y' holds a NUL character"),
    ({"email": "b\x00d@example.org"}, "email holds a NUL character"),    # the page's probe asks by email
])
def test_a_nul_nested_in_a_list_or_a_key_fails_its_record_alone(world, fields, why):
    """jsonb refuses a NUL anywhere, inside a list (tags, a multi-value field) or a key too: such a
    record fails alone, not its page."""
    from datetime import UTC, datetime

    from crmsync.db import session_scope
    from crmsync.db.models import SyncConfig
    from crmsync.platforms.base import RemoteRecord
    from crmsync.sync.apply import apply_remote_records
    now = datetime(2026, 12, 1, tzinfo=UTC)
    records = [RemoteRecord("contact", "901", {"email": "bad@example.org", **fields}, now),
               RemoteRecord("contact", "902", {"email": "ok@example.org", "tags": ["vip"]}, now)]
    with session_scope(world.db_url) as s:
        result = apply_remote_records(s, s.get(SyncConfig, world.config_id), "contact", records)
    assert (result.created, result.failed) == (1, 1)
    assert result.not_stored == {"901": why}
    assert [r["email"] for r in world.rows()] == ["ok@example.org"]


class Tag(str):
    """A str subclass, as some JSON decoders hand back."""


@pytest.mark.parametrize(("entity", "fields", "why"), [
    ("company", {"name": "Acme", "employee_count": 2**31}, "employee_count is beyond a 32-bit whole number"),
    ("company", {"employee_count": "3000000000"}, "employee_count is beyond a 32-bit whole number"),
    ("company", {"employee_count": 3.5e9}, "employee_count is beyond a 32-bit whole number"),
    ("company", {"employee_count": Decimal("-3e9")}, "employee_count is beyond a 32-bit whole number"),
    ("contact", {"first_name": Tag("x" * 201)}, "first_name has 201 characters, more than the 200 stored here"),
    ("contact", {"first_name": Tag("a\x00")}, "first_name holds a NUL character"),
    ("contact", {"tags": ["ok", ["deep\x00"]]}, "tags holds a NUL character"),
    ("contact", {"custom_fields": {"score": ["a", {"k\x00": 1}]}}, "custom field 'score' holds a NUL character"),
    ("contact", {"custom_fields": {"sc\x00re": "1"}}, "custom field 'sc?re' holds a NUL character"),
])
def test_every_kind_of_value_is_checked(entity, fields, why):
    assert _unstorable(entity, fields) == why


@pytest.mark.parametrize(("entity", "fields"), [
    ("company", {"employee_count": 2**31 - 1, "name": "Acme", "domain": None}),
    ("company", {"employee_count": float("nan")}),
    ("company", {"employee_count": ""}),
    ("company", {"employee_count": "many"}),     # not a number: the column's own conversion decides
    ("contact", {"first_name": "x" * 200, "created_at": datetime(2026, 1, 1, tzinfo=UTC), "lead_score": True,
                 "tags": ["a", "b"], "custom_fields": {"score": 3, "note": None}}),
])
def test_what_fits_is_kept(entity, fields):
    assert _unstorable(entity, fields) is None

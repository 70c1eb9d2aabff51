"""Pipedrive <-> unified mappers: examples from the reference's payloads, and round trips."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.entities import validate_record
from crmsync.platforms.pipedrive.mapping import (
    MappingError,
    classify_pipedrive_activity,
    extract_pipedrive_custom_fields,
    map_pipedrive_activity_to_unified,
    map_pipedrive_activity_to_unified_task,
    map_pipedrive_deal_to_unified,
    map_pipedrive_organization_to_unified,
    map_pipedrive_person_to_unified,
    map_unified_activity_to_pipedrive,
    map_unified_company_to_pipedrive,
    map_unified_contact_to_pipedrive,
    map_unified_deal_to_pipedrive,
    map_unified_task_to_pipedrive,
    split_name,
    to_pipedrive,
    to_unified,
)
from tests.platforms.pipedrive.metadata import account_metadata, key

META = account_metadata()
TIER = key("person", "Tier")
SCORE = key("person", "Score")
LEAD_SOURCE = key("person", "Lead Source")
INTERESTS = key("person", "Interests")

V2_PERSON = {
    "id": 1201, "name": "Liis Tamm", "first_name": "Liis", "last_name": "Tamm", "owner_id": 55, "org_id": 301,
    "add_time": "2024-11-02T08:01:12Z", "update_time": "2025-02-14T16:40:03Z",
    "emails": [{"value": "liis@northwind.test", "primary": True, "label": "work"}],
    "phones": [{"value": "+3725550101", "primary": True, "label": "work"}],
    "is_deleted": False, "visible_to": 3, "label_ids": [7], "picture_id": None,
    "custom_fields": {TIER: 31, SCORE: 12.5, INTERESTS: [41, 43], LEAD_SOURCE: "webinar"},
}


def test_v2_person_to_contact():
    contact = map_pipedrive_person_to_unified(V2_PERSON, META)
    assert contact["first_name"] == "Liis" and contact["last_name"] == "Tamm"
    assert contact["email"] == "liis@northwind.test" and contact["phone"] == "+3725550101"
    assert contact["company_id"] == "301" and contact["owner_id"] == "55"
    assert contact["tags"] == ["Customer"]
    assert contact["updated_at"] == datetime(2025, 2, 14, 16, 40, 3, tzinfo=UTC)
    # custom fields by name, options as labels, nothing keyed by hash
    assert contact["custom_fields"] == {"Tier": "Gold", "Score": 12.5, "Interests": ["golf", "chess"],
                                        "Lead Source": "webinar"}
    assert validate_record("contact", contact) == {}


def test_v1_person_shape_is_understood():
    v1 = {"id": 1201, "name": "Liis Tamm", "owner_id": {"id": 55, "name": "Mara", "value": 55},
          "org_id": {"name": "Northwind OÜ", "value": 301}, "active_flag": True,
          "email": [{"label": "work", "value": "liis@northwind.test", "primary": True}],
          "phone": [{"label": "mobile", "value": "+3725550101", "primary": True}],
          "update_time": "2025-02-14 16:40:03", TIER: "31", INTERESTS: "41,42"}
    contact = map_pipedrive_person_to_unified(v1, META)
    assert (contact["first_name"], contact["last_name"]) == ("Liis", "Tamm")
    assert contact["company_id"] == "301" and contact["owner_id"] == "55"
    assert contact["updated_at"] == datetime(2025, 2, 14, 16, 40, 3, tzinfo=UTC)
    assert contact["custom_fields"]["Tier"] == "Gold"
    assert contact["custom_fields"]["Interests"] == ["golf", "sailing"]
    # a non-default label is kept so the phone array goes back as it was
    assert contact["custom_fields"]["phones"] == [{"value": "+3725550101", "label": "mobile", "primary": True}]


def test_name_split_when_first_last_absent():
    assert split_name("Ada Lovelace Byron") == ("Ada", "Lovelace Byron")
    assert split_name("Cher") == ("Cher", None)
    contact = map_pipedrive_person_to_unified({"id": 1, "name": "Ada Lovelace Byron"})
    assert (contact["first_name"], contact["last_name"]) == ("Ada", "Lovelace Byron")


def test_extra_emails_survive_in_custom_fields():
    person = dict(V2_PERSON, emails=[{"value": "b@x.test", "primary": False, "label": "home"},
                                     {"value": "a@x.test", "primary": True, "label": "work"}])
    contact = map_pipedrive_person_to_unified(person, META)
    assert contact["email"] == "a@x.test"
    assert len(contact["custom_fields"]["emails"]) == 2
    contact["email"] = "new@x.test"  # a local edit of the primary email
    body = map_unified_contact_to_pipedrive(contact, META)
    assert body["emails"] == [{"value": "b@x.test", "label": "home", "primary": False},
                              {"value": "new@x.test", "label": "work", "primary": True}]
    assert "emails" not in body.get("custom_fields", {})


def test_contact_to_person_body():
    body = map_unified_contact_to_pipedrive(
        {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@x.test", "company_id": "301",
         "owner_id": "55", "tags": ["VIP"], "custom_fields": {"Tier": "Silver", "Interests": ["chess"],
                                                              "hs_unknown_property": "dropped"}}, META)
    assert body["name"] == "Ada Lovelace"
    assert body["emails"] == [{"value": "ada@x.test", "label": "work", "primary": True}]
    assert body["org_id"] == 301 and body["owner_id"] == 55 and body["label_ids"] == [9]
    assert body["custom_fields"] == {TIER: 32, INTERESTS: [43]}


def test_partial_contact_gives_partial_body():
    assert map_unified_contact_to_pipedrive({"phone": "+1 555"}, META) == {
        "phones": [{"value": "+1 555", "label": "work", "primary": True}]}


def test_field_mappings_in_both_directions():
    mappings = {"lead_source": "Lead Source", "lead_score": SCORE}
    contact = map_pipedrive_person_to_unified(V2_PERSON, META, mappings)
    assert contact["lead_source"] == "webinar" and contact["lead_score"] == 12.5
    assert "Lead Source" not in contact["custom_fields"] and "Score" not in contact["custom_fields"]
    body = map_unified_contact_to_pipedrive({"lead_source": "fair", "lead_score": 40.0}, META, mappings)
    assert body["custom_fields"] == {LEAD_SOURCE: "fair", SCORE: 40.0}


def test_unknown_option_label_is_a_mapping_error():
    with pytest.raises(MappingError):
        map_unified_contact_to_pipedrive({"custom_fields": {"Tier": "Platinum"}}, META)
    with pytest.raises(MappingError):
        map_unified_contact_to_pipedrive({"tags": ["no such label"]}, META)


def test_custom_field_unknown_to_metadata_keeps_its_hash():
    stray = "0123456789abcdef0123456789abcdef01234567"
    assert extract_pipedrive_custom_fields({"custom_fields": {stray: "x"}}, META, "person") == {stray: "x"}
    assert map_unified_contact_to_pipedrive({"custom_fields": {stray: "x"}}, META)["custom_fields"] == {stray: "x"}


def test_organization_to_company_and_back():
    org = {"id": 301, "name": "Northwind OÜ", "owner_id": 55, "address": {"value": "Tartu mnt 1, Tallinn",
           "locality": "Tallinn", "country": "Estonia"}, "website": "https://northwind.test",
           "custom_fields": {key("organization", "Domain"): "northwind.test",
                             key("organization", "Segment"): 52}}
    company = map_pipedrive_organization_to_unified(org, META, {"domain": "Domain"})
    assert company["name"] == "Northwind OÜ" and company["city"] == "Tallinn" and company["country"] == "Estonia"
    assert company["domain"] == "northwind.test" and company["website"] == "https://northwind.test"
    assert company["custom_fields"]["Segment"] == "Enterprise"
    body = map_unified_company_to_pipedrive(company, META, {"domain": "Domain"})
    assert body["custom_fields"] == {key("organization", "Segment"): 52, key("organization", "Domain"): "northwind.test"}
    # the street rides along in custom_fields["address"], so a city edit does not erase it
    assert company["custom_fields"]["address"]["value"] == "Tartu mnt 1, Tallinn"
    body = map_unified_company_to_pipedrive(dict(company, city="Tartu"), META)
    assert body["address"] == {"value": "Tartu mnt 1, Tallinn", "locality": "Tartu", "country": "Estonia"}


def test_deal_stage_ids_become_names():
    deal = map_pipedrive_deal_to_unified(
        {"id": 880, "title": "Licence", "owner_id": 55, "person_id": 1201, "org_id": 301, "pipeline_id": 2,
         "stage_id": 3, "value": 12000, "currency": "EUR", "status": "won", "probability": None,
         "expected_close_date": "2025-03-31", "custom_fields": {key("deal", "ARR"): {"value": 2300, "currency": "EUR"}}},
        META)
    assert deal["stage"] == "Qualified" and deal["pipeline"] == "Renewals" and deal["status"] == "won"
    assert deal["amount"] == 12000.0 and deal["close_date"] == datetime(2025, 3, 31, tzinfo=UTC)
    assert deal["company_id"] == "301" and deal["contact_id"] == "1201"
    assert deal["custom_fields"] == {"ARR": {"value": 2300, "currency": "EUR"}}
    body = map_unified_deal_to_pipedrive(deal, META)
    assert body["stage_id"] == 3 and body["pipeline_id"] == 2  # the name is resolved within its pipeline
    assert body["expected_close_date"] == "2025-03-31"
    with pytest.raises(MappingError):
        map_unified_deal_to_pipedrive({"stage": "Nope"}, META)


def test_activity_types_split_activity_and_task():
    call = {"id": 5012, "subject": "Renewal call", "type": "call", "owner_id": 55, "deal_id": 880,
            "person_id": 1201, "org_id": 301, "due_date": "2025-02-05", "due_time": "13:30:00",
            "duration": "00:30:00", "done": True, "participants": [{"person_id": 1201, "primary": True}],
            "note": "<p>Discuss seats</p>"}
    assert classify_pipedrive_activity(call) == "activity"
    activity = map_pipedrive_activity_to_unified(call, META)
    assert activity["type"] == "call" and activity["duration_minutes"] == 30
    assert activity["occurred_at"] == datetime(2025, 2, 5, 13, 30, tzinfo=UTC)
    assert activity["contact_id"] == "1201" and activity["deal_id"] == "880"
    assert validate_record("activity", activity) == {}

    todo = dict(call, type="deadline", done=False, priority=3, due_time=None)
    assert classify_pipedrive_activity(todo) == "task"
    task = map_pipedrive_activity_to_unified_task(todo, META)
    assert task["title"] == "Renewal call" and task["status"] == "not_started" and task["priority"] == "high"
    assert task["task_type"] == "deadline" and task["due_date"] == datetime(2025, 2, 5, tzinfo=UTC)
    assert validate_record("task", task) == {}
    body = map_unified_task_to_pipedrive(dict(task, status="completed"), META)
    assert body["done"] is True and body["priority"] == 3 and body["type"] == "deadline"
    assert body["participants"] == [{"person_id": 1201, "primary": True}]


def test_note_activity_has_no_pipedrive_type():
    with pytest.raises(MappingError):
        map_unified_activity_to_pipedrive({"type": "note", "subject": "x"}, META)


# ------------------------------------------------------------------------------ round trips
def _as_stored(entity: str, body: dict) -> dict:
    """What Pipedrive answers after storing a v2 body: the body plus id and read-only fields."""
    stored = dict(body, id=77, add_time="2025-01-01T00:00:00Z", update_time="2025-01-02T00:00:00Z",
                  is_deleted=False)
    if "participants" in body:
        primary = [p for p in body["participants"] if p.get("primary")]
        stored["person_id"] = primary[0]["person_id"] if primary else None
    return stored


texts = st.text(min_size=1, max_size=30)
ids = st.integers(min_value=1, max_value=10**9).map(str)
maybe = lambda s: st.none() | s
minute_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                            timezones=st.just(UTC)).map(lambda d: d.replace(second=0, microsecond=0))
midnights = minute_times.map(lambda d: d.replace(hour=0, minute=0))
money = st.floats(min_value=0, max_value=1e12, allow_nan=False).map(lambda f: round(f, 2))

person_custom = st.fixed_dictionaries({}, optional={
    "Tier": st.sampled_from(["Gold", "Silver"]), "Interests": st.lists(
        st.sampled_from(["golf", "sailing", "chess"]), min_size=1, max_size=3, unique=True),
    "Birthday note": texts, "Score": money})

CONTACTS = st.fixed_dictionaries({
    "email": maybe(st.emails()), "first_name": maybe(texts), "last_name": maybe(texts), "phone": maybe(texts),
    "job_title": maybe(texts), "notes": maybe(texts), "city": maybe(texts), "country": maybe(texts),
    "owner_id": maybe(ids), "company_id": maybe(ids), "lead_source": maybe(texts),
    "tags": maybe(st.lists(st.sampled_from(["Customer", "Hot lead", "VIP"]), min_size=1, unique=True)),
    "custom_fields": person_custom,
})
COMPANIES = st.fixed_dictionaries({
    "name": maybe(texts), "city": maybe(texts), "country": maybe(texts), "owner_id": maybe(ids),
    "website": maybe(texts), "industry": maybe(texts), "employee_count": maybe(st.integers(0, 10**6)),
    "annual_revenue": maybe(money), "domain": maybe(texts),
    "custom_fields": st.fixed_dictionaries({}, optional={"Segment": st.sampled_from(["SMB", "Enterprise"])}),
})
DEALS = st.fixed_dictionaries({
    "name": maybe(texts), "amount": maybe(money), "currency": maybe(st.sampled_from(["EUR", "USD"])),
    "stage": st.sampled_from(["Qualified", "Proposal"]), "pipeline": st.just("Sales"),
    "probability": maybe(st.integers(0, 100).map(float)), "close_date": maybe(midnights),
    "status": st.sampled_from(["open", "won", "lost"]), "owner_id": maybe(ids), "description": maybe(texts),
    "company_id": maybe(ids), "contact_id": maybe(ids),
    "custom_fields": st.fixed_dictionaries({}, optional={"ARR": st.fixed_dictionaries(
        {"value": money, "currency": st.just("EUR")})}),
})
ACTIVITIES = st.fixed_dictionaries({
    "type": st.sampled_from(["call", "meeting", "email"]), "subject": maybe(texts), "body": maybe(texts),
    "occurred_at": maybe(minute_times), "duration_minutes": maybe(st.integers(0, 23 * 60 + 59)),
    "outcome": maybe(texts), "owner_id": maybe(ids), "contact_id": maybe(ids), "company_id": maybe(ids),
    "deal_id": maybe(ids), "custom_fields": st.fixed_dictionaries({"done": st.booleans()}),
})
TASKS = st.fixed_dictionaries({
    "title": texts, "body": maybe(texts), "due_date": maybe(minute_times),
    # Pipedrive has only done/undone: the other unified statuses cannot be represented.
    "status": st.sampled_from(["not_started", "completed"]),
    "priority": maybe(st.sampled_from(["low", "medium", "high"])),
    "task_type": st.sampled_from(["task", "deadline", "lunch"]), "owner_id": maybe(ids),
    "contact_id": maybe(ids), "company_id": maybe(ids), "deal_id": maybe(ids),
    "custom_fields": st.just({}),
})
MAPPINGS = {"contact": {"lead_source": "Lead Source"}, "company": {"domain": "Domain"},
            "deal": {"description": "Description"}, "activity": {"outcome": "Outcome"}, "task": {}}


def _round_trip(entity: str, record: dict) -> None:
    body = to_pipedrive(entity, record, META, MAPPINGS[entity])
    back = to_unified(entity, _as_stored(entity, body), META, MAPPINGS[entity])
    for name, value in record.items():
        assert back[name] == value, (name, value, back[name], body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["contact", "company", "deal", "activity", "task"]).flatmap(
    lambda e: st.tuples(st.just(e), {"contact": CONTACTS, "company": COMPANIES, "deal": DEALS,
                                     "activity": ACTIVITIES, "task": TASKS}[e])))
def test_round_trip_keeps_every_mapped_field(case):
    entity, record = case
    _round_trip(entity, record)


@settings(max_examples=100, deadline=None)
@given(CONTACTS, st.lists(st.fixed_dictionaries({"value": st.emails(), "label": st.sampled_from(
    ["work", "home", "other"])}), min_size=1, max_size=3, unique_by=lambda e: e["value"]))
def test_round_trip_from_pipedrive_keeps_every_email(contact, emails):
    """Pipedrive -> unified -> Pipedrive: a person's whole email array comes back."""
    person = {"id": 9, "name": "A B", "emails": [dict(e, primary=(i == 0)) for i, e in enumerate(emails)]}
    unified = map_pipedrive_person_to_unified(person, META)
    body = map_unified_contact_to_pipedrive(unified, META)
    assert sorted((e["value"], e["label"], e["primary"]) for e in body["emails"]) == \
        sorted((e["value"], e["label"], i == 0) for i, e in enumerate(emails))


def test_field_mappings_are_per_entity():
    mappings = {"description": "Description", "contact.lead_source": "Lead Source", "lead_source": "Other"}
    deal = to_unified("deal", {"id": 1, "title": "t", "custom_fields": {key("deal", "Description"): "d"}},
                      META, mappings)
    assert deal["description"] == "d" and "lead_source" not in deal
    contact = to_unified("contact", V2_PERSON, META, mappings)
    assert contact["lead_source"] == "webinar"  # the qualified key wins
    assert "description" not in contact  # contacts have no description field


def test_nameless_contact_reads_back_nameless():
    body = {"name": "only@mail.test", "emails": [{"value": "only@mail.test", "primary": True}]}
    contact = map_pipedrive_person_to_unified(dict(body, id=3, first_name="only@mail.test", last_name=""))
    assert contact["first_name"] is None and contact["last_name"] is None and contact["email"] == "only@mail.test"


def test_times_outside_the_years_1_to_9999_in_utc_read_as_unknown():
    from crmsync.platforms.pipedrive.mapping import parse_time
    for value in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+01:00", 1e20, float("nan"), "0000-01-01"):
        assert parse_time(value) is None, value
    assert parse_time("9999-12-31 23:59:59").year == 9999

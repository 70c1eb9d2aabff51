"""HubSpot <-> unified mappings: value conversions, field_mappings, custom fields, and a round-trip
property test per entity (unified -> HubSpot -> unified keeps every mapped field)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.entities import TASK_PRIORITIES, TASK_STATUSES, validate_record
from crmsync.platforms.hubspot import mapping as m

# ---------------------------------------------------------------------------- examples


def hs(props, id_="151", **extra):
    return {"id": id_, "properties": props, "createdAt": "2025-01-03T10:00:00.000Z",
            "updatedAt": "2025-02-01T08:30:12.345Z", "archived": False, **extra}


def test_contact_from_hubspot_converts_and_collects_custom_fields():
    obj = hs({"email": "ada@example.com", "firstname": "Ada", "lastname": None, "createdate": "2025-01-03T10:00:00.000Z",
              "lastmodifieddate": "2025-02-01T08:30:12.345Z", "hs_object_id": "151", "crm_tier": "gold",
              "crm_score": "12.5", "hs_analytics_num_visits": "3", "lifecyclestage": "lead"},
             associations={"companies": {"results": [{"id": "900", "type": "contact_to_company_unlabeled"},
                                                     {"id": "900", "type": "contact_to_company"}]}})
    rec = m.map_hubspot_contact_to_unified(obj, tenant_id="t1")
    assert rec["email"] == "ada@example.com" and rec["first_name"] == "Ada" and rec["last_name"] is None
    assert rec["lifecycle_stage"] == "lead" and rec["tenant_id"] == "t1"
    assert rec["updated_at"] == datetime(2025, 2, 1, 8, 30, 12, 345000, tzinfo=UTC)
    assert rec["custom_fields"] == {"crm_tier": "gold", "crm_score": "12.5"}
    assert rec["company_id"] == "900"
    assert validate_record("contact", {k: v for k, v in rec.items() if k != "company_id"}) == {}


def test_extract_custom_fields_skips_mapped_and_hubspot_defined():
    props = {"email": "a@b.co", "hs_lead_status": "NEW", "lastmodifieddate": "x", "favourite_color": "blue"}
    assert m.extract_hubspot_custom_fields(props) == {"favourite_color": "blue"}
    assert m.extract_hubspot_custom_fields(props, "contact", {"notes": "favourite_color"}) == {}


def test_values_to_hubspot_strings():
    props = m.map_unified_contact_to_hubspot({"email": "a@b.co", "tags": ["vip", "beta"], "lead_score": 12.0,
                                              "phone": None, "custom_fields": {"crm_score": 7, "x": None}})
    assert props == {"email": "a@b.co", "tags": "vip;beta", "lead_score": "12", "phone": "",
                     "crm_score": "7", "x": ""}
    deal = m.map_unified_deal_to_hubspot({"amount": 1500.5, "close_date": datetime(2025, 6, 30, tzinfo=UTC),
                                          "probability": 40, "status": "won"})
    assert deal == {"amount": "1500.5", "closedate": "2025-06-30T00:00:00.000Z", "hs_deal_stage_probability": "0.4"}
    task = m.map_unified_task_to_hubspot({"title": "Call", "status": "not_started", "priority": "high",
                                          "due_date": "2025-01-01T00:00:00+00:00"})
    assert task == {"hs_task_subject": "Call", "hs_task_status": "NOT_STARTED", "hs_task_priority": "HIGH",
                    "hs_timestamp": "2025-01-01T00:00:00.000Z"}


def test_activities_by_type():
    call = m.map_unified_activity_to_hubspot({"type": "call", "duration_minutes": 3, "direction": "inbound",
                                              "outcome": "completed"})
    assert call == {"hs_call_duration": "180000", "hs_call_direction": "INBOUND", "hs_call_status": "COMPLETED"}
    back = m.map_hubspot_activity_to_unified(hs({"hs_call_duration": "180000", "hs_timestamp": "1700000000000",
                                                 "hs_call_direction": "OUTBOUND"}), "call")
    assert back["type"] == "call" and back["duration_minutes"] == 3 and back["direction"] == "outbound"
    assert back["occurred_at"] == datetime.fromtimestamp(1700000000, UTC)
    start = datetime(2025, 1, 1, 9, tzinfo=UTC)
    meeting = m.map_unified_activity_to_hubspot({"type": "meeting", "occurred_at": start, "duration_minutes": 45})
    assert meeting["hs_meeting_end_time"] == "2025-01-01T09:45:00.000Z"
    email = m.map_unified_activity_to_hubspot({"type": "email", "direction": "inbound", "subject": "Hi"})
    assert email == {"hs_email_direction": "INCOMING_EMAIL", "hs_email_subject": "Hi"}


def test_field_mappings_override_defaults_and_qualify_by_entity():
    fm = {"notes": "about_me", "deal.description": "deal_notes", "description": "company_blurb"}
    assert m.map_unified_contact_to_hubspot({"notes": "x"}, fm) == {"about_me": "x"}
    assert m.map_unified_deal_to_hubspot({"description": "d"}, fm) == {"deal_notes": "d"}
    assert m.map_unified_company_to_hubspot({"description": "c"}, fm) == {"company_blurb": "c"}
    rec = m.map_hubspot_contact_to_unified(hs({"about_me": "hello", "notes": "ignored"}), field_mappings=fm)
    assert rec["notes"] == "hello" and rec["custom_fields"] == {"notes": "ignored"}
    assert "about_me" in m.mapped_properties("contact", fm)


def test_deal_status_from_closed_flags_or_stage():
    assert m.map_hubspot_deal_to_unified(hs({"dealstage": "closedwon"}))["status"] == "won"
    assert m.map_hubspot_deal_to_unified(hs({"dealstage": "x", "hs_is_closed": "true",
                                             "hs_is_closed_won": "false"}))["status"] == "lost"
    assert m.map_hubspot_deal_to_unified(hs({"dealstage": "qualifiedtobuy"}))["status"] == "open"


def test_associations_create_payload():
    assoc = m.hubspot_associations("deal", {"contact_id": "151", "company_id": None})
    assert assoc == [{"to": {"id": "151"}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                      "associationTypeId": 3}]}]
    assert m.hubspot_associations("activity", {"deal_id": "5"}, "notes")[0]["types"][0]["associationTypeId"] == 214


# ---------------------------------------------------------------------------- round trips

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30)
def opt(s):
    return st.one_of(st.none(), s)
floats = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC))
tag = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=";\x00"), min_size=1, max_size=10)
# "hs_" is the prefix of HubSpot's built-in properties; the mapper never reads such a name as a
# custom field (crmsync.platforms.hubspot.mapping._custom_fields), so the round trip leaves them out.
custom = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda k: not k.startswith("hs_") and k not in {"email", "tags", "notes", "city", "country", "phone", "company", "domain", "name", "amount",
                        "pipeline", "description", "industry", "website", "dealname", "dealstage", "closedate",
                        "firstname", "lastname", "jobtitle", "lifecyclestage", "lead_source", "lead_score",
                        "numberofemployees", "annualrevenue", "hubspot_owner_id", "createdate",
                        "lastmodifieddate", "deal_currency_code"}), text, max_size=3)

ENTITY_STRATEGIES = {
    "contact": st.fixed_dictionaries({
        "email": opt(st.emails()), "first_name": opt(text), "last_name": opt(text), "phone": opt(text),
        "job_title": opt(text), "company_name": opt(text), "lifecycle_stage": opt(st.sampled_from(["lead", "customer"])),
        "lead_status": opt(text), "lead_source": opt(text), "lead_score": opt(floats), "owner_id": opt(text),
        "tags": opt(st.lists(tag, min_size=1, max_size=4)), "notes": opt(text), "city": opt(text),
        "country": opt(text), "custom_fields": custom}),
    "company": st.fixed_dictionaries({
        "name": opt(text), "domain": opt(text), "industry": opt(text), "phone": opt(text), "website": opt(text),
        "city": opt(text), "country": opt(text), "employee_count": opt(st.integers(0, 10**9)),
        "annual_revenue": opt(floats), "owner_id": opt(text), "description": opt(text), "custom_fields": custom}),
    "deal": st.fixed_dictionaries({
        "name": opt(text), "amount": opt(floats), "currency": opt(st.sampled_from(["EUR", "USD"])),
        "stage": opt(st.sampled_from(["appointmentscheduled", "closedwon", "closedlost"])), "pipeline": opt(text),
        "probability": opt(st.integers(0, 10000).map(lambda x: x / 100)), "close_date": opt(moments),
        "owner_id": opt(text), "description": opt(text), "custom_fields": custom}),
    "task": st.fixed_dictionaries({
        "title": text, "body": opt(text), "due_date": opt(moments), "status": opt(st.sampled_from(TASK_STATUSES)),
        "priority": opt(st.sampled_from(TASK_PRIORITIES)), "task_type": opt(st.sampled_from(["email", "call", "todo"])),
        "owner_id": opt(text), "custom_fields": custom}),
}
ACTIVITY_STRATEGY = st.one_of(
    st.fixed_dictionaries({"type": st.just("note"), "body": opt(text), "occurred_at": opt(moments),
                           "owner_id": opt(text), "custom_fields": custom}),
    st.fixed_dictionaries({"type": st.just("call"), "subject": opt(text), "body": opt(text),
                           "occurred_at": opt(moments), "duration_minutes": opt(st.integers(0, 10**5)),
                           "direction": opt(st.sampled_from(["inbound", "outbound"])),
                           "outcome": opt(st.sampled_from(["completed", "no_answer", "busy"])),
                           "owner_id": opt(text), "custom_fields": custom}),
    st.fixed_dictionaries({"type": st.just("meeting"), "subject": opt(text), "body": opt(text),
                           "occurred_at": moments, "duration_minutes": opt(st.integers(0, 10**4)),
                           "outcome": opt(st.sampled_from(["scheduled", "no_show"])),
                           "owner_id": opt(text), "custom_fields": custom}),
    st.fixed_dictionaries({"type": st.just("email"), "subject": opt(text), "body": opt(text),
                           "occurred_at": opt(moments), "direction": st.sampled_from(["inbound", "outbound", "forwarded"]),
                           "outcome": opt(st.sampled_from(["sent", "bounced"])),
                           "owner_id": opt(text), "custom_fields": custom}),
)


def _as_hubspot_object(props: dict) -> dict:
    """What HubSpot would answer for these written properties ("" comes back as null)."""
    return hs({k: (None if v == "" else v) for k, v in props.items()})


def _assert_round_trip(entity: str, record: dict, back: dict):
    for name, value in record.items():
        if name == "custom_fields":
            assert back["custom_fields"] == value
        else:
            assert back[name] == value, name
    if entity == "deal":
        stage = record.get("stage")
        assert back["status"] == (None if stage is None else {"closedwon": "won", "closedlost": "lost"}.get(stage, "open"))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(ENTITY_STRATEGIES)).flatmap(lambda e: st.tuples(st.just(e), ENTITY_STRATEGIES[e])))
def test_round_trip_keeps_every_mapped_field(case):
    entity, record = case
    props = m.map_unified_to_hubspot(entity, record)
    back = m.map_hubspot_to_unified(entity, _as_hubspot_object(props))
    _assert_round_trip(entity, record, back)
    assert validate_record(entity, {k: v for k, v in back.items() if k not in ("company_id", "contact_id")}) == {}


@settings(max_examples=150, deadline=None)
@given(ACTIVITY_STRATEGY)
def test_round_trip_activities(record):
    props = m.map_unified_activity_to_hubspot(record)
    object_type = m.ACTIVITY_OBJECTS[record["type"]]
    back = m.map_hubspot_to_unified("activity", _as_hubspot_object(props), object_type=object_type)
    _assert_round_trip("activity", record, back)
    assert validate_record("activity", back) == {}


@settings(max_examples=50, deadline=None)
@given(ENTITY_STRATEGIES["contact"], st.sampled_from(["about_me", "x_notes"]))
def test_round_trip_with_field_mappings(record, prop):
    fm = {"notes": prop}
    record = {**record, "custom_fields": {k: v for k, v in record["custom_fields"].items() if k != prop}}
    props = m.map_unified_contact_to_hubspot(record, fm)
    assert "notes" not in props or "notes" in record["custom_fields"]
    back = m.map_hubspot_contact_to_unified(_as_hubspot_object(props), field_mappings=fm)
    _assert_round_trip("contact", record, back)


def test_datetime_inputs_epoch_and_iso():
    assert m.parse_datetime("1700000000000") == datetime.fromtimestamp(1700000000, UTC)
    assert m.parse_datetime("2024-01-17T19:55:04.281Z") == datetime(2024, 1, 17, 19, 55, 4, 281000, tzinfo=UTC)
    assert m.format_datetime(datetime(2024, 1, 17, 21, 55, tzinfo=UTC) + timedelta(microseconds=999)) == \
        "2024-01-17T21:55:00.000Z"

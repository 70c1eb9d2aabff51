"""What a rule sees of an event: the seed's two rules with events in both documented shapes
(top-level fields and `properties`), the event's own name winning over a lookup, and a variable
that resolves to nothing reported as a warning instead of rendering as ""."""
import copy

import pytest

from crmsync.automation.rules import apply_rules
from crmsync.automation.runner import dry_run, run_for_event
from crmsync.db import session_scope
from crmsync.db.models import Contact, Deal
from tests.automation.helpers import product_event, rows, runs
from tests.automation.seed import EMAIL_REPLY_RULE, MEETING_RULE, seed_rules

MEETING = "2026-12-10T15:00:00Z"
QUALIFIED = {"deal": {"name": "ACC Deal", "stage": "qualified_to_buy"}}

EMAIL_SHAPES = {
    "top-level": {"sender_email": "ada@example.org", "sender_name": "Ada Lovelace"},
    "properties": {"sender_email": "ada@example.org", "properties": {"sender_name": "Ada Lovelace"}},
}
MEETING_SHAPES = {
    "top-level": {"contact_email": "ada@example.org", "meeting_date": MEETING, "contact_name": "Ada Lovelace"},
    "properties": {"contact_email": "ada@example.org", "meeting_date": MEETING,
                   "properties": {"contact_name": "Ada Lovelace"}},
    # the event: a name and no email at all
    "name only": {"meeting_date": MEETING, "contact_name": "Ada Lovelace"},
}


@pytest.mark.parametrize("shape", EMAIL_SHAPES)
def test_email_reply_rule_renders_every_variable(shape):
    [rule, _] = dry_run(None, None, seed_rules(), "email_replied", EMAIL_SHAPES[shape])
    assert rule.outcome == "succeeded" and rule.warnings == []
    contact, deal = rule.actions
    assert contact["values"] == {"email": "ada@example.org", "lifecycle_stage": "lead", "lead_source": "inbound_email",
                                 "first_name": "Ada", "last_name": "Lovelace"}
    assert deal["values"]["name"] == "Inbound Lead - ada@example.org"
    assert deal["values"]["contact_id"] == "new:contact"


@pytest.mark.parametrize("shape", MEETING_SHAPES)
def test_meeting_rule_renders_every_variable(shape):
    [_, rule] = dry_run(None, None, seed_rules(), "meeting_scheduled", MEETING_SHAPES[shape], overrides=QUALIFIED)
    assert rule.outcome == "succeeded" and rule.warnings == []
    update, task = rule.actions
    assert update["values"] == {"stage": ["qualified_to_buy", "presentation_scheduled"], "probability": [None, 40]}
    assert task["values"]["title"] == "Prepare for meeting with Ada Lovelace"
    assert task["values"]["due_date"] == "2026-12-09T15:00:00+00:00"


def test_a_found_contact_names_only_an_event_that_names_nobody():
    found = {"contact": {"first_name": "Augusta", "last_name": "King", "email": "ada@example.org"}, **QUALIFIED}
    [r] = dry_run(None, None, [MEETING_RULE], "meeting_scheduled", MEETING_SHAPES["top-level"], overrides=found)
    assert r.actions[1]["values"]["title"] == "Prepare for meeting with Ada Lovelace"
    bare = {"contact_email": "ada@example.org", "meeting_date": MEETING}
    [r] = dry_run(None, None, [MEETING_RULE], "meeting_scheduled", bare, overrides=found)
    assert r.actions[1]["values"]["title"] == "Prepare for meeting with Augusta King"
    [r] = dry_run(None, None, [MEETING_RULE], "meeting_scheduled", bare, overrides=QUALIFIED)
    assert r.actions[1]["values"]["title"] == "Prepare for meeting with ada@example.org"   # the email, last


def test_an_unresolved_variable_is_a_warning_and_the_title_keeps_its_placeholder():
    [r] = dry_run(None, None, [MEETING_RULE], "meeting_scheduled", {"meeting_date": MEETING}, overrides=QUALIFIED)
    assert r.outcome == "succeeded"                       # the action still runs, with the rest of its fields
    task = r.actions[1]
    assert task["values"]["title"] == "Prepare for meeting with {contact_name}"
    assert task["values"]["due_date"] == "2026-12-09T15:00:00+00:00"
    assert r.warnings == task["warnings"] == [{
        "action": "actions[1]", "type": "create_task", "param": "title", "variable": "contact_name",
        "message": "actions[1] create_task: {contact_name} in params.title has no value for this event"}]
    assert "warnings" not in r.actions[0]


def test_a_required_field_that_is_only_an_unresolved_variable_is_refused():
    rule = copy.deepcopy(MEETING_RULE)
    rule["actions"][1]["params"]["title"] = "{title}"
    [r] = dry_run(None, None, [rule], "meeting_scheduled", {"meeting_date": MEETING}, overrides=QUALIFIED)
    assert r.outcome == "failed"
    assert r.error == "actions[1].params.title: {title} rendered empty, but a value is required"


def _live(db_url, tenant_id, event_type, payload):
    with session_scope(db_url) as s:
        event_id = product_event(s, tenant_id, event_type, **payload)
    with session_scope(db_url) as s:
        return event_id, {r.rule_name: r for r in run_for_event(s, event_id)}


@pytest.mark.parametrize("shape", ["top-level", "properties"])
def test_live_meeting_keeps_the_events_name_over_the_stored_contacts(db_url, tenant_id, shape):
    with session_scope(db_url) as s:
        contact = Contact(tenant_id=tenant_id, email="ada@example.org", first_name="Augusta", last_name="King")
        s.add(contact)
        s.flush()
        s.add(Deal(tenant_id=tenant_id, name="ACC Deal", stage="qualified_to_buy", status="open",
                   contact_id=contact.id))
    event_id, results = _live(db_url, tenant_id, "meeting_scheduled", MEETING_SHAPES[shape])
    assert results[MEETING_RULE["name"]].outcome == "succeeded"
    [task] = rows(db_url, "task", tenant_id)
    assert task.title == "Prepare for meeting with Ada Lovelace"
    [run] = runs(db_url, event_id=event_id)
    assert run.detail["warnings"] == []


@pytest.mark.parametrize("shape", ["top-level", "properties"])
def test_live_email_reply_names_the_new_contact(db_url, tenant_id, shape):
    _, results = _live(db_url, tenant_id, "email_replied", EMAIL_SHAPES[shape])
    assert results[EMAIL_REPLY_RULE["name"]].outcome == "succeeded"
    [contact] = rows(db_url, "contact", tenant_id)
    [deal] = rows(db_url, "deal", tenant_id)
    assert (contact.first_name, contact.last_name, contact.email) == ("Ada", "Lovelace", "ada@example.org")
    assert deal.name == "Inbound Lead - ada@example.org" and deal.contact_id == contact.id


def test_live_run_records_the_warning(db_url, tenant_id):
    with session_scope(db_url) as s:
        apply_rules(s, tenant_id, {"name": "agenda", "trigger": {"type": "meeting_scheduled"},
                                   "actions": [{"type": "create_task", "params": {
                                       "title": "Meeting with {contact_name}", "body": "Agenda: {title}"}}]})
    event_id, results = _live(db_url, tenant_id, "meeting_scheduled",
                              {"contact_email": "bo@example.org", "meeting_date": MEETING})
    assert results["agenda"].outcome == "succeeded"
    [task] = rows(db_url, "task", tenant_id)
    assert (task.title, task.body) == ("Meeting with bo@example.org", "Agenda: {title}")
    [run] = [r for r in runs(db_url, event_id=event_id) if r.rule_id == results["agenda"].rule_id]
    assert run.outcome == "succeeded"
    assert [(w["action"], w["param"], w["variable"]) for w in run.detail["warnings"]] == [
        ("actions[0]", "body", "title")]

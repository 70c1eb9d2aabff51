"""Rules running for events: the seed's two rules, at most once per event, failures, dry runs."""
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from crmsync.automation.rules import apply_rules
from crmsync.automation.runner import dry_run, run_for_event
from crmsync.db import session_scope
from crmsync.db.models import AutomationRun, Contact, Deal, Task, WebhookEvent
from tests.automation.helpers import count, product_event, rows, runs
from tests.automation.seed import EMAIL_REPLY_RULE, MEETING_RULE, seed_rules
from tests.fixtures.factories import make_tenant

MEETING = "2025-03-14T15:30:00+00:00"


def _event(db_url, tenant_id, event_type, **payload):
    with session_scope(db_url) as s:
        return product_event(s, tenant_id, event_type, **payload)


def _run(db_url, event_id):
    with session_scope(db_url) as s:
        return run_for_event(s, event_id)


def _contact_with_deal(db_url, tenant_id, stage="qualified_to_buy", email="ada@example.org"):
    with session_scope(db_url) as s:
        contact = Contact(tenant_id=tenant_id, email=email, first_name="Ada", last_name="Lovelace")
        s.add(contact)
        s.flush()
        deal = Deal(tenant_id=tenant_id, name="Ada's deal", stage=stage, status="open", contact_id=contact.id)
        s.add(deal)
        s.flush()
        return contact.id, deal.id


def test_email_reply_creates_contact_and_linked_deal(db_url, tenant_id):
    event_id = _event(db_url, tenant_id, "email_replied", sender_email="ada@example.org", subject="Re: hello")
    [result] = _run(db_url, event_id)
    assert result.outcome == "succeeded", result
    [contact] = rows(db_url, "contact", tenant_id)
    [deal] = rows(db_url, "deal", tenant_id)
    assert (contact.email, contact.lifecycle_stage, contact.lead_source) == ("ada@example.org", "lead", "inbound_email")
    assert (deal.name, deal.stage, deal.amount, deal.status) == (
        "Inbound Lead - ada@example.org", "qualified_to_buy", 0, "open")
    assert deal.contact_id == contact.id                # the later action saw the earlier one's contact
    [run] = runs(db_url, event_id=event_id)
    cause = f"rule:{run.rule_id}:event:{event_id}:depth:1"
    assert contact.last_change_cause == cause and deal.last_change_cause == cause
    assert run.outcome == "succeeded"
    assert run.detail["created"] == {"contact": [contact.id], "deal": [deal.id]}
    with session_scope(db_url) as s:
        event = s.get(WebhookEvent, event_id)
        assert event.processed and event.outcome == "automation"


def test_email_reply_from_a_known_contact_reuses_it(db_url, tenant_id):
    contact_id, _ = _contact_with_deal(db_url, tenant_id, email="Ada@Example.org")
    _run(db_url, _event(db_url, tenant_id, "email_replied", sender_email="ada@example.org"))
    assert [c.id for c in rows(db_url, "contact", tenant_id)] == [contact_id]
    new_deal = [d for d in rows(db_url, "deal", tenant_id) if d.name.startswith("Inbound")]
    assert new_deal[0].contact_id == contact_id


def test_meeting_moves_the_deal_and_creates_the_preparation_task(db_url, tenant_id):
    contact_id, deal_id = _contact_with_deal(db_url, tenant_id)
    event_id = _event(db_url, tenant_id, "meeting_scheduled", contact_email="ada@example.org", meeting_date=MEETING)
    [result] = _run(db_url, event_id)
    assert result.outcome == "succeeded", result
    [deal] = rows(db_url, "deal", tenant_id)
    assert (deal.stage, deal.probability) == ("presentation_scheduled", 40)
    assert deal.last_change_cause.startswith("rule:") and deal.last_change_cause.endswith(f"event:{event_id}:depth:1")
    [task] = rows(db_url, "task", tenant_id)
    assert task.title == "Prepare for meeting with Ada Lovelace"
    assert task.due_date == datetime(2025, 3, 13, 15, 30, tzinfo=UTC)      # one day before the meeting
    assert (task.priority, task.status, task.deal_id, task.contact_id) == ("high", "not_started", deal_id, contact_id)
    [run] = runs(db_url, event_id=event_id)
    assert run.detail["changed"] == {"deal": [deal_id]} and run.detail["created"] == {"task": [task.id]}


def test_meeting_for_a_deal_in_another_stage_does_nothing(db_url, tenant_id):
    _contact_with_deal(db_url, tenant_id, stage="closedwon")
    event_id = _event(db_url, tenant_id, "meeting_scheduled", contact_email="ada@example.org", meeting_date=MEETING)
    [result] = _run(db_url, event_id)
    assert result.outcome == "conditions_not_met"
    assert result.conditions[0]["actual"] == "closedwon"
    assert rows(db_url, "task", tenant_id) == []
    assert [r.outcome for r in runs(db_url, event_id=event_id)] == ["conditions_not_met"]


def test_meeting_deal_id_in_the_payload_wins(db_url, tenant_id):
    _contact_id, _ = _contact_with_deal(db_url, tenant_id, stage="closedwon")
    with session_scope(db_url) as s:
        other = Deal(tenant_id=tenant_id, name="Other", stage="qualified_to_buy", status="open")
        s.add(other)
        s.flush()
        other_id = other.id
    _run(db_url, _event(db_url, tenant_id, "meeting_scheduled", contact_email="ada@example.org",
                        meeting_date=MEETING, deal_id=other_id))
    assert {d.id: d.stage for d in rows(db_url, "deal", tenant_id)}[other_id] == "presentation_scheduled"


def test_runs_at_most_once_per_event_across_retries(db_url, tenant_id):
    event_id = _event(db_url, tenant_id, "email_replied", sender_email="bob@example.org")
    # a first attempt dies after the actions ran, before commit: everything is undone
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        run_for_event(s, event_id)
        raise RuntimeError("worker killed")
    assert rows(db_url, "contact", tenant_id) == [] and runs(db_url) == []
    assert [r.outcome for r in _run(db_url, event_id)] == ["succeeded"]
    assert _run(db_url, event_id) == []                     # a redelivery: already ran
    assert len(rows(db_url, "contact", tenant_id)) == 1 and len(rows(db_url, "deal", tenant_id)) == 1
    assert len(runs(db_url, event_id=event_id)) == 1


def test_concurrent_deliveries_of_one_event_run_the_rule_once(db_url, tenant_id):
    event_id = _event(db_url, tenant_id, "email_replied", sender_email="carol@example.org")
    first = session_scope(db_url)
    s1 = first.__enter__()
    assert [r.outcome for r in run_for_event(s1, event_id)] == ["succeeded"]    # holds the run row, uncommitted
    second: dict = {}

    def deliver_again():
        with session_scope(db_url) as s2:
            second["results"] = run_for_event(s2, event_id)

    thread = threading.Thread(target=deliver_again)
    thread.start()
    # wait until the second delivery blocks on the first one's (rule, event) key
    deadline = time.monotonic() + 10
    with session_scope(db_url) as probe:
        while not probe.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND datname = current_database()")):
            assert time.monotonic() < deadline, "the second delivery never waited on the first"
            probe.rollback()
            time.sleep(0.01)
    first.__exit__(None, None, None)            # commit the first
    thread.join(10)
    assert second["results"] == []
    assert len(rows(db_url, "contact", tenant_id)) == 1 and count(db_url, AutomationRun) == 1


def test_failing_action_is_logged_undone_and_other_rules_still_run(db_url, tenant_id):
    with session_scope(db_url) as s:
        apply_rules(s, tenant_id, {"name": "bad score", "trigger": {"type": "email_replied"},
                                   "actions": [{"type": "create_contact", "params": {"email": "x@example.org"}},
                                               {"type": "update_contact",
                                                "params": {"lead_score": "{event.properties.score}"}}]})
    event_id = _event(db_url, tenant_id, "email_replied", sender_email="dan@example.org",
                      properties={"score": "very high"})
    results = {r.rule_name: r for r in _run(db_url, event_id)}
    assert results["bad score"].outcome == "failed"
    assert "actions[1].params.lead_score: expected a number" in results["bad score"].error
    assert results[EMAIL_REPLY_RULE["name"]].outcome == "succeeded"
    emails = {c.email for c in rows(db_url, "contact", tenant_id)}
    assert emails == {"dan@example.org"}             # x@example.org was rolled back with its rule
    failed = [r for r in runs(db_url, event_id=event_id) if r.outcome == "failed"]
    assert len(failed) == 1 and "lead_score" in failed[0].error
    assert _run(db_url, event_id) == []              # a failed run is not retried either


def test_disabled_rules_and_other_tenants_rules_do_not_run(db_url, tenant_id):
    with session_scope(db_url) as s:
        other = make_tenant(s)
        apply_rules(s, other.id, seed_rules())
        apply_rules(s, tenant_id, {**EMAIL_REPLY_RULE, "enabled": False})
    event_id = _event(db_url, tenant_id, "email_replied", sender_email="eve@example.org")
    assert _run(db_url, event_id) == []
    assert rows(db_url, "contact", tenant_id) == [] and count(db_url, Contact) == 0
    with session_scope(db_url) as s:
        event = s.get(WebhookEvent, event_id)
        assert event.processed and event.outcome == "no_rules"


def test_events_that_are_no_trigger_are_marked_processed(db_url, tenant_id):
    event_id = _event(db_url, tenant_id, "email_opened", recipient_email="ada@example.org")
    assert _run(db_url, event_id) == []
    with session_scope(db_url) as s:
        assert s.get(WebhookEvent, event_id).outcome == "ignored"


def test_dry_run_writes_nothing(db_url, tenant_id):
    _contact_with_deal(db_url, tenant_id)
    with session_scope(db_url) as s:
        results = dry_run(s, tenant_id, seed_rules(), "meeting_scheduled",
                          {"contact_email": "ada@example.org", "meeting_date": MEETING})
    email_rule, meeting_rule = results
    assert email_rule.outcome == "skipped"
    assert meeting_rule.outcome == "succeeded"
    update, task = meeting_rule.actions
    assert update["op"] == "updated" and update["values"]["stage"] == ["qualified_to_buy", "presentation_scheduled"]
    assert task["op"] == "created" and task["values"]["due_date"] == "2025-03-13T15:30:00+00:00"
    assert task["values"]["title"] == "Prepare for meeting with Ada Lovelace"
    assert [d.stage for d in rows(db_url, "deal", tenant_id)] == ["qualified_to_buy"]
    assert rows(db_url, "task", tenant_id) == [] and count(db_url, AutomationRun) == 0
    # without a tenant, entities come from the test event itself
    [r] = dry_run(None, None, [MEETING_RULE], "meeting_scheduled",
                  {"contact_email": "zed@example.org", "meeting_date": MEETING},
                  overrides={"deal": {"stage": "qualified_to_buy", "name": "Z"}, "contact": {"first_name": "Zed"}})
    assert r.outcome == "succeeded" and r.actions[1]["values"]["title"] == "Prepare for meeting with Zed"
    assert count(db_url, Task) == 0


def test_associations_in_params_must_be_the_tenants_own(db_url, tenant_id):
    with session_scope(db_url) as s:
        other = make_tenant(s)
        foreign = Deal(tenant_id=other.id, name="theirs", stage="x", status="open")
        s.add(foreign)
        s.flush()
        apply_rules(s, tenant_id, {"name": "cross-tenant", "trigger": {"type": "email_replied"},
                                   "actions": [{"type": "create_task",
                                                "params": {"title": "t", "deal_id": foreign.id}}]})
    event_id = _event(db_url, tenant_id, "email_replied", sender_email="mallory@example.org")
    results = {r.rule_name: r for r in _run(db_url, event_id)}
    assert results["cross-tenant"].outcome == "failed"
    assert "actions[0].params.deal_id: no deal" in results["cross-tenant"].error
    assert count(db_url, Task) == 0

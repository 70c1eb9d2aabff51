"""The template mini-language: parsing, rendering, date arithmetic and save-time checks."""
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.automation.errors import TemplateError
from crmsync.automation.templates import parse
from crmsync.automation.triggers import TRIGGERS

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
MEETING = datetime(2025, 3, 14, 15, 30, tzinfo=UTC)
CTX = {"email": "ada@example.org", "contact_name": "Ada Lovelace", "now": NOW, "meeting_date": MEETING,
       "deal": {"name": "Big deal", "amount": 1200.0, "close_date": None}, "event": {"n": 3}}


@pytest.mark.parametrize("source, expected", [
    ("Inbound Lead - {email}", "Inbound Lead - ada@example.org"),
    ("Prepare for meeting with {contact_name}", "Prepare for meeting with Ada Lovelace"),
    ("{deal.name}", "Big deal"),
    ("{deal.amount}", 1200.0),                       # a single expression keeps its type
    ("Amount: {deal.amount}", "Amount: 1200"),
    ("{meeting_date - 1 day}", MEETING - timedelta(days=1)),
    ("{now + 2 hours}", NOW + timedelta(hours=2)),
    ("{now+1hour}", NOW + timedelta(hours=1)),
    ("{ now - 1 week + 30 minutes }", NOW - timedelta(weeks=1) + timedelta(minutes=30)),
    ("{now + 1.5 days}", NOW + timedelta(days=1.5)),
    ("due {meeting_date - 1 day}", f"due {(MEETING - timedelta(days=1)).isoformat()}"),
    ("{{literal}} {email}", "{literal} ada@example.org"),
    ("no placeholders", "no placeholders"),
    ("{deal.close_date + 1 day}", None),             # no date to move: stays empty
    ("[{deal.missing}]", "[{deal.missing}]"),       # nothing to show: the placeholder names the gap
])
def test_render(source, expected):
    assert parse(source).render(CTX) == expected


@pytest.mark.parametrize("source, expected, missing", [
    ("Prepare for meeting with {contact_name}", "Prepare for meeting with {contact_name}", ["contact_name"]),
    ("{ contact_name } and {email}", "{ contact_name } and ada@example.org", ["contact_name"]),
    ("{deal.close_date + 1 day}", None, ["deal.close_date"]),
    ("{title}", None, ["title"]),
    ("Hi {email}", "Hi ada@example.org", []),
])
def test_render_reports_what_resolves_to_nothing(source, expected, missing):
    ctx = {**CTX, "contact_name": None, "title": "  "}
    unresolved = []
    assert parse(source).render(ctx, unresolved) == expected
    assert [e.path for e in unresolved] == missing


@pytest.mark.parametrize("source, message", [
    ("{email", "unclosed '{'"),
    ("email}", "unmatched '}'"),
    ("{}", "empty expression"),
    ("{now + 2 fortnights}", "unknown unit 'fortnights'"),
    ("{now + hours}", "expected a number"),
    ("{now + 2}", "expected a unit"),
    ("{now * 2 days}", "unexpected character '*'"),
    ("{now 2 days}", "expected '+' or '-'"),
    ("{deal.}", "expected a field name"),
    ("{__import__('os')}", "unexpected character"),
])
def test_parse_errors(source, message):
    with pytest.raises(TemplateError) as err:
        parse(source)
    assert message in str(err.value)


def test_check_against_trigger_variables():
    meeting = TRIGGERS["meeting_scheduled"].variables
    assert parse("{meeting_date - 1 day}").check(meeting) == "datetime"
    assert parse("Hi {contact_name}").check(meeting) == "text"
    assert parse("{deal.amount}").check(meeting) == "number"
    with pytest.raises(TemplateError, match="unknown variable 'meting_date'"):
        parse("{meting_date - 1 day}").check(meeting)
    with pytest.raises(TemplateError, match="date arithmetic on 'contact_name'"):
        parse("{contact_name + 1 day}").check(meeting)
    with pytest.raises(TemplateError, match="deal has no field 'nme'"):
        parse("{deal.nme}").check(meeting)
    # meeting_date belongs to meeting_scheduled, not to email_replied
    with pytest.raises(TemplateError, match="unknown variable 'meeting_date'"):
        parse("{meeting_date}").check(TRIGGERS["email_replied"].variables)
    # free-form payload fields are reachable under event.*
    assert parse("{event.anything.below}").check(meeting) == "any"

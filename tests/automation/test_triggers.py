"""Record triggers from the engine's hook: cheap when nobody listens, one event per change
version, and the loop guard (own writes, chain depth)."""
import pytest
from sqlalchemy import event

from crmsync.automation.rules import apply_rules
from crmsync.automation.triggers import on_record_changes, parse_cause, rule_cause
from crmsync.db import get_engine, session_scope
from crmsync.db.models import Contact, Deal, WebhookEvent
from crmsync.sync.apply import RecordChange
from tests.automation.helpers import count, internal_events, rows, runs
from tests.fixtures.factories import make_tenant


@pytest.fixture
def tenant_id(crmsync_env, db_url):
    with session_scope(db_url) as s:
        return make_tenant(s).id


def _deal(db_url, tenant_id, stage="appointmentscheduled"):
    with session_scope(db_url) as s:
        contact = Contact(tenant_id=tenant_id, email="ada@example.org", first_name="Ada")
        s.add(contact)
        s.flush()
        deal = Deal(tenant_id=tenant_id, name="D", stage=stage, status="open", contact_id=contact.id)
        s.add(deal)
        s.flush()
        return deal.id


def _sync_changes_stage(db_url, tenant_id, deal_id, old, new, cause="sync:hubspot"):
    """What the engine does after a pull changed a deal's stage (then commits: inline, the
    automation task runs right after)."""
    with session_scope(db_url) as s:
        s.get(Deal, deal_id).stage = new
        return on_record_changes(s, tenant_id, [RecordChange("deal", deal_id, "updated", {"stage": (old, new)})],
                                 cause)


class Statements:
    def __init__(self, engine):
        self.engine, self.sql = engine, []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._hook)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._hook)

    def _hook(self, conn, cursor, statement, *args):
        self.sql.append(statement)


def test_cheap_when_no_rule_listens(db_url, tenant_id):
    deal_id = _deal(db_url, tenant_id)
    changes = [RecordChange("deal", deal_id, "updated", {"stage": ("a", "b")}),
               RecordChange("contact", deal_id, "created", {"email": (None, "x@example.org")})] * 50
    engine = get_engine(db_url)
    with session_scope(db_url) as s:
        s.connection()
        with Statements(engine) as seen:
            assert on_record_changes(s, tenant_id, changes, "sync:hubspot") == []
        assert len(seen.sql) == 1 and "crm_automation_rules" in seen.sql[0]
        # changes no trigger is about cost nothing at all
        with Statements(engine) as seen:
            on_record_changes(s, tenant_id, [RecordChange("task", deal_id, "updated", {"title": ("a", "b")}),
                                             RecordChange("deal", deal_id, "updated", {"amount": (1, 2)})], None)
        assert seen.sql == []
    with session_scope(db_url) as s:          # a rule for another trigger: still one query, no event
        apply_rules(s, tenant_id, {"name": "n", "trigger": {"type": "contact_updated"},
                                   "actions": [{"type": "create_task", "params": {"title": "t"}}]})
    with session_scope(db_url) as s:
        s.connection()
        with Statements(engine) as seen:
            assert on_record_changes(s, tenant_id, changes[:1], None) == []
        assert len(seen.sql) == 1
    assert count(db_url, WebhookEvent) == 0


def test_one_event_per_change_version(db_url, tenant_id):
    deal_id = _deal(db_url, tenant_id)
    with session_scope(db_url) as s:
        apply_rules(s, tenant_id, {"name": "noop", "enabled": True, "trigger": {"type": "deal_stage_changed"},
                                   "conditions": [{"field": "new_stage", "operator": "equals", "value": "never"}],
                                   "actions": [{"type": "create_task", "params": {"title": "t"}}]})
    change = [RecordChange("deal", deal_id, "updated", {"stage": ("a", "b")})]
    with session_scope(db_url) as s:
        first = on_record_changes(s, tenant_id, change, "sync:hubspot")
        assert len(first) == 1
        assert on_record_changes(s, tenant_id, change, "sync:hubspot") == []     # replayed page: no duplicate
    [stored] = internal_events(db_url, tenant_id)
    assert (stored.event_type, stored.account_id, stored.entity_type) == ("deal_stage_changed", tenant_id, "deal")
    assert stored.payload["deal_id"] == deal_id and stored.payload["changes"] == {"stage": ["a", "b"]}
    assert stored.payload["cause"] == "sync:hubspot"
    assert stored.processed                      # inline: the runner ran after commit
    [run] = runs(db_url, event_id=stored.id)
    assert run.outcome == "conditions_not_met"


def test_contact_updated_fields_option_filters(db_url, tenant_id):
    with session_scope(db_url) as s:
        contact = Contact(tenant_id=tenant_id, email="ada@example.org", lifecycle_stage="lead")
        s.add(contact)
        apply_rules(s, tenant_id, {"name": "became customer",
                                   "trigger": {"type": "contact_updated", "fields": ["lifecycle_stage"]},
                                   "conditions": [{"field": "changes.lifecycle_stage.new", "operator": "equals",
                                                   "value": "customer"}],
                                   "actions": [{"type": "create_task",
                                                "params": {"title": "Onboard {contact_name}",
                                                           "due_date": "{now + 2 days}"}}]})
        s.flush()
        contact_id = contact.id
    with session_scope(db_url) as s:
        assert on_record_changes(s, tenant_id, [RecordChange("contact", contact_id, "updated",
                                                             {"phone": (None, "1")})], None) == []
        s.get(Contact, contact_id).lifecycle_stage = "customer"
        assert len(on_record_changes(s, tenant_id, [RecordChange("contact", contact_id, "updated",
                                                                 {"lifecycle_stage": ("lead", "customer")})], None)) == 1
    [task] = rows(db_url, "task", tenant_id)
    assert task.title == "Onboard ada@example.org" and task.contact_id == contact_id


def test_a_rule_updating_the_deal_on_stage_change_does_not_loop(db_url, tenant_id):
    deal_id = _deal(db_url, tenant_id)
    with session_scope(db_url) as s:
        rule_id = apply_rules(s, tenant_id, {
            "name": "advance", "trigger": {"type": "deal_stage_changed"},
            "actions": [{"type": "update_deal", "params": {"stage": "{new_stage}-reviewed", "probability": 10}}]})[0]["id"]
    _sync_changes_stage(db_url, tenant_id, deal_id, "appointmentscheduled", "qualifiedtobuy")
    [deal] = rows(db_url, "deal", tenant_id)
    assert deal.stage == "qualifiedtobuy-reviewed"           # ran once, on the sync's change only
    assert parse_cause(deal.last_change_cause) == (rule_id, 1)
    assert len(internal_events(db_url, tenant_id)) == 1       # its own write made no event
    assert [r.outcome for r in runs(db_url, rule_id=rule_id)] == ["succeeded"]


def test_a_chain_of_rules_stops_at_max_depth(db_url, tenant_id, monkeypatch):
    deal_id = _deal(db_url, tenant_id)
    ping_pong = [{"name": name, "trigger": {"type": "deal_stage_changed"},
                  "conditions": [{"field": "new_stage", "operator": "equals", "value": when}],
                  "actions": [{"type": "update_deal", "params": {"stage": then}}]}
                 for name, when, then in (("ping", "a", "b"), ("pong", "b", "a"))]
    with session_scope(db_url) as s:
        ids = {r["name"]: r["id"] for r in apply_rules(s, tenant_id, ping_pong)}
    _sync_changes_stage(db_url, tenant_id, deal_id, "x", "a")
    # sync a -> ping b (depth 1) -> pong a (depth 2) -> ping b (depth 3) -> stop (max depth 3)
    [deal] = rows(db_url, "deal", tenant_id)
    assert deal.stage == "b" and parse_cause(deal.last_change_cause) == (ids["ping"], 3)
    assert len(internal_events(db_url, tenant_id)) == 3
    assert sum(r.outcome == "succeeded" for r in runs(db_url)) == 3


def test_max_depth_is_a_setting(db_url, tenant_id, monkeypatch):
    from crmsync import settings
    monkeypatch.setenv("CRMSYNC_AUTOMATION_MAX_DEPTH", "1")
    settings.get_settings.cache_clear()
    deal_id = _deal(db_url, tenant_id)
    with session_scope(db_url) as s:
        apply_rules(s, tenant_id, [{"name": name, "trigger": {"type": "deal_stage_changed"},
                                    "actions": [{"type": "update_deal", "params": {"stage": then}}]}
                                   for name, then in (("one", "b"), ("two", "c"))])
    _sync_changes_stage(db_url, tenant_id, deal_id, "x", "a")
    # both rules ran on the sync's change (depth 1); neither reacted to the other's write
    assert len(internal_events(db_url, tenant_id)) == 1
    assert sorted(r.outcome for r in runs(db_url)) == ["succeeded", "succeeded"]


def test_cause_format():
    assert parse_cause(rule_cause("r1", "e1", 2)) == ("r1", 2)
    assert parse_cause("sync:hubspot") == (None, 0) and parse_cause(None) == (None, 0)

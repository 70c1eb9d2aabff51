"""Rule validation (every invalid rule refused with the path of its error) and the rule store."""
import copy

import pytest
from sqlalchemy import select

from crmsync.automation.errors import RuleError
from crmsync.automation.rules import apply_rules, list_rules, validate_rule, validate_rules
from crmsync.db.models import AutomationRule
from tests.automation.seed import EMAIL_REPLY_RULE, MEETING_RULE
from tests.fixtures.factories import make_tenant


def _meeting(mutate):
    rule = copy.deepcopy(MEETING_RULE)
    mutate(rule)
    return rule


def _set(path, value):
    """mutate(rule) that sets rule[...path] = value."""
    def mutate(rule):
        target = rule
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _drop(path):
    def mutate(rule):
        target = rule
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


P0 = ("actions", 0, "params")
P1 = ("actions", 1, "params")

INVALID = [
    # (what, mutation, path of the error, words in the message)
    ("no name", _drop(("name",)), "name", "Missing data"),
    ("empty name", _set(("name",), ""), "name", "Length must be between 1 and 200"),
    ("enabled not a bool", _set(("enabled",), "maybe"), "enabled", "Not a valid boolean"),
    ("no trigger", _drop(("trigger",)), "trigger", "Missing data"),
    ("unknown trigger", _set(("trigger", "type"), "email_bounced"), "trigger.type", "Must be one of"),
    ("unknown trigger option", _set(("trigger", "when"), "now"), "trigger.when", "Unknown field"),
    ("fields option on the wrong trigger", _set(("trigger", "fields"), ["stage"]), "trigger.fields",
     "takes no fields option"),
    ("unknown rule key", _set(("priority",), 1), "priority", "Unknown field"),
    ("conditions not a list", _set(("conditions",), {"field": "x"}), "conditions", "Not a valid list"),
    ("condition not an object", _set(("conditions", 0), "deal.stage == x"), "conditions[0]", "a condition is"),
    ("unknown operator", _set(("conditions", 0, "operator"), "eq"), "conditions[0].operator", "Must be one of"),
    ("no operator", _drop(("conditions", 0, "operator")), "conditions[0].operator", "Missing data"),
    ("unknown condition key", _set(("conditions", 0, "negate"), True), "conditions[0].negate", "Unknown field"),
    ("unknown variable in a condition", _set(("conditions", 0, "field"), "dael.stage"), "conditions[0].field",
     "unknown variable 'dael'"),
    ("unknown entity field in a condition", _set(("conditions", 0, "field"), "deal.stag"), "conditions[0].field",
     "deal has no field 'stag'"),
    ("equals without a value", _set(("conditions", 0, "value"), None), "conditions[0].value", "use is_empty"),
    ("is_empty with a value", lambda r: r["conditions"][0].update(operator="is_empty"), "conditions[0].value",
     "takes no value"),
    ("in without a list", lambda r: r["conditions"][0].update(operator="in"), "conditions[0].value",
     "needs a list"),
    ("greater_than with text", lambda r: r["conditions"][0].update(operator="greater_than", value="big"),
     "conditions[0].value", "numbers or dates"),
    ("bad template in a condition value", _set(("conditions", 0, "value"), "{now +}"), "conditions[0].value",
     "expected a number"),
    ("empty any group", _set(("conditions", 0), {"any": []}), "conditions[0].any", "non-empty list"),
    ("bad member of an any group",
     _set(("conditions", 0), {"any": [{"field": "deal.stage", "operator": "equals", "value": "a"},
                                      {"field": "deal.stage", "operator": "like", "value": "a"}]}),
     "conditions[0].any[1].operator", "Must be one of"),
    ("any group with extra keys", _set(("conditions", 0), {"any": [], "all": []}), "conditions[0].all",
     "Unknown field"),
    ("no actions", _set(("actions",), []), "actions", "Shorter than minimum"),
    ("unknown action", _set(("actions", 1, "type"), "send_email"), "actions[1].type", "Must be one of"),
    ("unknown action key", _set(("actions", 0, "delay"), 5), "actions[0].delay", "Unknown field"),
    ("params not an object", _set(("actions", 0, "params"), ["stage"]), "actions[0].params", "Not a valid mapping"),
    ("unknown param", _set(P0 + ("stage_name",), "x"), "actions[0].params.stage_name", "Unknown field"),
    ("probability out of range", _set(P0 + ("probability",), 140), "actions[0].params.probability",
     "less than or equal to 100"),
    ("amount not a number", _set(P0 + ("amount",), "a lot"), "actions[0].params.amount", "expected a number"),
    ("amount a boolean", _set(P0 + ("amount",), True), "actions[0].params.amount", "expected a number"),
    ("deal status not a status", _set(P0 + ("status",), "pending"), "actions[0].params.status", "not one of"),
    ("task without title", _drop(P1 + ("title",)), "actions[1].params.title", "Missing data"),
    ("task title empty", _set(P1 + ("title",), "  "), "actions[1].params.title", "a value is required"),
    ("priority not a priority", _set(P1 + ("priority",), "urgent"), "actions[1].params.priority", "not one of"),
    ("due date not a date", _set(P1 + ("due_date",), "next tuesday"), "actions[1].params.due_date",
     "expected an ISO date"),
    ("due date from a text variable", _set(P1 + ("due_date",), "{contact_name}"), "actions[1].params.due_date",
     "expected a date, but {contact_name} is text"),
    ("due date with text around", _set(P1 + ("due_date",), "on {meeting_date}"), "actions[1].params.due_date",
     "single {...} expression"),
    ("due date unknown variable", _set(P1 + ("due_date",), "{meting_date - 1 day}"),
     "actions[1].params.due_date", "unknown variable 'meting_date'"),
    ("due date unknown unit", _set(P1 + ("due_date",), "{meeting_date - 1 fortnight}"),
     "actions[1].params.due_date", "unknown unit"),
    ("date math on text", _set(P1 + ("title",), "{contact_name - 1 day}"), "actions[1].params.title",
     "date arithmetic"),
    ("unclosed brace in title", _set(P1 + ("title",), "Prepare {contact_name"), "actions[1].params.title",
     "unclosed '{'"),
    ("variable of another trigger", _set(P1 + ("title",), "Re: {subject}"), "actions[1].params.title",
     "unknown variable 'subject'"),
    ("tags not strings", lambda r: r["actions"].append({"type": "update_contact", "params": {"tags": [1]}}),
     "actions[2].params.tags", "list of strings"),
    ("custom fields not an object",
     lambda r: r["actions"].append({"type": "update_deal", "params": {"custom_fields": "x"}}),
     "actions[2].params.custom_fields", "object of custom field values"),
    ("activity without type", lambda r: r["actions"].append({"type": "create_activity", "params": {}}),
     "actions[2].params.type", "Missing data"),
    ("activity of unknown type",
     lambda r: r["actions"].append({"type": "create_activity", "params": {"type": "sms"}}),
     "actions[2].params.type", "not one of"),
    ("bad literal email",
     lambda r: r["actions"].append({"type": "update_contact", "params": {"email": "not-an-email"}}),
     "actions[2].params.email", "Not a valid email"),
]


@pytest.mark.parametrize("what, mutate, path, words", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_rule_is_refused_with_its_path(what, mutate, path, words):
    with pytest.raises(RuleError) as err:
        validate_rule(_meeting(mutate))
    assert err.value.path == path, (what, err.value.errors)
    assert words in err.value.message, (what, err.value.message)


def test_not_an_object_and_list_paths():
    with pytest.raises(RuleError, match="a rule is an object"):
        validate_rule(["x"])
    bad = _meeting(_set(P1 + ("due_date",), "{contact_name}"))
    with pytest.raises(RuleError) as err:
        validate_rules([copy.deepcopy(EMAIL_REPLY_RULE), bad])
    assert err.value.path == "[1].actions[1].params.due_date"
    with pytest.raises(RuleError) as err:
        validate_rules([copy.deepcopy(EMAIL_REPLY_RULE), copy.deepcopy(EMAIL_REPLY_RULE)])
    assert err.value.path == "[1].name" and "duplicate" in err.value.message


def test_every_problem_is_listed():
    rule = _meeting(lambda r: (r["trigger"].update(type="nope"), r["actions"][1].update(type="x")))
    with pytest.raises(RuleError) as err:
        validate_rule(rule)
    assert [p for p, _ in err.value.errors] == ["trigger.type", "actions[1].type"]


def test_seed_rules_and_other_valid_rules_pass():
    assert validate_rule(EMAIL_REPLY_RULE)["actions"] == EMAIL_REPLY_RULE["actions"]
    assert validate_rule(MEETING_RULE)["conditions"] == MEETING_RULE["conditions"]
    validate_rule({"name": "stage watcher", "trigger": {"type": "contact_updated", "fields": ["lifecycle_stage"]},
                   "conditions": [{"any": [{"field": "changes.lifecycle_stage.new", "operator": "equals",
                                            "value": "customer"},
                                           {"field": "contact.lead_score", "operator": "greater_than",
                                            "value": "50"}]}],
                   "actions": [{"type": "create_activity",
                                "params": {"type": "note", "body": "Now {contact.lifecycle_stage} ({now})",
                                           "occurred_at": "{now - 5 minutes}"}},
                               {"type": "update_contact", "params": {"tags": ["customer", "{email}"],
                                                                     "custom_fields": {"source": "{cause}"}}}]})
    validate_rule({"name": "won", "trigger": {"type": "deal_stage_changed"},
                   "conditions": [{"field": "new_stage", "operator": "in", "value": ["closedwon"]}],
                   "actions": [{"type": "create_task", "params": {"title": "Kick-off for {deal.name}",
                                                                  "due_date": "{now + 2 hours}",
                                                                  "status": "not_started"}}]})


def test_apply_upserts_by_name_all_or_nothing(session):
    tenant = make_tenant(session)
    other = make_tenant(session)
    out = apply_rules(session, tenant.id, [EMAIL_REPLY_RULE, MEETING_RULE])
    assert [r["status"] for r in out] == ["created", "created"]
    assert [r["status"] for r in apply_rules(session, tenant.id, EMAIL_REPLY_RULE)] == ["unchanged"]
    changed = copy.deepcopy(MEETING_RULE)
    changed["actions"][0]["params"]["probability"] = 50
    assert [r["status"] for r in apply_rules(session, tenant.id, changed)] == ["updated"]
    rule = session.scalars(select(AutomationRule).where(AutomationRule.name == MEETING_RULE["name"])).one()
    assert rule.actions[0]["params"]["probability"] == 50 and rule.id == out[1]["id"]
    # one bad rule in a file: nothing of the file is written
    new = copy.deepcopy(EMAIL_REPLY_RULE)
    new["name"] = "another"
    bad = _meeting(_set(("trigger", "type"), "nope"))
    with pytest.raises(RuleError) as err:
        apply_rules(session, tenant.id, [new, bad])
    assert err.value.path == "[1].trigger.type"
    assert len(list_rules(session, tenant.id)) == 2
    # same name, other tenant: a separate rule
    apply_rules(session, other.id, EMAIL_REPLY_RULE)
    assert len(list_rules(session)) == 3
    with pytest.raises(RuleError, match="no tenant"):
        apply_rules(session, "00000000-0000-0000-0000-000000000000", EMAIL_REPLY_RULE)

"""`crmsync rules ...` as an operator runs it: the installed script in a subprocess."""
import json
import os
import shutil
import subprocess

import pytest
import yaml

from crmsync.db import session_scope
from tests.automation.seed import MEETING_RULE, seed_rules
from tests.fixtures.db import TEST_SECRET_KEY
from tests.fixtures.factories import make_tenant

CRMSYNC = shutil.which("crmsync") or os.path.join(os.path.dirname(os.sys.executable), "crmsync")


@pytest.fixture
def run(db_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(CRMSYNC_DATABASE_URL=db_url, CRMSYNC_SECRET_KEY=TEST_SECRET_KEY)
    return lambda *args: subprocess.run([CRMSYNC, *args], check=False, capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def tenant_id(db_url):
    with session_scope(db_url) as s:
        return make_tenant(s).id


def test_apply_list_and_reapply(run, tenant_id, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(seed_rules(), sort_keys=False))
    out = run("rules", "apply", str(path), "--tenant", tenant_id, "--json")
    assert out.returncode == 0, out.stderr
    assert [r["status"] for r in json.loads(out.stdout)] == ["created", "created"]
    listed = json.loads(run("rules", "list", "--tenant", tenant_id, "--json").stdout)
    assert sorted(r["name"] for r in listed) == sorted(r["name"] for r in seed_rules())
    # what `rules list --json` prints applies back unchanged
    back = tmp_path / "back.json"
    back.write_text(json.dumps(listed))
    again = run("rules", "apply", str(back), "--json")          # the only tenant: --tenant may be left out
    assert [r["status"] for r in json.loads(again.stdout)] == ["unchanged", "unchanged"], again.stderr
    human = run("rules", "list")
    assert "meeting_scheduled" in human.stdout and "update_deal, create_task" in human.stdout


def test_invalid_rule_exits_2_with_the_path(run, tenant_id, tmp_path):
    bad = json.loads(json.dumps(MEETING_RULE))
    bad["actions"][1]["params"]["due_date"] = "{meeting_date - 1 fortnight}"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([seed_rules()[0], bad]))
    out = run("rules", "apply", str(path), "--tenant", tenant_id)
    assert out.returncode == 2
    assert "[1].actions[1].params.due_date: unknown unit 'fortnight'" in out.stderr
    assert json.loads(run("rules", "list", "--json").stdout) == []
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    out = run("rules", "apply", str(broken), "--tenant", tenant_id)
    assert out.returncode == 2 and "not valid JSON" in out.stderr


def test_dry_run(run, tenant_id, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(seed_rules()))
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"type": "meeting_scheduled", "contact_email": "ada@example.org",
                                 "meeting_date": "2025-03-14T15:30:00Z",
                                 "contact": {"first_name": "Ada", "last_name": "Lovelace"},
                                 "deal": {"name": "Ada's deal", "stage": "qualified_to_buy"}}))
    out = run("rules", "test", str(rules), "--event", str(event), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    skipped, meeting = doc["rules"]
    assert skipped["outcome"] == "skipped" and meeting["outcome"] == "succeeded"
    assert meeting["conditions"][0]["holds"] and meeting["conditions"][0]["actual"] == "qualified_to_buy"
    assert meeting["actions"][1]["values"] == {
        "title": "Prepare for meeting with Ada Lovelace", "due_date": "2025-03-13T15:30:00+00:00",
        "priority": "high", "status": "not_started"}
    human = run("rules", "test", str(rules), "--event", str(event), "--tenant", tenant_id)
    assert human.returncode == 0, human.stderr
    # with --tenant the contact and deal come from the tenant's data (none here) and the overrides
    assert "✓ conditions[0]: deal.stage equals" in human.stdout
    assert "create_task: created task" in human.stdout
    assert json.loads(run("rules", "runs", "--json").stdout) == []        # nothing was written


def test_dry_run_names_an_unresolved_variable(run, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([MEETING_RULE]))
    event = tmp_path / "event.json"
    # the event: the name at the top level is what the title shows
    event.write_text(json.dumps({"type": "meeting_scheduled", "meeting_date": "2026-12-10T15:00:00Z",
                                 "contact_name": "Ada Lovelace",
                                 "deal": {"name": "ACC Deal", "stage": "qualified_to_buy"}}))
    doc = json.loads(run("rules", "test", str(rules), "--event", str(event), "--json").stdout)
    assert doc["rules"][0]["actions"][1]["values"]["title"] == "Prepare for meeting with Ada Lovelace"
    assert doc["rules"][0]["warnings"] == []
    event.write_text(json.dumps({"type": "meeting_scheduled", "meeting_date": "2026-12-10T15:00:00Z",
                                 "deal": {"name": "ACC Deal", "stage": "qualified_to_buy"}}))
    out = run("rules", "test", str(rules), "--event", str(event), "--json")
    assert out.returncode == 0, out.stderr
    [rule] = json.loads(out.stdout)["rules"]
    assert rule["actions"][1]["values"]["title"] == "Prepare for meeting with {contact_name}"
    assert [(w["action"], w["variable"]) for w in rule["warnings"]] == [("actions[1]", "contact_name")]
    human = run("rules", "test", str(rules), "--event", str(event))
    assert ("! warning: actions[1] create_task: {contact_name} in params.title has no value for this event"
            in human.stdout), human.stdout

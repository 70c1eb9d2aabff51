"""deploy/prometheus/alerts.yml: valid rules, and each alert fires (and stays quiet) as its unit
tests say (tests/deploy/alerts_test.yml, `promtool test rules`)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy import tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "deploy" / "alerts_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_alert_rules_are_valid():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_entry_in_the_readme():
    alerts = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert set(alerts) == tested
    readme = (ROOT / "README.md").read_text()
    for name, rule in alerts.items():
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert f"#### {anchor}" in readme.lower(), f"README has no runbook heading for {name} (#{anchor})"

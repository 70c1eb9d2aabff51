"""`crmsync rules ...`: apply rule files (JSON or YAML, upsert by name), list them, dry-run them
against an event, and read the run log."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from crmsync.console import ID, LIMIT, bad_input, emit, json_option, table


def _session():
    from crmsync.db import session_scope
    return session_scope()


def load_document(path: str, what: str) -> Any:
    """A JSON or YAML file (by extension; otherwise JSON first, then YAML)."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        bad_input(f"{what}: cannot read {path}: {err.strerror}")
    suffix = Path(path).suffix.lower()
    if suffix != ".json":
        import yaml
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            if suffix in (".yaml", ".yml"):
                bad_input(f"{what}: {path} is not valid YAML: {str(err).splitlines()[0]}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        bad_input(f"{what}: {path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}")


def _tenant_or_only(session, tenant_id: str | None) -> str:
    """--tenant, or the only tenant there is."""
    from crmsync.db.models import Tenant
    if tenant_id:
        return tenant_id
    ids = list(session.scalars(select(Tenant.id).limit(2)))
    if len(ids) != 1:
        bad_input("--tenant is required (there is not exactly one tenant)")
    return ids[0]


@click.group()
def rules():
    """Automation rules: a trigger, conditions and actions that write to the CRMs."""


@rules.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tenant", "tenant_id", help="The tenant the rules belong to (default: the only one).")
@json_option
def rules_apply(file, tenant_id, as_json):
    """Create or update the rules in FILE (one rule or a list; JSON or YAML), matched by name."""
    from crmsync.automation.errors import RuleError
    from crmsync.automation.rules import apply_rules
    data = load_document(file, "FILE")
    with _session() as s:
        try:
            out = apply_rules(s, _tenant_or_only(s, tenant_id), data)
        except RuleError as err:
            s.rollback()
            bad_input(f"{err.path}: {err.message}" if err.path else err.message)
    emit(out, as_json, table(out, ["id", "name", "status"]))


@rules.command("list")
@click.option("--tenant", "tenant_id")
@json_option
def rules_list(tenant_id, as_json):
    """The stored rules."""
    from crmsync.automation.errors import RuleError
    from crmsync.automation.rules import list_rules, rule_as_dict
    with _session() as s:
        try:
            rows = [rule_as_dict(r) for r in list_rules(s, tenant_id)]
        except RuleError as err:
            bad_input(f"--tenant: {err.message}")
    human = [{**r, "trigger": r["trigger"].get("type"), "conditions": len(r["conditions"]),
              "actions": ", ".join(a["type"] for a in r["actions"])} for r in rows]
    emit(rows, as_json, table(human, ["id", "tenant_id", "name", "enabled", "trigger", "conditions", "actions"]))


def _set_enabled(name_or_id, tenant_id, enabled, as_json):
    from crmsync.automation.errors import RuleError
    from crmsync.automation.rules import find_rule, rule_as_dict
    with _session() as s:
        try:
            rule = find_rule(s, _tenant_or_only(s, tenant_id), name_or_id)
        except RuleError as err:
            bad_input(err.message)
        rule.enabled = enabled
        out = rule_as_dict(rule)
    emit(out, as_json, f"{out['name']}: {'enabled' if enabled else 'disabled'}")


@rules.command("enable")
@click.argument("rule")
@click.option("--tenant", "tenant_id")
@json_option
def rules_enable(rule, tenant_id, as_json):
    """Enable a rule (by name or id)."""
    _set_enabled(rule, tenant_id, True, as_json)


@rules.command("disable")
@click.argument("rule")
@click.option("--tenant", "tenant_id")
@json_option
def rules_disable(rule, tenant_id, as_json):
    """Disable a rule (by name or id)."""
    _set_enabled(rule, tenant_id, False, as_json)


def _event_document(path: str) -> tuple[str | None, dict, dict]:
    """(type, payload, entity overrides) of a test event. Either {"type": ..., "payload"|"fields":
    {...}, "contact"/"deal"/"company": {...}} or the bare payload (the rules' own trigger)."""
    doc = load_document(path, "--event")
    if not isinstance(doc, dict):
        bad_input("--event: the event is a JSON object of its fields")
    overrides = {k: doc[k] for k in ("contact", "deal", "company") if isinstance(doc.get(k), dict)}
    if "payload" in doc or "fields" in doc:
        payload = doc.get("payload", doc.get("fields"))
        if not isinstance(payload, dict):
            bad_input("--event: payload must be an object")
        return doc.get("type"), payload, overrides
    payload = {k: v for k, v in doc.items() if k not in ("type", "contact", "deal", "company")}
    return doc.get("type"), payload, overrides


@rules.command("test")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--event", "event_file", required=True, type=click.Path(dir_okay=False),
              help="A JSON/YAML event: its fields, optionally with type and contact/deal/company.")
@click.option("--tenant", "tenant_id", help="Resolve contact and deal from this tenant's data.")
@json_option
def rules_test(file, event_file, tenant_id, as_json):
    """Dry run: which conditions hold and what each action would write. Nothing is written."""
    from crmsync.automation.errors import RuleError
    from crmsync.automation.rules import validate_rules
    from crmsync.automation.runner import dry_run
    from crmsync.automation.triggers import TRIGGERS
    try:
        rule_list = validate_rules(load_document(file, "FILE"))
    except RuleError as err:
        bad_input(f"{err.path}: {err.message}" if err.path else err.message)
    event_type, payload, overrides = _event_document(event_file)
    event_type = event_type or rule_list[0]["trigger"]["type"]
    if event_type not in TRIGGERS:
        bad_input(f"--event: unknown event type {event_type!r}; known: {', '.join(sorted(TRIGGERS))}")
    if tenant_id:
        from crmsync.db import sessionmaker_for
        session = sessionmaker_for()()
        try:     # a dry run only reads; the rollback makes sure of it
            from crmsync.automation.rules import tenant_id_of
            try:
                tenant_id = tenant_id_of(session, tenant_id)
            except RuleError as err:
                bad_input(f"--tenant: {err.message}")
            results = dry_run(session, tenant_id, rule_list, event_type, payload, overrides=overrides)
        finally:
            session.rollback()
            session.close()
    else:
        results = dry_run(None, None, rule_list, event_type, payload, overrides=overrides)
    out = {"event_type": event_type, "rules": [r.as_dict() for r in results]}
    emit(out, as_json, _describe(out))


def _describe(out: dict) -> str:
    lines = [f"event: {out['event_type']}"]
    for r in out["rules"]:
        lines.append(f"rule {r['rule']!r}: {r['outcome']}" + (f" ({r['reason']})" if r["reason"] else "")
                     + (f" — {r['error']}" if r["error"] else ""))
        for c in _flat_conditions(r["conditions"]):
            lines.append(f"  {'✓' if c['holds'] else '✗'} {c['path']}: {c.get('field')} {c.get('operator')} "
                         f"{json.dumps(c.get('value'), default=str)} (actual {json.dumps(c.get('actual'), default=str)})")
        for a in r["actions"]:
            values = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in a["values"].items())
            lines.append(f"  → {a['type']}: {a['op']} {a['entity']} {a['id'] or ''} {values}".rstrip()
                         + (f" ({a['reason']})" if a.get("reason") else ""))
            lines.extend(f"  ! warning: {w['message']}" for w in a.get("warnings", ()))
    return "\n".join(lines)


def _flat_conditions(conditions: list[dict]) -> list[dict]:
    out = []
    for c in conditions:
        if "any" in c:
            out.append({"path": c["path"], "field": "any of", "operator": f"{len(c['any'])} conditions",
                        "value": None, "actual": None, "holds": c["holds"]})
            out.extend(_flat_conditions(c["any"]))
        else:
            out.append(c)
    return out


@rules.command("runs")
@click.option("--tenant", "tenant_id", type=ID)
@click.option("--rule", "rule_name", help="Only this rule (name or id; needs --tenant unless there is one).")
@click.option("--event", "event_id", help="Only runs for this event id.")
@click.option("--limit", type=LIMIT, default=50, show_default=True)
@json_option
def rules_runs(tenant_id, rule_name, event_id, limit, as_json):
    """The run log: which rule ran for which event, its outcome and the records it wrote."""
    from crmsync.automation.errors import RuleError
    from crmsync.automation.rules import find_rule
    from crmsync.db.models import AutomationRule, AutomationRun
    with _session() as s:
        q = (select(AutomationRun, AutomationRule.name).join(AutomationRule, AutomationRule.id == AutomationRun.rule_id)
             .order_by(AutomationRun.created_at.desc()).limit(limit))
        try:
            if tenant_id:
                q = q.where(AutomationRun.tenant_id == tenant_id)
            if rule_name:
                q = q.where(AutomationRun.rule_id == find_rule(s, _tenant_or_only(s, tenant_id), rule_name).id)
            if event_id:
                import uuid
                uuid.UUID(event_id)
                q = q.where(AutomationRun.event_id == event_id)
        except RuleError as err:
            bad_input(err.message)
        except ValueError:
            bad_input(f"--event: not an event id: {event_id!r}")
        rows = [{"id": run.id, "rule_id": run.rule_id, "rule": name, "event_id": run.event_id,
                 "outcome": run.outcome, "error": run.error, "created": run.detail.get("created", {}),
                 "changed": run.detail.get("changed", {}), "warnings": run.detail.get("warnings", []),
                 "detail": run.detail, "created_at": run.created_at}
                for run, name in s.execute(q)]
    human = [{**r, "warnings": "; ".join(w["message"] for w in r["warnings"])} for r in rows]
    emit(rows, as_json, table(human, ["created_at", "rule", "event_id", "outcome", "created", "changed", "warnings",
                                      "error"]))

"""The `crmsync.automation.run(event_id)` task: run a tenant's rules for one event.

At most once per (rule, event), retries and concurrent redeliveries included: the
`crm_automation_runs` row is inserted first, in a savepoint, in the same transaction as the
action writes — a second worker waits on the unique key and then skips; a crash rolls back
both, so the retry starts clean. A rule whose actions fail (a value that renders wrong, say)
is logged as failed with its writes undone, and the other rules still run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crmsync.automation.actions import ActionOutcome, perform
from crmsync.automation.conditions import all_hold, evaluate_all
from crmsync.automation.context import RuleContext, build_context
from crmsync.automation.errors import ActionError
from crmsync.automation.triggers import (
    INTERNAL_PLATFORM,
    PRODUCT_PLATFORM,
    TRIGGERS,
    RuleChange,
    on_record_changes,
    parse_cause,
    rule_cause,
)
from crmsync.db.models import AutomationRule, AutomationRun, WebhookEvent
from crmsync.db.types import utcnow

log = logging.getLogger(__name__)

SUCCEEDED, NOT_MET, SKIPPED, FAILED = "succeeded", "conditions_not_met", "skipped", "failed"


@dataclass
class RuleResult:
    """What one rule did (or, in a dry run, would do) for one event."""
    rule_id: str | None
    rule_name: str
    outcome: str
    conditions: list[dict] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    error: str | None = None
    reason: str | None = None
    depth: int = 0

    @property
    def warnings(self) -> list[dict]:
        """Template variables that resolved to nothing, per action (the actions still ran)."""
        return [w for a in self.actions for w in a.get("warnings", ())]

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "rule": self.rule_name, "outcome": self.outcome,
                "conditions": self.conditions, "actions": self.actions, "warnings": self.warnings,
                "error": self.error, "reason": self.reason, "depth": self.depth}

    def detail(self) -> dict[str, Any]:
        created: dict[str, list[str]] = {}
        changed: dict[str, list[str]] = {}
        for a in self.actions:
            if a["op"] == "created":
                created.setdefault(a["entity"], []).append(a["id"])
            elif a["op"] == "updated":
                changed.setdefault(a["entity"], []).append(a["id"])
        return {"conditions": self.conditions, "actions": self.actions, "created": created, "changed": changed,
                "warnings": self.warnings, "depth": self.depth, "reason": self.reason}


def evaluate_rule(session: Session | None, tenant_id: str | None, rule: dict, ctx: RuleContext, *,
                  rule_id: str | None, event_id: str, depth: int, now: datetime, dry_run: bool,
                  changes: list[RuleChange]) -> RuleResult:
    """Conditions, then actions in order. Raises ActionError for a failing action."""
    result = RuleResult(rule_id, rule["name"], NOT_MET, depth=depth)
    results = evaluate_all(rule.get("conditions") or [], ctx.values)
    result.conditions = [r.as_dict() for r in results]
    if not all_hold(results):
        return result
    cause = rule_cause(rule_id or "dry-run", event_id, depth)
    outcomes: list[ActionOutcome] = []
    for i, action in enumerate(rule["actions"]):
        outcomes.append(perform(session, tenant_id, i, action, ctx, cause=cause, now=now, dry_run=dry_run,
                                changes=changes))
        result.actions = [o.as_dict() for o in outcomes]
    result.outcome = SUCCEEDED
    return result


def _rule_data(rule: AutomationRule) -> dict:
    return {"name": rule.name, "trigger": rule.trigger, "conditions": rule.conditions, "actions": rule.actions}


def run_for_event(session: Session, event_id: str, *, now: datetime | None = None) -> list[RuleResult]:
    """Run the tenant's enabled rules for the event's trigger. Safe to call again for the same
    event: rules that already ran are skipped."""
    event = session.get(WebhookEvent, event_id)
    if event is None:
        log.warning("automation: event %s is gone", event_id)
        return []
    now = now or utcnow()
    if event.platform not in (PRODUCT_PLATFORM, INTERNAL_PLATFORM) or event.event_type not in TRIGGERS:
        log.info("automation: event %s (%s/%s) is no rule trigger", event_id, event.platform, event.event_type)
        if event.platform in (PRODUCT_PLATFORM, INTERNAL_PLATFORM):
            _finish(event, now, "ignored")      # or the outbox sweeper would bring it back forever
        return []
    tenant_id = event.tenant_id
    payload = event.payload or {}
    cause_rule, cause_depth = parse_cause(payload.get("cause")) if event.platform == INTERNAL_PLATFORM else (None, 0)
    depth = cause_depth + 1
    from crmsync.settings import get_settings
    max_depth = get_settings().automation_max_depth
    rules = list(session.scalars(select(AutomationRule).where(
        AutomationRule.tenant_id == tenant_id, AutomationRule.enabled.is_(True),
        AutomationRule.trigger["type"].as_string() == event.event_type).order_by(AutomationRule.created_at,
                                                                                   AutomationRule.name)))
    done = set(session.scalars(select(AutomationRun.rule_id).where(AutomationRun.event_id == event.id)))
    base = build_context(session, tenant_id, event.event_type, payload, now=now, event_id=event.id) if rules else None
    results: list[RuleResult] = []
    wrote = False
    for rule in rules:
        if rule.id in done:
            continue
        if cause_rule == rule.id:
            reason = "the event is this rule's own write"
        elif depth > max_depth:
            reason = f"rule chain reached automation_max_depth ({max_depth})"
        else:
            reason = None
        result, changes = _run_rule(session, rule, event, base, depth=depth, now=now, skip_reason=reason)
        if result is None:
            continue        # another worker holds or finished this (rule, event)
        results.append(result)
        if changes:
            wrote = True
            # Let other rules react to this rule's writes (one level deeper).
            on_record_changes(session, tenant_id, changes, rule_cause(rule.id, event.id, depth))
    if wrote:
        _request_push(session, tenant_id)
    _finish(event, now, "automation" if results else "no_rules")
    for r in results:
        log.info("automation: rule %s on event %s: %s%s", r.rule_name, event.id, r.outcome,
                 f" ({r.error})" if r.error else "")
        for w in r.warnings:
            log.warning("automation: rule %s on event %s: %s", r.rule_name, event.id, w["message"])
    return results


def _finish(event: WebhookEvent, now: datetime, outcome: str) -> None:
    event.processed = True
    event.processed_at = now
    event.attempts = (event.attempts or 0) + 1
    event.outcome = outcome


def _run_rule(session: Session, rule: AutomationRule, event: WebhookEvent, base: RuleContext, *, depth: int,
              now: datetime, skip_reason: str | None) -> tuple[RuleResult | None, list[RuleChange]]:
    changes: list[RuleChange] = []
    run = AutomationRun(tenant_id=event.tenant_id, rule_id=rule.id, event_id=event.id, outcome="running",
                        detail={}, created_at=now)
    savepoint = session.begin_nested()
    try:
        session.add(run)
        session.flush()          # take the (rule, event) key first: a concurrent worker waits here
    except IntegrityError:
        savepoint.rollback()
        return None, []
    if skip_reason:
        result = RuleResult(rule.id, rule.name, SKIPPED, reason=skip_reason, depth=depth)
    else:
        try:
            result = evaluate_rule(session, event.tenant_id, _rule_data(rule), base.copy(), rule_id=rule.id,
                                   event_id=event.id, depth=depth, now=now, dry_run=False, changes=changes)
        except ActionError as err:
            # Undo this rule's writes but keep the log of the attempt.
            savepoint.rollback()
            changes = []
            result = RuleResult(rule.id, rule.name, FAILED, error=str(err), depth=depth)
            savepoint = session.begin_nested()
            run = AutomationRun(tenant_id=event.tenant_id, rule_id=rule.id, event_id=event.id,
                                outcome=FAILED, detail={}, created_at=now)
            session.add(run)
    run.outcome = result.outcome
    run.detail = result.detail()
    run.error = result.error
    session.flush()
    savepoint.commit()
    return result, changes


def _request_push(session: Session, tenant_id: str) -> None:
    """Hand the rule's writes to the normal push path (the lead's `request_push`)."""
    from crmsync.sync.jobs import request_push
    request_push(session, tenant_id)


def dry_run(session: Session | None, tenant_id: str | None, rules: list[dict], trigger: str,
            payload: dict[str, Any], *, overrides: dict[str, Any] | None = None,
            now: datetime | None = None) -> list[RuleResult]:
    """What the rules would do for an event: conditions with their actual values, and each
    action's planned write. Nothing is written."""
    now = now or utcnow()
    base = build_context(session, tenant_id, trigger, payload, now=now, event_id="dry-run", overrides=overrides)
    out = []
    for rule in rules:
        if rule["trigger"]["type"] != trigger:
            out.append(RuleResult(None, rule["name"], SKIPPED, reason=f"its trigger is {rule['trigger']['type']}"))
            continue
        try:
            out.append(evaluate_rule(session, tenant_id, rule, base.copy(), rule_id=None, event_id="dry-run",
                                     depth=1, now=now, dry_run=True, changes=[]))
        except ActionError as err:
            out.append(RuleResult(None, rule["name"], FAILED, error=str(err)))
    return out

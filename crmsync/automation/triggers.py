"""The triggers a rule can name, what each provides to conditions and templates, and the
engine's hook for record changes.

Product triggers arrive through `POST /events/<type>` (the ingest app stores a
`crm_webhook_events` row with platform "product" and enqueues `crmsync.automation.run`).
Record triggers come from `on_record_changes`, which the sync engine calls after applying a
page or webhook, and the runner calls after a rule's own writes (so rules can chain, up to
`settings.automation_max_depth`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmsync.automation.variables import ANY, DATETIME, LIST, NUMBER, TEXT, TriggerSpec
from crmsync.db.models import ENTITY_MODELS, AutomationRule, WebhookEvent
from crmsync.db.types import utcnow
from crmsync.tasks.names import RUN_AUTOMATION

log = logging.getLogger(__name__)

INTERNAL_PLATFORM = "crmsync"
PRODUCT_PLATFORM = "product"

_COMMON = {"now": DATETIME, "event": ANY, "email": TEXT, "contact_name": TEXT,
           "contact": "contact", "company": "company", "deal": "deal"}
_RECORD = {**_COMMON, "changes": ANY, "changed_fields": LIST, "cause": TEXT}

TRIGGERS: dict[str, TriggerSpec] = {t.name: t for t in (
    # Fields as the ingest app stores them (crmsync.ingest.product_events: emails lower-cased,
    # datetimes ISO 8601); free-form extras are under `properties`.
    TriggerSpec("email_replied", "product", {
        **_COMMON, "sender_email": TEXT, "sender_name": TEXT, "recipient_email": TEXT, "subject": TEXT, "body": TEXT,
        "received_at": DATETIME, "message_id": TEXT, "thread_id": TEXT, "deal_id": TEXT,
        "occurred_at": DATETIME, "properties": ANY},
        description="someone replied to an email; the contact is the one with sender_email"),
    TriggerSpec("meeting_scheduled", "product", {
        **_COMMON, "contact_email": TEXT, "meeting_date": DATETIME, "duration_minutes": NUMBER, "title": TEXT,
        "location": TEXT, "meeting_url": TEXT, "organizer_email": TEXT, "attendee_emails": LIST,
        "deal_id": TEXT, "occurred_at": DATETIME, "properties": ANY},
        description="a meeting was booked; the contact is the one with contact_email"),
    TriggerSpec("contact_created", "record", dict(_RECORD), entity="contact"),
    TriggerSpec("contact_updated", "record", dict(_RECORD), entity="contact"),
    TriggerSpec("deal_created", "record", dict(_RECORD), entity="deal"),
    TriggerSpec("deal_stage_changed", "record", {**_RECORD, "old_stage": TEXT, "new_stage": TEXT},
                entity="deal"),
)}

# Options a trigger object may carry besides "type".
TRIGGER_OPTIONS = {"contact_updated": {"fields"}}


def triggers_for(entity: str, action: str, fields: Iterable[str]) -> list[str]:
    """The record triggers one change fires."""
    if entity == "contact":
        return ["contact_created"] if action == "created" else ["contact_updated"] if action == "updated" else []
    if entity == "deal":
        if action == "created":
            return ["deal_created"]
        if action == "updated" and "stage" in fields:
            return ["deal_stage_changed"]
    return []


# --- causes: "rule:<rule id>:event:<event id>:depth:<n>" -----------------------------------------
_CAUSE = re.compile(r"^rule:(?P<rule>[^:]+):event:(?P<event>[^:]+):depth:(?P<depth>\d+)$")


def rule_cause(rule_id: str, event_id: str, depth: int) -> str:
    return f"rule:{rule_id}:event:{event_id}:depth:{depth}"


def parse_cause(cause: str | None) -> tuple[str | None, int]:
    """(rule id, depth) of a change's cause; (None, 0) when no rule made it."""
    m = _CAUSE.match(cause or "")
    return (m.group("rule"), int(m.group("depth"))) if m else (None, 0)


@dataclass
class RuleChange:
    """A change a rule made, in the engine's RecordChange shape (entity, local_id, action,
    fields: name -> (old, new))."""
    entity: str
    local_id: str
    action: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def enabled_triggers(session: Session, tenant_id: str) -> list[tuple[str, dict]]:
    """(rule id, trigger) of the tenant's enabled rules — one query on (tenant_id, ...)."""
    rows = session.execute(select(AutomationRule.id, AutomationRule.trigger)
                           .where(AutomationRule.tenant_id == tenant_id, AutomationRule.enabled.is_(True)))
    return [(rid, trig or {}) for rid, trig in rows]


def on_record_changes(session: Session, tenant_id: str, changes: list, cause: str | None) -> list[str]:
    """Turn record changes into trigger events for the tenant's rules.

    Cheap when nothing listens: changes that fire no trigger cost nothing, and otherwise one
    indexed query over the tenant's enabled rules decides, before each change is looked at (a
    backfill page holds thousands, and the first that fires a trigger is enough to ask). When rules match, one internal
    `crm_webhook_events` row per (trigger, record, version) is stored — its key is
    deterministic, so a replayed page adds nothing — and `crmsync.automation.run` is enqueued
    after commit. Returns the ids of the events stored.
    """
    if not any(triggers_for(c.entity, c.action, (c.fields or {}).keys()) for c in changes):
        return []
    from crmsync.settings import get_settings
    cause_rule, depth = parse_cause(cause)
    if depth >= get_settings().automation_max_depth:
        log.info("automation chain stopped at depth %d (cause %s)", depth, cause)
        return []
    listening: dict[str, list[dict]] = {}
    for rule_id, trigger in enabled_triggers(session, tenant_id):
        if rule_id != cause_rule:        # a rule never triggers on its own writes
            listening.setdefault(trigger.get("type"), []).append(trigger)
    if not listening:
        return []
    wanted = [(trigger, change) for change in changes
              for trigger in triggers_for(change.entity, change.action, (change.fields or {}).keys())
              if trigger in listening and _any_listens(listening[trigger], change)]
    if not wanted:
        return []
    versions = _versions(session, tenant_id, {c.entity for _, c in wanted}, [c for _, c in wanted])
    now = utcnow()
    rows = []
    for trigger, change in wanted:
        changed = {name: [_plain(old), _plain(new)] for name, (old, new) in (change.fields or {}).items()}
        version = getattr(change, "version", None) or versions.get(change.local_id)
        digest = hashlib.sha256(json.dumps([trigger, change.local_id, _plain(version), changed],
                                           sort_keys=True, default=str).encode()).hexdigest()[:40]
        payload = {"entity": change.entity, "entity_id": change.local_id, f"{change.entity}_id": change.local_id,
                   "action": change.action, "changes": changed, "cause": cause}
        rows.append({"tenant_id": tenant_id, "platform": INTERNAL_PLATFORM, "account_id": tenant_id,
                     "event_key": f"{trigger}:{digest}", "event_type": trigger, "entity_type": change.entity,
                     "payload": payload, "occurred_at": now, "received_at": now})
    return store_events(session, rows)


def _any_listens(triggers: list[dict], change) -> bool:
    for trigger in triggers:
        only = trigger.get("fields")
        if not only or set(only) & set((change.fields or {}).keys()):
            return True
    return False


def _versions(session: Session, tenant_id: str, entities: set[str], changes: list) -> dict[str, Any]:
    """The changed rows' updated_at: with the changed values, what makes an event key unique
    to one version of a record."""
    out: dict[str, Any] = {}
    for entity in entities:
        model = ENTITY_MODELS[entity]
        ids = [c.local_id for c in changes if c.entity == entity and not getattr(c, "version", None)]
        if ids:
            out.update(session.execute(select(model.id, model.updated_at)
                                       .where(model.tenant_id == tenant_id, model.id.in_(ids))).all())
    return out


def store_events(session: Session, rows: list[dict]) -> list[str]:
    """Insert event rows, ignoring keys already stored, and enqueue the runner after commit
    for the new ones."""
    from crmsync.db import is_postgres
    from crmsync.db.models import new_id
    if not rows:
        return []
    for row in rows:
        row.setdefault("id", new_id())
    table = WebhookEvent.__table__
    if is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # One statement for the page; RETURNING names the rows that were new (keys already stored,
    # e.g. a replayed page, return nothing).
    # (executemany with RETURNING: SQLAlchemy batches it as "insertmanyvalues", compiled once.)
    stmt = (insert(table).on_conflict_do_nothing(index_elements=["platform", "account_id", "event_key"])
            .returning(table.c.id))
    keys = set().union(*rows)
    stored = [row[0] for row in session.execute(stmt, [{k: r.get(k) for k in keys} for r in rows])]
    if stored:
        from crmsync.tasks import enqueue_after_commit
        for event_id in stored:
            enqueue_after_commit(session, RUN_AUTOMATION, event_id)
    return stored

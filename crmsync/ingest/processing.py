"""Applying one stored event (task `crmsync.events.process(event_id)`).

A CRM event only says "object X changed": the task fetches X's current state and runs it through
the same merge path as a pull (`crmsync.sync.apply`, echo suppression included). Because it reads
the current state, duplicates and out-of-order deliveries are harmless: the last one to run
applies whatever the CRM holds now. Deletions are confirmed by the same fetch (a record restored
since is not deleted); merges use the payload's merged ids.

HubSpot sends one event per changed property, so an edit of five fields is five events: the first
one processed fetches the record once and marks the others received before that fetch as
"coalesced" (their change is in what it fetched).

Events without a config (product events, automation's internal events) belong to automation:
they are handed to `crmsync.automation.run`.

Outcomes: applied, unchanged, conflict, missing (the record no longer exists), deleted, merged,
ignored (config disabled, object or direction not synced), coalesced, failed (set by the
failure hook `crmsync.queue.fail_event` on a permanent error).
Errors are not caught here: the task runner retries transient ones and calls the hook.
"""
from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crmsync.db import is_postgres
from crmsync.db.models import SyncConfig, WebhookEvent
from crmsync.db.types import utcnow
from crmsync.ingest.store import AUTOMATION_TASK

log = logging.getLogger(__name__)

REFETCH_ACTIONS = ("created", "updated", "restored")
# The payload of a stored event, as a delivery body the platform's parser reads again.
_DELIVERY_OF_PAYLOAD = {"hubspot": lambda payload: [payload]}


def _locked_event(session: Session, event_id: str) -> WebhookEvent | None:
    query = select(WebhookEvent).where(WebhookEvent.id == event_id)
    if is_postgres(session):
        # Another worker holding it (a duplicate message) will finish it; skip instead of waiting.
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).first()


def _finish(event: WebhookEvent, outcome: str, error: str | None = None) -> None:
    event.processed = True
    event.processed_at = utcnow()
    event.outcome = outcome
    event.error = error


def _action(event: WebhookEvent) -> str:
    return (event.event_type or "").rsplit(".", 1)[-1]


def _merged_ids(event: WebhookEvent) -> list[str]:
    import json

    from crmsync.platforms import adapter_class
    delivery = _DELIVERY_OF_PAYLOAD.get(event.platform, lambda p: p)(event.payload)
    for parsed in adapter_class(event.platform).parse_webhook(json.dumps(delivery).encode()):
        if parsed.merged_ids:
            return [str(m) for m in parsed.merged_ids]
    return []


def _ignore_reason(event: WebhookEvent, config: SyncConfig | None) -> str | None:
    if config is None:
        return "the config no longer exists"
    if config.tenant_id != event.tenant_id:
        return "the config belongs to another tenant"
    if not config.enabled:
        return "the config is disabled"
    if config.sync_direction == "push":
        return "the config only pushes"
    if not event.entity_type or not event.external_id:
        return "not an object crmsync syncs"
    if not config.entity_enabled(event.entity_type):
        return f"{event.entity_type} sync is off for this config"
    return None


def process_event(session: Session, event_id: str) -> None:
    event = _locked_event(session, event_id)
    if event is None or event.processed:
        return
    event.attempts = (event.attempts or 0) + 1
    if event.config_id is None:
        from crmsync.queue import enqueue_after_commit
        enqueue_after_commit(session, AUTOMATION_TASK, event.id)
        return
    config = session.get(SyncConfig, event.config_id)
    reason = _ignore_reason(event, config)
    if reason:
        log.info("event %s ignored: %s", event.id, reason)
        _finish(event, "ignored", reason)
        return
    fetched_at = utcnow()
    outcome = _apply(session, config, event)
    _finish(event, outcome)
    if _action(event) in REFETCH_ACTIONS and outcome != "failed":
        _coalesce(session, event, fetched_at)


def _apply(session: Session, config: SyncConfig, event: WebhookEvent) -> str:
    from crmsync.sync.apply import apply_remote_deletions, apply_remote_merge, apply_remote_records
    from crmsync.sync.connect import connect
    entity, external_id, action = event.entity_type, event.external_id, _action(event)
    cause = f"webhook:{event.platform}"
    adapter = connect(session, config, wait=False)
    if action == "merged":
        merged = _merged_ids(event)
        if merged:
            apply_remote_merge(session, config, entity, external_id, merged)
        records = adapter.get_many(entity, [external_id])
        if records:
            apply_remote_records(session, config, entity, records, cause=cause)
        return "merged"
    records = adapter.get_many(entity, [external_id])
    if action == "deleted":
        if records:
            # Restored (or never gone) since this event was sent: the fetch is the truth.
            return _outcome_of(apply_remote_records(session, config, entity, records, cause=cause))
        result = apply_remote_deletions(session, config, entity, [external_id])
        return "deleted" if result.deleted else "unchanged"
    if not records:
        # Deleted or merged away since: its own deletion/merge event does the rest.
        return "missing"
    return _outcome_of(apply_remote_records(session, config, entity, records, cause=cause))


def _outcome_of(result) -> str:
    if result.failed:
        return "failed"
    if result.conflicts:
        return "conflict"
    if result.created or result.updated or result.deleted:
        return "applied"
    return "unchanged"


def _coalesce(session: Session, event: WebhookEvent, fetched_at) -> None:
    """Mark the same record's other change events, received before our fetch, as done by it."""
    query = select(WebhookEvent.id).where(
        WebhookEvent.config_id == event.config_id, WebhookEvent.entity_type == event.entity_type,
        WebhookEvent.external_id == event.external_id, WebhookEvent.processed.is_(False),
        WebhookEvent.id != event.id, WebhookEvent.received_at <= fetched_at,
        WebhookEvent.event_type.in_([f"{event.entity_type}.{a}" for a in REFETCH_ACTIONS]))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    ids = session.scalars(query).all()
    if ids:
        session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(
            processed=True, processed_at=utcnow(), outcome="coalesced", error=None))

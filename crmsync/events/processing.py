"""Splitting deliveries into events (task `crmsync.events.split(delivery_id, ...)`) and applying stored
events (task `crmsync.events.process(event_id)`).

The ingest app stores a CRM webhook request whole (`crm_webhook_deliveries`) and answers. The split
parses it again, keeps the config's events, writes them to `crm_webhook_events` deduplicated on
(platform, account, event key) — HubSpot retries and duplicates end here — deletes the delivery in
the same transaction and enqueues the processing of the new events. Run twice, the second finds no
delivery: idempotent.

A CRM event only says "object X changed": processing fetches X's current state and runs it through
the same merge path as a pull (`crmsync.sync.apply`, echo suppression included). Because it reads
the current state, duplicates and out-of-order deliveries are harmless: whichever runs last applies
what the CRM holds now. Deletions are confirmed by the same fetch (a record restored since is not
deleted); merges take the merged ids from the payload.

One task per delivery, not per event: the split enqueues the delivery's first new event (per
config), a moment later (settings: CRMSYNC_INGEST_COALESCE_SECONDS), and that task takes every
pending event of the config — its own delivery and whatever else arrived meanwhile or waited behind
a rate-limit pause. A HubSpot delivery of 100 events then costs one batch read per entity and one
pass of the merge path instead of 100 of each (HubSpot allows 10 calls/s per account, shared with
the syncs). Tasks whose events were taken by another find them processed and return. If a message
is lost, the outbox sweeper re-enqueues the delivery or the events.

HubSpot also sends one event per changed property, so an edit of five fields is five events: after
the fetch, other unprocessed change events of the same records received before it are marked
"coalesced" (their change is in what was fetched).

Events without a config (product events, automation's internal events) belong to automation: they
are handed to `crmsync.automation.run`.

Outcomes: applied (the merge path changed the local record), unchanged (it went through and
nothing changed), missing (the record no longer exists in the CRM), deleted, merged, ignored
(config disabled or push-only, object not synced), coalesced, failed (a permanent platform or sync
error, e.g. revoked credentials: every event of the group, with the reason in `error`; other errors
after the runner's retries: the leader, by the failure hook `fail_event`). Transient
errors propagate: the task runner retries the whole group (idempotent). A rate-limit wait is kept
here instead: the group's events get `not_before` (the sweeper leaves them alone until then) and the
leader's task is re-enqueued with that countdown; a new delivery's event arriving meanwhile joins
that wait (its not_before) instead of waiting with a task of its own.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from crmsync import metrics
from crmsync.db import is_postgres
from crmsync.db.models import SyncConfig, SyncLink, WebhookDelivery, WebhookEvent
from crmsync.db.types import utcnow
from crmsync.errors import CrmsyncError, Retryable
from crmsync.ingest.store import crm_event_row, insert_events
from crmsync.platforms import adapter_class
from crmsync.platforms.errors import WebhookRejected
from crmsync.settings import get_settings
from crmsync.sync.apply import apply_remote_deletions, apply_remote_merge, apply_remote_records
from crmsync.sync.connect import connect
from crmsync.tasks import enqueue_after_commit
from crmsync.tasks.names import PROCESS_EVENT, RUN_AUTOMATION

log = logging.getLogger(__name__)

REFETCH_ACTIONS = ("created", "updated", "restored")
MAX_GROUP = 500
# The payload of a stored event, as a delivery body the platform's parser reads again.
_DELIVERY_OF_PAYLOAD = {"hubspot": lambda payload: [payload]}


def _skip_locked(session: Session, query):
    # Another worker holding a row (a duplicate message) will finish it; skip instead of waiting.
    return query.with_for_update(skip_locked=True) if is_postgres(session) else query


def _finish(event: WebhookEvent, outcome: str, error: str | None = None) -> None:
    event.processed = True
    event.processed_at = utcnow()
    event.outcome = outcome
    event.error = error


def action_of(event: WebhookEvent) -> str:
    """The normalized action, from event_type "<entity>.<action>" (see `store.event_type_of`)."""
    return (event.event_type or "").rsplit(".", 1)[-1]


def _merged_ids(event: WebhookEvent) -> list[str]:
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


def split_deliveries(session: Session, *delivery_ids: str) -> list[str]:
    """Write the deliveries' events, delete the deliveries, enqueue the events' processing after
    commit (one task per config). Returns the ids of the new events; duplicates of stored ones are
    dropped. A delivery whose events cannot be stored keeps its row, with the reason in `error`."""
    deliveries = session.scalars(_skip_locked(session, select(WebhookDelivery).where(
        WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.error.is_(None))
        .order_by(WebhookDelivery.received_at))).all()
    new_ids: list[str] = []
    leaders: dict[str, str] = {}
    for delivery in deliveries:
        delivery.attempts = (delivery.attempts or 0) + 1
        try:
            with session.begin_nested():
                rows, stored = _split(session, delivery)
        except (DataError, WebhookRejected) as err:
            # The body passed the ingest app's checks when it came, yet cannot be stored now (the
            # row was changed since, or a rule got stricter): a bad delivery, not a reason to
            # hold the others.
            delivery.error = f"{type(err).__name__}: {err}"[:2000]
            log.warning("webhook delivery %s cannot be split: %s", delivery.id, delivery.error)
            continue
        new_ids += stored
        new = set(stored)
        for row in rows:
            if row["id"] in new:
                leaders.setdefault(row["config_id"], row["id"])
    # A moment's wait lets a burst of deliveries for one config be applied with one fetch.
    countdown = get_settings().ingest_coalesce_seconds or None
    for leader in leaders.values():
        enqueue_after_commit(session, PROCESS_EVENT, leader, countdown=countdown)
    return new_ids


def _split(session: Session, delivery: WebhookDelivery) -> tuple[list[dict], list[str]]:
    # The ingest app parsed this body before storing it; the same parser reads it again here.
    events = adapter_class(delivery.platform).parse_webhook(delivery.body.encode())
    rows = [crm_event_row(e, tenant_id=delivery.tenant_id, config_id=delivery.config_id,
                          account_id=delivery.account_id, received_at=delivery.received_at)
            for e in events
            if delivery.event_account_id is None or str(e.account_id) == delivery.event_account_id]
    stored = insert_events(session, rows)
    session.delete(delivery)
    session.flush()
    return rows, stored


def fail_deliveries(session: Session, *delivery_ids_and_error: str) -> None:
    """Failure hook of the split (after the runner's retries): keep the deliveries with the reason;
    the sweeper leaves them alone, `crmsync webhooks replay --failed` tries again."""
    *delivery_ids, error = delivery_ids_and_error
    for delivery in session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids))):
        delivery.error = error[:2000]


def fail_event(session: Session, event_id: str, error: str) -> None:
    """Failure hook of the processing (retries spent, or its runs died with their worker): the
    leader's task ran its whole group, so the group fails alike, as a permanent error in
    `process_event` fails it; otherwise the others would come back from the sweeper one by one, to
    fail (or kill a worker) again. Processed, so the sweeper leaves them; `crmsync webhooks replay
    --failed` brings them back."""
    leader = session.get(WebhookEvent, event_id)
    if leader is None or leader.processed:
        return
    group = [leader]
    if leader.config_id is not None:
        group += session.scalars(_skip_locked(session, select(WebhookEvent).where(
            WebhookEvent.config_id == leader.config_id, WebhookEvent.processed.is_(False),
            WebhookEvent.id != leader.id).order_by(WebhookEvent.received_at).limit(MAX_GROUP))).all()
    for event in group:
        _finish(event, "failed", error)


def defer_events(session: Session, event_id: str, until: datetime) -> None:
    """Retry hook: the runner retries the leader at `until` (a backoff), and that task takes its
    config's pending events again; the sweeper leaves them alone meanwhile."""
    leader = session.get(WebhookEvent, event_id)
    if leader is None or leader.processed:
        return
    pending = [leader.id]
    if leader.config_id is not None:
        # The events that retry will take (its group, MAX_GROUP at most): the rest go as they would.
        pending = [leader.id, *session.scalars(_skip_locked(session, select(WebhookEvent.id).where(
            WebhookEvent.config_id == leader.config_id, WebhookEvent.processed.is_(False),
            WebhookEvent.id != leader.id, or_(WebhookEvent.not_before.is_(None), WebhookEvent.not_before < until))
            .order_by(WebhookEvent.received_at).limit(MAX_GROUP)))]
    session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(pending)).values(not_before=until))


def process_event(session: Session, event_id: str) -> None:
    leader = session.scalars(_skip_locked(session, select(WebhookEvent).where(WebhookEvent.id == event_id))).first()
    if leader is None or leader.processed:
        return
    if leader.config_id is None:
        leader.attempts = (leader.attempts or 0) + 1
        enqueue_after_commit(session, RUN_AUTOMATION, leader.id)
        return
    if leader.not_before is None:
        # A new delivery while its config's events wait (a rate limit, a backoff): the waiting
        # leader's task takes this event with the others when the wait is over. Running now, it
        # would meet the same wait and re-enqueue a waiting task of its own, one per delivery.
        wait_end = session.scalar(select(func.max(WebhookEvent.not_before)).where(
            WebhookEvent.config_id == leader.config_id, WebhookEvent.processed.is_(False),
            WebhookEvent.not_before > utcnow()))
        if wait_end is not None:
            leader.not_before = wait_end
            return
    # The leader takes every pending event of its config (its own delivery and any other waiting, e.g.
    # behind a rate-limit pause): one batch read for all. Rows another worker holds are skipped.
    siblings = session.scalars(_skip_locked(session, select(WebhookEvent).where(
        WebhookEvent.config_id == leader.config_id, WebhookEvent.processed.is_(False),
        WebhookEvent.id != leader.id).order_by(WebhookEvent.received_at).limit(MAX_GROUP))).all()
    group = [leader, *siblings]
    try:
        with session.begin_nested():
            process_group(session, group)
    except CrmsyncError as err:
        if isinstance(err, Retryable) and not err.counts_as_attempt:
            _wait_for_budget(session, leader, group, err)
            return
        if isinstance(err, Retryable):
            raise       # 5xx, timeouts, the rate budget's Redis away: the runner retries later
        # Permanent (credentials revoked, config wrong): it fails the whole group alike, so every
        # event is marked here, not only the leader through the failure hook — otherwise the others
        # would come back from the sweeper one by one to fail again. `webhooks replay --failed`
        # brings them back once fixed.
        reason = f"{type(err).__name__}: {err}"[:2000]
        log.warning("%d event(s) of config %s failed: %s", len(group), leader.config_id, reason)
        for event in group:
            event.attempts = (event.attempts or 0) + 1
            _finish(event, "failed", reason)


def _wait_for_budget(session: Session, leader: WebhookEvent, group: list[WebhookEvent], err: Retryable) -> None:
    """The account's budget says wait: the group's events are marked not_before the end of the wait
    and one task, the leader's, is re-enqueued with a countdown (a spent daily quota: re-armed every
    few minutes until the reset). Left to the runner's retry, the wait was in no row, and every sweep
    meanwhile sent each of the group's events again as a task of its own, each re-arming itself."""
    now = utcnow()
    delay = float(err.retry_after or 0.0)
    if err.resume_at is not None:
        delay = max(delay, (err.resume_at - now).total_seconds())
    delay = max(delay, 0.05)
    until = now + timedelta(seconds=delay)
    for event in group:
        event.not_before = until
    log.info("%d event(s) of config %s wait %.1f s for the rate budget", len(group), leader.config_id, delay)
    enqueue_after_commit(session, PROCESS_EVENT, leader.id, countdown=delay)


def process_group(session: Session, events: list[WebhookEvent]) -> None:
    """Apply events of one config (already locked, unprocessed)."""
    config = session.get(SyncConfig, events[0].config_id)
    work = []
    for event in events:
        event.attempts = (event.attempts or 0) + 1
        reason = _ignore_reason(event, config)
        if reason:
            _finish(event, "ignored", reason)
        else:
            work.append(event)
    if not work:
        return
    adapter = connect(session, config, wait=False)
    by_entity: dict[str, list[WebhookEvent]] = defaultdict(list)
    for event in work:
        by_entity[event.entity_type].append(event)
    for entity, entity_events in by_entity.items():
        fetched_at = utcnow()
        refetched = _apply_entity(session, config, adapter, entity, entity_events)
        _coalesce(session, config.id, entity, refetched, fetched_at)


def _apply_entity(session: Session, config: SyncConfig, adapter, entity: str,
                  events: list[WebhookEvent]) -> list[str]:
    """Fetch, merge, delete; set each event's outcome. Returns the external ids whose current state
    was read (for coalescing)."""
    cause = f"webhook:{config.platform}"
    for event in events:
        if action_of(event) == "merged":
            merged = _merged_ids(event)
            if merged:
                apply_remote_merge(session, config, entity, event.external_id, merged)
    wanted = list(dict.fromkeys(e.external_id for e in events))
    records = {}
    step = max(1, int(getattr(adapter, "max_batch", 100) or 100))
    for start in range(0, len(wanted), step):
        for record in adapter.get_many(entity, wanted[start:start + step]):
            records[str(record.external_id)] = record
    changed: set[str] = set()
    not_stored: dict[str, str] = {}
    if records:
        result = apply_remote_records(session, config, entity, list(records.values()), cause=cause)
        metrics.count_records(session, config.platform, entity, "pull", result.counts())
        if result.failed:
            log.warning("%d of %d %s record(s) from webhooks failed to apply", result.failed, len(records), entity)
        changed = _external_ids(session, config, entity, result.changes)
        not_stored = result.not_stored
    # Confirmed gone by the fetch itself, so the mass-deletion guard of pulls does not apply: a user
    # deleting 50 contacts in the CRM sends 50 deletion events, each one checked here.
    gone = list(dict.fromkeys(e.external_id for e in events
                              if action_of(e) == "deleted" and e.external_id not in records))
    deleted: set[str] = set()
    if gone:
        result = apply_remote_deletions(session, config, entity, gone, guard=False)
        metrics.count_records(session, config.platform, entity, "pull", result.counts())
        deleted = _external_ids(session, config, entity, result.changes)
    for event in events:
        action, ext = action_of(event), event.external_id
        if action == "merged":
            outcome = "merged"
        elif ext in not_stored:
            # Its values do not fit our columns (crmsync.sync.apply.storable): failed, with why, so
            # it shows among the failed events and a replay tries it again once the CRM's is fixed.
            _finish(event, "failed", f"not stored: {not_stored[ext]}")
            continue
        elif ext in records:
            outcome = "applied" if ext in changed else "unchanged"
        elif action == "deleted":
            outcome = "deleted" if ext in deleted else "unchanged"
        else:
            outcome = "missing"     # deleted or merged away since; its own event does the rest
        _finish(event, outcome)
    return [e.external_id for e in events if action_of(e) in REFETCH_ACTIONS]


def _external_ids(session: Session, config: SyncConfig, entity: str, changes) -> set[str]:
    local_ids = {c.local_id for c in changes or [] if c.entity == entity}
    if not local_ids:
        return set()
    return set(session.scalars(select(SyncLink.external_id).where(
        SyncLink.tenant_id == config.tenant_id, SyncLink.platform == config.platform,
        SyncLink.entity_type == entity, SyncLink.local_id.in_(local_ids))).all())


def _coalesce(session: Session, config_id: str, entity: str, external_ids: list[str], fetched_at: datetime) -> None:
    """Mark other change events of these records, received before the fetch, as done by it."""
    if not external_ids:
        return
    query = _skip_locked(session, select(WebhookEvent.id).where(
        WebhookEvent.config_id == config_id, WebhookEvent.entity_type == entity,
        WebhookEvent.external_id.in_(external_ids), WebhookEvent.processed.is_(False),
        WebhookEvent.received_at <= fetched_at,
        WebhookEvent.event_type.in_([f"{entity}.{a}" for a in REFETCH_ACTIONS])))
    ids = session.scalars(query).all()
    if ids:
        session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(
            processed=True, processed_at=utcnow(), outcome="coalesced", error=None))

"""Replaying stored webhooks: failed events are marked unprocessed again and re-enqueued, failed
deliveries are split again. Used by `crmsync webhooks replay` and the console's replay button."""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crmsync.db.models import WebhookDelivery, WebhookEvent
from crmsync.tasks.names import PROCESS_EVENT, SPLIT_DELIVERIES


def reset_failed(session: Session, *, tenant_id: str | None = None, config_id: str | None = None,
                 only_id: str | None = None) -> tuple[list[str], list[str]]:
    """Clear the failure of the failed events and deliveries (or of the one named `only_id`,
    failed or not), within a tenant or config when given. Returns (event ids, delivery ids)."""
    events = select(WebhookEvent.id)
    deliveries = select(WebhookDelivery.id)
    if only_id is not None:
        events, deliveries = events.where(WebhookEvent.id == only_id), deliveries.where(WebhookDelivery.id == only_id)
    else:
        events = events.where(WebhookEvent.outcome == "failed")
        deliveries = deliveries.where(WebhookDelivery.error.is_not(None))
    for model, column in ((WebhookEvent, "events"), (WebhookDelivery, "deliveries")):
        for name, value in (("tenant_id", tenant_id), ("config_id", config_id)):
            if value is not None:
                clause = getattr(model, name) == value
                if column == "events":
                    events = events.where(clause)
                else:
                    deliveries = deliveries.where(clause)
    ids = list(session.scalars(events))
    delivery_ids = list(session.scalars(deliveries))
    if ids:
        session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(
            processed=False, processed_at=None, outcome=None, error=None))
    if delivery_ids:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids)).values(error=None))
    return ids, delivery_ids


def enqueue_replay(event_ids: list[str], delivery_ids: list[str]) -> int:
    """Enqueue what `reset_failed` cleared (after its commit: a failed enqueue leaves the rows
    unprocessed, and the outbox sweeper enqueues them). Returns the events enqueued; raises
    `crmsync.tasks.errors.QueueError` when the broker refuses."""
    from crmsync.tasks import enqueue
    if delivery_ids:
        enqueue(SPLIT_DELIVERIES, *delivery_ids)
    enqueued = 0
    for event_id in event_ids:
        enqueue(PROCESS_EVENT, event_id)
        enqueued += 1
    return enqueued

"""Rate-limit waits under a real Celery worker and beat's sweeper: work told to wait is waited
for once, not sent again by the sweeper while its wait lasts, and finishes when the CRM lets it."""
from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import WebhookDelivery, WebhookEvent
from crmsync.db.types import utcnow
from crmsync.sync.schedule import sweep_outbox
from crmsync.tasks import enqueue
from crmsync.tasks.names import PROCESS_EVENT, SPLIT_DELIVERIES
from tests.fixtures.factories import make_config, make_secret, make_tenant
from tests.fixtures.ingest import hubspot_event
from tests.fixtures.workers import wait_until


def _waiting_copies(broker, task: str) -> int:
    """Messages of `task` the worker holds with a countdown (Redis' unacked hash)."""
    held = 0
    for raw in broker.hvals("unacked"):
        message = json.loads(raw)[0]
        headers = message.get("headers") or {}
        held += headers.get("task") == task and headers.get("eta") is not None
    return held


def test_webhook_events_waiting_out_a_rate_limit_are_not_sent_again_by_the_sweeper(
        worker_env, db_url, worker_redis, hubspot_sandbox):
    # A portal whose budget says wait (its daily quota spent: until midnight, re-armed every 10
    # minutes) keeps receiving webhooks. The group's processing waits; every sweep used to send
    # each of its events again as a task of its own, each of which met the limit and re-armed
    # itself: one more waiting task per event per threshold, for as long as the wait lasted.
    contacts = hubspot_sandbox.create_contacts(*(f"c{n}@example.org" for n in range(3)))
    ids = []
    with session_scope(db_url) as s:
        secret = make_secret(s, {"token": hubspot_sandbox.token})
        config = make_config(s, make_tenant(s), credentials_vault_id=secret.id, api_base_url=hubspot_sandbox.base_url,
                             account_id=str(hubspot_sandbox.app.options.portal_id), sync_direction="pull")
        for n, contact in enumerate(contacts):
            event = WebhookEvent(tenant_id=config.tenant_id, config_id=config.id, platform="hubspot",
                                 account_id=config.account_id, event_key=f"k{n}", event_type="contact.updated",
                                 entity_type="contact", external_id=str(contact), payload={"objectId": contact})
            s.add(event)
            s.flush()
            ids.append(event.id)
    hubspot_sandbox.validate = False
    hubspot_sandbox.configure(faults={"rate_limit_rate": 1.0})   # every call: 429, ten-secondly (a 10 s wait)
    began = utcnow()
    enqueue(PROCESS_EVENT, ids[0])
    broker = worker_redis.client(0)
    wait_until(lambda: _waiting_copies(broker, PROCESS_EVENT) == 1, 15, what="the group to wait out the limit")

    with session_scope(db_url) as s:    # past the threshold (3 s), inside the wait: nothing to send again
        assert sweep_outbox(s, now=began + timedelta(seconds=6))["events"] == 0
    assert _waiting_copies(broker, PROCESS_EVENT) == 1

    hubspot_sandbox.configure(faults={"rate_limit_rate": 0.0})

    def processed():
        with session_scope(db_url) as s:
            return s.scalars(select(WebhookEvent.processed).where(WebhookEvent.id.in_(ids))).all() == [True] * 3
    wait_until(processed, 20, interval=0.2, what="the events to be applied once the wait is over")
    with session_scope(db_url) as s:
        assert {e.outcome for e in s.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(ids)))} <= {
            "applied", "unchanged"}


def test_a_delivery_arriving_during_a_rate_wait_joins_it_instead_of_waiting_on_its_own(
        worker_env, db_url, worker_redis, hubspot_sandbox):
    # While a config's events wait out the rate budget, each new delivery's split enqueued a leader
    # of its own, which met the same limit and re-armed itself: one more waiting task per delivery,
    # all firing at the end of the wait to find their events taken by the first.
    contacts = hubspot_sandbox.create_contacts(*(f"j{n}@example.org" for n in range(2)))
    portal = str(hubspot_sandbox.app.options.portal_id)
    with session_scope(db_url) as s:
        secret = make_secret(s, {"token": hubspot_sandbox.token})
        config = make_config(s, make_tenant(s), credentials_vault_id=secret.id, api_base_url=hubspot_sandbox.base_url,
                             account_id=portal, sync_direction="pull")
        first = WebhookEvent(tenant_id=config.tenant_id, config_id=config.id, platform="hubspot", account_id=portal,
                             event_key="j0", event_type="contact.updated", entity_type="contact",
                             external_id=str(contacts[0]), payload={"objectId": contacts[0]})
        s.add(first)
        s.flush()
        first_id, config_id, tenant_id = first.id, config.id, config.tenant_id
    hubspot_sandbox.validate = False
    hubspot_sandbox.configure(faults={"rate_limit_rate": 1.0})   # every call: 429, ten-secondly (a 10 s wait)
    enqueue(PROCESS_EVENT, first_id)
    broker = worker_redis.client(0)
    wait_until(lambda: _waiting_copies(broker, PROCESS_EVENT) == 1, 15, what="the group to wait out the limit")
    with session_scope(db_url) as s:
        wait_end = s.get(WebhookEvent, first_id).not_before

    body = json.dumps([hubspot_event(portal, int(contacts[1]))])
    with session_scope(db_url) as s:     # a new delivery, as the ingest app stores it
        delivery = WebhookDelivery(tenant_id=tenant_id, config_id=config_id, platform="hubspot", account_id=portal,
                                   event_account_id=portal, body=body, events=1)
        s.add(delivery)
        s.flush()
        delivery_id = delivery.id
    enqueue(SPLIT_DELIVERIES, delivery_id)

    def new_event_handled():
        with session_scope(db_url) as s:
            return s.scalar(select(WebhookEvent).where(WebhookEvent.config_id == config_id,
                                                       WebhookEvent.id != first_id,
                                                       WebhookEvent.not_before.is_not(None)))
    joined = wait_until(new_event_handled, 15, what="the new delivery's event to be handled")
    assert joined.not_before == wait_end and not joined.processed     # it joined the wait under way
    wait_until(lambda: _waiting_copies(broker, PROCESS_EVENT) == 1, 5, what="one waiting task, not two")

    hubspot_sandbox.configure(faults={"rate_limit_rate": 0.0})

    def processed():
        with session_scope(db_url) as s:
            return s.scalars(select(WebhookEvent.processed).where(WebhookEvent.config_id == config_id)).all() == [
                True] * 2
    wait_until(processed, 20, interval=0.2, what="both events to be applied by the one waiting task")

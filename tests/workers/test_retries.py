"""Backoff retries under a real Celery worker: a unit that failed on a transient error (a 5xx) is
retried by its own chain, and beat's sweeper does not start a second one while the backoff lasts."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import SyncJob, SyncJobStep, WebhookEvent
from crmsync.db.types import utcnow
from crmsync.sync.jobs import create_job, start_job
from crmsync.sync.schedule import sweep_outbox
from crmsync.tasks import enqueue
from crmsync.tasks.names import PROCESS_EVENT, RUN_STEP
from tests.fixtures.factories import make_config, make_secret, make_tenant
from tests.fixtures.workers import wait_until

LONG_AGO = timedelta(minutes=10)


def _held_retry(broker, task: str) -> datetime | None:
    """The ETA of the retry of `task` the worker holds (Redis' unacked hash), if there is one."""
    for raw in broker.hvals("unacked"):
        headers = json.loads(raw)[0].get("headers") or {}
        if headers.get("task") == task and headers.get("eta") and headers.get("retries"):
            return datetime.fromisoformat(headers["eta"])
    return None


def _config(s, hubspot_sandbox):
    secret = make_secret(s, {"token": hubspot_sandbox.token})
    return make_config(s, make_tenant(s), credentials_vault_id=secret.id, api_base_url=hubspot_sandbox.base_url,
                       account_id=str(hubspot_sandbox.app.options.portal_id), sync_direction="pull")


def test_a_step_backing_off_after_a_5xx_is_not_sent_again_by_the_sweeper(
        worker_env, db_url, worker_redis, hubspot_sandbox):
    # The unit's transaction is rolled back, so its step keeps the updated_at of its last commit;
    # with a backoff longer than CRMSYNC_OUTBOX_AFTER_SECONDS, the sweeper took the step for lost
    # and started a second chain of it, whose retry count began at zero again.
    with session_scope(db_url) as s:
        job = create_job(s, _config(s, hubspot_sandbox))
        start_job(s, job.id, enqueue=False)
        step = s.scalars(select(SyncJobStep).where(SyncJobStep.job_id == job.id).order_by(SyncJobStep.position)).first()
        step.updated_at = utcnow() - LONG_AGO        # its last unit committed a while ago
        job_id, step_id = job.id, step.id
    hubspot_sandbox.validate = False
    hubspot_sandbox.configure(faults={"error_rate": 1.0, "error_statuses": [503]})
    enqueue(RUN_STEP, step_id)
    broker = worker_redis.client(0)
    eta = wait_until(lambda: _held_retry(broker, RUN_STEP), 15, what="the unit's retry to be scheduled")
    hubspot_sandbox.configure(faults={"error_rate": 0.0})

    with session_scope(db_url) as s:
        not_before = s.get(SyncJobStep, step_id).not_before
    assert not_before is not None and abs((not_before - eta).total_seconds()) < 1
    with session_scope(db_url) as s:    # the step looks stale, but its retry is on its way
        assert sweep_outbox(s, now=eta - timedelta(seconds=0.05))["steps"] == 0

    def succeeded():
        with session_scope(db_url) as s:
            return s.get(SyncJob, job_id).status == "succeeded"
    wait_until(succeeded, 15, interval=0.1, what="the job to finish once the CRM answers again")


def test_webhook_events_backing_off_after_a_5xx_are_not_sent_again_by_the_sweeper(
        worker_env, db_url, worker_redis, hubspot_sandbox):
    # The same for a group of webhook events: rolled back, they keep their received_at, and every
    # sweep during a long backoff sent each of them again as a task of its own.
    contacts = hubspot_sandbox.create_contacts(*(f"b{n}@example.org" for n in range(2)))
    ids = []
    with session_scope(db_url) as s:
        config = _config(s, hubspot_sandbox)
        for n, contact in enumerate(contacts):
            event = WebhookEvent(tenant_id=config.tenant_id, config_id=config.id, platform="hubspot",
                                 account_id=config.account_id, event_key=f"b{n}", event_type="contact.updated",
                                 entity_type="contact", external_id=str(contact), payload={"objectId": contact},
                                 received_at=utcnow() - LONG_AGO)
            s.add(event)
            s.flush()
            ids.append(event.id)
    hubspot_sandbox.validate = False
    hubspot_sandbox.configure(faults={"error_rate": 1.0, "error_statuses": [503]})
    enqueue(PROCESS_EVENT, ids[0])
    broker = worker_redis.client(0)
    eta = wait_until(lambda: _held_retry(broker, PROCESS_EVENT), 15, what="the group's retry to be scheduled")
    hubspot_sandbox.configure(faults={"error_rate": 0.0})

    with session_scope(db_url) as s:
        waits = s.scalars(select(WebhookEvent.not_before).where(WebhookEvent.id.in_(ids))).all()
    assert len(waits) == 2 and all(w is not None and abs((w - eta).total_seconds()) < 1 for w in waits), waits
    with session_scope(db_url) as s:
        assert sweep_outbox(s, now=eta - timedelta(seconds=0.05))["events"] == 0

    def processed():
        with session_scope(db_url) as s:
            return s.scalars(select(WebhookEvent.processed).where(WebhookEvent.id.in_(ids))).all() == [True] * 2
    wait_until(processed, 15, interval=0.1, what="the events to be applied once the CRM answers again")

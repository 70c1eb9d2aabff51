"""The original design's two rules end to end: `POST /events/<type>` (the ingest app) -> a real Celery worker
runs `crmsync.automation.run` -> local rows -> the normal push path -> records in the sandbox
HubSpot. The same flow runs inline (no broker) too.

The rules are the original design's with HubSpot's own stage ids (`qualifiedtobuy`, `presentationscheduled`)
and `pipeline: default` on the created deal: the original design's `qualified_to_buy` is not a stage of
HubSpot's default pipeline, and the sandbox, like HubSpot, refuses unknown stages and a deal
without a pipeline.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select

from crmsync.automation.rules import apply_rules
from crmsync.configs import create_config
from crmsync.credentials import create_api_key
from crmsync.db import session_scope
from crmsync.db.models import JOB_ACTIVE_STATUSES, AutomationRun, SyncJob
from tests.automation.helpers import rows
from tests.automation.seed import seed_rules
from tests.fixtures.factories import make_secret, make_tenant
from tests.fixtures.workers import wait_until

MEETING = "2025-03-14T15:30:00+00:00"


def hubspot_rules():
    rules = json.loads(json.dumps(seed_rules()).replace("qualified_to_buy", "qualifiedtobuy")
                       .replace("presentation_scheduled", "presentationscheduled"))
    rules[0]["actions"][1]["params"]["pipeline"] = "default"     # HubSpot requires one on create
    return rules


def _setup(db_url, sandbox):
    sandbox.configure(rate_limit=0, search_rate_limit=0, daily_limit=0)
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        secret = make_secret(s, {"token": sandbox.token})
        config = create_config(s, {"tenant_id": tenant.id, "platform": "hubspot", "credentials_vault_id": secret.id,
                                   "api_base_url": sandbox.base_url, "sync_frequency_minutes": 0,
                                   "account_id": str(sandbox.app.options.portal_id)})
        _, key = create_api_key(s, tenant.id)
        apply_rules(s, tenant.id, hubspot_rules())
        return tenant.id, config.id, key


def _diagnosis(db_url) -> str:
    from crmsync.db.models import WebhookEvent
    with session_scope(db_url) as s:
        jobs = [(j.trigger, j.status, j.error, j.counts) for j in s.scalars(select(SyncJob))]
        events = [(e.platform, e.event_type, e.outcome, e.error) for e in s.scalars(select(WebhookEvent))]
        runs = [(r.outcome, r.error) for r in s.scalars(select(AutomationRun))]
    return f"jobs={jobs}\nevents={events}\nruns={runs}"


def _wait(db_url, predicate, timeout, what):
    try:
        return wait_until(predicate, timeout, what=what)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{_diagnosis(db_url)}") from None


def _live(sandbox, type_name):
    return [r for r in sandbox.state.records[type_name].values() if not r.archived]


def _no_active_job(db_url, config_id):
    with session_scope(db_url) as s:
        return s.scalar(select(SyncJob.id).where(SyncJob.sync_config_id == config_id,
                                                 SyncJob.status.in_(JOB_ACTIVE_STATUSES))) is None


def _post(client, key, event_type, body):
    response = client.post(f"/events/{event_type}", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["id"]


def _flow(db_url, sandbox, client, tenant_id, config_id, key, timeout):
    # 1. an email reply: a contact and an inbound deal, in PostgreSQL and then in HubSpot
    reply_id = _post(client, key, "email_replied", {"sender_email": "Ada@Example.org", "subject": "Re: pricing"})

    def contact_and_deal_in_hubspot():
        contacts = [c for c in _live(sandbox, "contacts") if c.props.get("email") == "ada@example.org"]
        deals = [d for d in _live(sandbox, "deals") if d.props.get("dealname") == "Inbound Lead - ada@example.org"]
        return contacts and deals and (contacts[0], deals[0])

    hs_contact, hs_deal = _wait(db_url, contact_and_deal_in_hubspot, timeout, "contact and deal in HubSpot")
    assert hs_contact.props.get("lifecyclestage") == "lead"
    assert hs_deal.props["dealstage"] == "qualifiedtobuy"
    [contact] = rows(db_url, "contact", tenant_id)
    [deal] = rows(db_url, "deal", tenant_id)
    assert deal.contact_id == contact.id and deal.last_change_cause.endswith(f"event:{reply_id}:depth:1")
    _wait(db_url, lambda: _no_active_job(db_url, config_id), timeout, "the push job to finish")

    # 2. a meeting with that contact: the deal moves on, a preparation task is due the day before
    meeting_id = _post(client, key, "meeting_scheduled", {"contact_email": "ada@example.org", "meeting_date": MEETING})

    def task_in_hubspot():
        tasks = [t for t in _live(sandbox, "tasks")
                 if t.props.get("hs_task_subject") == "Prepare for meeting with ada@example.org"]
        return tasks and sandbox.state.records["deals"][hs_deal.id].props["dealstage"] == "presentationscheduled" \
            and tasks[0]

    hs_task = _wait(db_url, task_in_hubspot, timeout, "task and deal stage in HubSpot")
    due = hs_task.props["hs_timestamp"]
    due = datetime.fromtimestamp(int(due) / 1000, UTC) if str(due).isdigit() else datetime.fromisoformat(str(due))
    assert due == datetime(2025, 3, 13, 15, 30, tzinfo=UTC)
    assert hs_task.props.get("hs_task_priority") == "HIGH"
    [task] = rows(db_url, "task", tenant_id)
    assert task.deal_id == deal.id
    with session_scope(db_url) as s:
        outcomes = sorted((r.event_id == meeting_id, r.outcome) for r in s.scalars(select(AutomationRun)))
    # each event ran its rule once (the other rule's trigger differs, so it had no run)
    assert outcomes == [(False, "succeeded"), (True, "succeeded")]


def test_seed_rules_end_to_end_through_a_celery_worker(worker_env, db_url, hubspot_sandbox):
    from crmsync.ingest import create_app
    tenant_id, config_id, key = _setup(db_url, hubspot_sandbox)
    _flow(db_url, hubspot_sandbox, create_app().test_client(), tenant_id, config_id, key, timeout=30)


def test_seed_rules_end_to_end_inline(crmsync_env, db_url, hubspot_sandbox):
    from crmsync.ingest import create_app
    tenant_id, config_id, key = _setup(db_url, hubspot_sandbox)
    _flow(db_url, hubspot_sandbox, create_app().test_client(), tenant_id, config_id, key, timeout=10)

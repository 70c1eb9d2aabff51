"""The HubSpot sandbox's own webhook delivery -> the ingest app under gunicorn (a real subprocess, 2
workers) -> Celery workers -> local rows, for a create, an edit and a deletion made in the CRM."""
from __future__ import annotations

from sqlalchemy import func, select

from crmsync.db import session_scope
from crmsync.db.models import Contact, WebhookEvent
from tests.fixtures.factories import make_secret
from tests.fixtures.ingest import CRON_SECRET, hubspot_portal, start_ingest_server
from tests.fixtures.workers import wait_until


def test_sandbox_webhooks_change_local_rows_through_gunicorn_and_workers(worker_env, hubspot_sandbox, db_url,
                                                                         tmp_path):
    with session_scope(db_url) as s:
        creds = make_secret(s, {"token": hubspot_sandbox.token})
        portal = hubspot_portal(s, portal_id=str(hubspot_sandbox.app.options.portal_id),
                                credentials_vault_id=creds.id, api_base_url=hubspot_sandbox.base_url)
    server = start_ingest_server({**worker_env, "CRMSYNC_CRON_SECRET": CRON_SECRET}, tmp_path, workers=2)
    try:
        hubspot_sandbox.configure(webhook_url=server.url + "/webhooks/hubspot", webhook_secret=portal.secret)

        def contact():
            with session_scope(db_url) as s:
                return s.scalars(select(Contact).where(Contact.tenant_id == portal.tenant.id)).first()

        res = hubspot_sandbox.api("POST", "/crm/v3/objects/contacts",
                                  json={"properties": {"email": "grace@example.org", "firstname": "Grace"}})
        assert res.status_code == 201, res.text
        cid = res.json()["id"]
        row = wait_until(contact, 20, what="the created contact to arrive by webhook")
        assert (row.email, row.first_name) == ("grace@example.org", "Grace")

        hubspot_sandbox.edit("contacts", cid, {"firstname": "Grace B.", "jobtitle": "Rear Admiral"})
        wait_until(lambda: contact().first_name == "Grace B.", 20, what="the edit to arrive")
        assert contact().job_title == "Rear Admiral"

        hubspot_sandbox.delete("contacts", cid)
        wait_until(lambda: contact().deleted_at is not None, 20, what="the deletion to arrive")

        def settled():
            with session_scope(db_url) as s:
                return s.scalar(select(func.count()).select_from(WebhookEvent)
                                .where(WebhookEvent.processed.is_(False))) == 0
        wait_until(settled, 20, what="every stored event to be processed")
        with session_scope(db_url) as s:
            outcomes = dict(s.execute(select(WebhookEvent.outcome, func.count())
                                      .group_by(WebhookEvent.outcome)).all())
        assert "failed" not in outcomes, outcomes
        assert hubspot_sandbox.app.webhooks.snapshot()["counters"]["given_up"] == 0
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]


def test_pipedrive_sandbox_webhooks_change_local_rows(worker_env, pipedrive_sandbox, db_url, tmp_path):
    from tests.fixtures.ingest import pipedrive_account
    company_id = str(pipedrive_sandbox.state.company["id"])
    with session_scope(db_url) as s:
        creds = make_secret(s, {"token": pipedrive_sandbox.token}, platform="pipedrive")
        account = pipedrive_account(s, company_id=company_id, credentials_vault_id=creds.id,
                                    api_base_url=pipedrive_sandbox.base_url)
    user, password = account.secret.split(":")
    server = start_ingest_server({**worker_env, "CRMSYNC_CRON_SECRET": CRON_SECRET}, tmp_path, workers=2)
    try:
        res = pipedrive_sandbox.api("POST", "/v1/webhooks", json={
            "subscription_url": f"{server.url}/webhooks/pipedrive/{account.config.id}", "event_action": "*",
            "event_object": "person", "name": "crmsync ingest", "http_auth_user": user, "http_auth_password": password, "version": "2.0"})
        assert res.status_code == 201, res.text

        def person():
            with session_scope(db_url) as s:
                return s.scalars(select(Contact).where(Contact.tenant_id == account.tenant.id,
                                                       Contact.email == "linus@example.org")).first()

        res = pipedrive_sandbox.api("POST", "/api/v2/persons", json={
            "name": "Linus T", "emails": [{"value": "linus@example.org", "primary": True, "label": "work"}]})
        assert res.status_code in (200, 201), res.text
        pid = res.json()["data"]["id"]
        row = wait_until(person, 20, what="the created person to arrive by webhook")
        assert row.deleted_at is None
        pipedrive_sandbox.delete("persons", pid)
        wait_until(lambda: person().deleted_at is not None, 20, what="the deletion to arrive")
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]

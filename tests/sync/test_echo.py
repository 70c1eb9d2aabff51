"""Echo suppression: our own writes coming back (by webhook or by poll) change nothing."""
from sqlalchemy import func, select

from crmsync.db import session_scope
from crmsync.db.models import Contact, WebhookEvent
from crmsync.sandbox.server import SandboxServer
from tests.fixtures.factories import make_secret


def test_pushing_1000_records_and_their_webhooks_comes_back_as_nothing(world):
    from crmsync.db.models import SyncConfig
    from crmsync.ingest import create_app
    with session_scope(world.db_url) as s:
        secret = make_secret(s, {"secret": "echo-webhook-secret"}, platform="webhook", tenant_id=world.tenant_id)
        s.get(SyncConfig, world.config_id).webhook_secret_vault_id = secret.id
        s.add_all(Contact(tenant_id=world.tenant_id, email=f"echo{n}@example.org", first_name=f"E{n}",
                          last_name="Cho", job_title="Tester") for n in range(1000))
    app = create_app()
    relay = app.extensions["crmsync_ingest"].relay
    ingest = SandboxServer(app)
    ingest_url = ingest.start()
    try:
        world.hs.configure(webhook_url=f"{ingest_url}/webhooks/hubspot", webhook_secret="echo-webhook-secret")
        job = world.sync()
        assert job["status"] == "succeeded" and job["contacts_synced"] == 1000, job
        with session_scope(world.db_url) as s:
            stamps = dict(s.execute(select(Contact.id, Contact.updated_at).where(
                Contact.tenant_id == world.tenant_id)).all())
        assert world.hs.flush_webhooks(60)["drained"]
        # Every delivery answered; no broker here, so its split and processing ran in the app's relay.
        assert relay.flush(120)
        with session_scope(world.db_url) as s:
            events = s.scalar(select(func.count()).select_from(WebhookEvent))
            outcomes = dict(s.execute(select(WebhookEvent.outcome, func.count()).group_by(WebhookEvent.outcome)).all())
            after = dict(s.execute(select(Contact.id, Contact.updated_at).where(
                Contact.tenant_id == world.tenant_id)).all())
        assert events >= 1000                      # every creation came back as a webhook...
        assert "applied" not in outcomes, outcomes  # ...and none of them changed a row
        assert after == stamps
        writes_before = _writes(world)
        again = world.sync()
        assert sum(v for k, v in again.items() if k.endswith("_synced")) == 0, again
        assert _writes(world) == writes_before       # no write to HubSpot either
        with session_scope(world.db_url) as s:
            assert dict(s.execute(select(Contact.id, Contact.updated_at).where(
                Contact.tenant_id == world.tenant_id)).all()) == stamps
    finally:
        world.hs.configure(webhook_url=None)
        ingest.stop()
        relay.flush(120)


def _writes(world) -> int:
    by_endpoint = world.hs.requests_log(0)["by_endpoint"]
    return sum(n for key, n in by_endpoint.items() if key.split()[0] in ("PATCH", "PUT", "DELETE")
               or (key.startswith("POST") and "search" not in key and "batch/read" not in key))

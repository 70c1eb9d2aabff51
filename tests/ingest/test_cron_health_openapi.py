"""/cron/sync (bearer CRMSYNC_CRON_SECRET), /healthz, /readyz and /openapi.json."""
from __future__ import annotations

from datetime import timedelta

from openapi_spec_validator import validate

from crmsync.db import session_scope
from crmsync.db.types import utcnow
from crmsync.ingest.product_events import PRODUCT_EVENTS
from tests.fixtures.factories import make_config, make_tenant
from tests.fixtures.ingest import CRON_SECRET


def _env_app(monkeypatch, **env):
    from crmsync import settings
    from crmsync.ingest import create_app
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    settings.get_settings.cache_clear()
    return create_app().test_client()


def test_cron_sync_dispatches_due_configs(ingest_client, ingest_queue, db_url):
    with session_scope(db_url) as s:
        due = make_config(s, make_tenant(s))
        due.next_sync_at = utcnow() - timedelta(minutes=1)
        later = make_config(s, make_tenant(s))
        later.next_sync_at = utcnow() + timedelta(hours=1)
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": CRON_SECRET},
                    {"Authorization": f"Basic {CRON_SECRET}"}]:
        res = ingest_client.post("/cron/sync", headers=headers)
        assert res.status_code == 401 and res.json["error"] == "unauthenticated", headers
    assert ingest_queue.tasks() == []
    res = ingest_client.post("/cron/sync", headers={"Authorization": f"Bearer {CRON_SECRET}"})
    assert res.status_code == 200, res.json
    assert len(res.json["dispatched"]) == 1
    assert ingest_queue.tasks("syncs") == [("crmsync.sync.start_job", res.json["dispatched"])]
    # Vercel's cron calls with GET; nothing is due any more.
    res = ingest_client.get("/cron/sync", headers={"Authorization": f"Bearer {CRON_SECRET}"})
    assert res.status_code == 200 and res.json == {"dispatched": []}


def test_cron_sync_without_a_configured_secret_is_503(monkeypatch, ingest_env):
    client = _env_app(monkeypatch, CRMSYNC_CRON_SECRET=None)
    res = client.post("/cron/sync", headers={"Authorization": "Bearer anything"})
    assert res.status_code == 503 and res.json["error"] == "not_configured"


def test_health_and_readiness(monkeypatch, ingest_client, ingest_env):
    from tests.fixtures.workers import free_port
    assert ingest_client.get("/healthz").json == {"status": "ok"}
    res = ingest_client.get("/readyz")
    assert res.status_code == 200 and res.json["checks"] == {"database": "ok", "broker": "ok"}
    client = _env_app(monkeypatch, CRMSYNC_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    res = client.get("/readyz")
    assert res.status_code == 503 and res.json["checks"]["database"] == "ok"
    assert res.json["checks"]["broker"].startswith("unreachable") and "broker" in res.json["message"]
    client = _env_app(monkeypatch, CRMSYNC_BROKER_URL=ingest_env["CRMSYNC_BROKER_URL"],
                      CRMSYNC_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nope")
    res = client.get("/readyz")
    assert res.status_code == 503 and res.json["checks"]["database"].startswith("unreachable")
    assert client.get("/healthz").status_code == 200


def test_openapi_document_is_valid_31_and_covers_every_endpoint(ingest_client):
    doc = ingest_client.get("/openapi.json").json
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/webhooks/hubspot", "/webhooks/pipedrive/{config_id}",
                                 "/webhooks/salesforce/{config_id}", "/cron/sync", "/healthz", "/readyz",
                                 "/metrics", "/openapi.json", *(f"/events/{name}" for name in PRODUCT_EVENTS)}
    assert doc["components"]["schemas"]["email_replied_event"]["required"] == ["sender_email"]
    assert set(doc["components"]["schemas"]["meeting_scheduled_event"]["required"]) == {
        "contact_email", "meeting_date"}


def test_each_event_path_takes_the_body_of_its_own_type(ingest_client):
    # One /events/{event_type} with a oneOf of every body let a client send an email_opened body to
    # email_replied and still match the document.
    paths = ingest_client.get("/openapi.json").json["paths"]
    for name in PRODUCT_EVENTS:
        body = paths[f"/events/{name}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{name}_event"}


def test_only_documented_methods_are_answered(ingest_app, ingest_client):
    doc = ingest_client.get("/openapi.json").json
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    assert ("/cron/sync", "GET") in documented
    for path in ("/cron/sync", "/webhooks/hubspot", "/healthz", "/events/email_replied", "/openapi.json"):
        res = ingest_client.options(path)
        # Flask answered OPTIONS with 200 on its own, an operation the document does not have.
        assert res.status_code == 405 and res.json["error"] == "method_not_allowed", path
        assert "OPTIONS" not in res.headers["Allow"]
        assert {(path, m) for m in res.headers["Allow"].split(", ") if m != "HEAD"} <= documented

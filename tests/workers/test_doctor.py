"""`crmsync doctor`: every troubleshooting check against a sandbox HubSpot and the real PostgreSQL."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from crmsync.cli import main
from crmsync.configs import create_config
from crmsync.db import session_scope
from crmsync.db.models import ConflictRecord, Contact, SyncJob, WebhookDelivery, WebhookEvent
from crmsync.db.types import utcnow
from tests.fixtures.db import create_database, drop_database
from tests.fixtures.factories import make_secret, make_tenant


def _config(db_url, sandbox, token=None, **overrides):
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        secret = make_secret(s, {"token": token or sandbox.token})
        config = create_config(s, {"tenant_id": tenant.id, "platform": "hubspot", "credentials_vault_id": secret.id,
                                   "api_base_url": sandbox.base_url,
                                   "account_id": str(sandbox.app.options.portal_id), **overrides})
        return tenant.id, config.id


def doctor(*args):
    result = CliRunner().invoke(main, ["doctor", *args, "--json"])
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip() else None), result


def checks(report, config_id):
    cfg = next(c for c in report["configs"] if c["id"] == config_id)
    return {c["name"]: c for c in cfg["checks"]}


def test_doctor_reports_every_check(crmsync_env, db_url, hubspot_sandbox):
    tenant_id, config_id = _config(db_url, hubspot_sandbox,
                                   field_mappings={"custom_fields.shoe_size": "shoe_size"})
    with session_scope(db_url) as s:
        s.add(Contact(tenant_id=tenant_id, email="ada@example.org",
                      custom_fields={"shoe_size": "42", "favorite_color": "teal"}))
        s.add(SyncJob(tenant_id=tenant_id, sync_config_id=config_id, status="succeeded", trigger="schedule",
                      started_at=utcnow(), finished_at=utcnow()))
        s.add(ConflictRecord(tenant_id=tenant_id, config_id=config_id, platform="hubspot", entity_type="contact",
                             entity_id="00000000-0000-0000-0000-000000000001", local_snapshot={"first_name": "A"},
                             remote_snapshot={"first_name": "B"}, conflicting_fields=["first_name"]))
        s.add(WebhookEvent(tenant_id=tenant_id, config_id=config_id, platform="hubspot", account_id="1",
                           event_key="k1", event_type="contact.creation", payload={},
                           received_at=utcnow() - timedelta(hours=1)))
        s.add(WebhookDelivery(tenant_id=tenant_id, config_id=config_id, platform="hubspot", account_id="1",
                              body="[]", events=0, error="DataError: ..."))
    code, report, result = doctor(config_id)
    assert report is not None, result.output
    by_name = checks(report, config_id)
    assert by_name["enabled"]["status"] == "ok"
    assert by_name["credentials"]["status"] == "ok"
    assert by_name["credentials"]["data"]["account_id"] == str(hubspot_sandbox.app.options.portal_id)
    assert by_name["rate headroom"]["data"]["standard"]["remaining"] > 0
    assert by_name["recent jobs"]["status"] == "ok" and len(by_name["recent jobs"]["data"]["jobs"]) == 1
    assert by_name["pending conflicts"]["data"]["count"] == 1
    assert by_name["webhook events"]["status"] == "fail"  # an hour old, unprocessed: workers down?
    assert by_name["webhook events"]["data"]["unprocessed"] == 1
    assert (by_name["webhook events"]["data"]["deliveries_waiting"], by_name["webhook events"]["data"][
        "deliveries_failed"]) == (1, 1)
    assert by_name["unmapped custom fields"]["data"]["fields"] == {"contact": ["favorite_color"]}
    assert code == 1 and report["ok"] is False
    assert {c["name"] for c in report["services"]} == {"database", "broker"}
    assert hubspot_sandbox.token not in result.output


def test_doctor_flags_refused_credentials_and_a_disabled_config(crmsync_env, db_url, hubspot_sandbox):
    _, config_id = _config(db_url, hubspot_sandbox, token="pat-na1-wrong-token", enabled=False)
    code, report, result = doctor(config_id)
    by_name = checks(report, config_id)
    assert by_name["enabled"]["status"] == "fail"
    assert by_name["credentials"]["status"] == "fail" and "refused" in by_name["credentials"]["detail"]
    assert by_name["recent jobs"]["status"] == "warn"
    assert code == 1
    assert "pat-na1-wrong-token" not in result.output


def test_doctor_healthy_config_exits_0_and_prints_text(crmsync_env, db_url, hubspot_sandbox):
    _, config_id = _config(db_url, hubspot_sandbox)
    with session_scope(db_url) as s:
        from crmsync.db.models import SyncConfig
        s.add(SyncJob(tenant_id=s.get(SyncConfig, config_id).tenant_id, sync_config_id=config_id,
                      status="succeeded", trigger="manual"))
    result = CliRunner().invoke(main, ["doctor", config_id])
    assert result.exit_code == 0, result.output
    assert "[ok  ] credentials: accepted by hubspot account" in result.output
    assert result.output.strip().endswith("healthy")


def test_doctor_refuses_a_bad_config_id(crmsync_env):
    result = CliRunner().invoke(main, ["doctor", "not-an-id", "--json"])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["doctor", "00000000-0000-0000-0000-000000000000", "--json"])
    assert result.exit_code == 2


def test_doctor_with_a_broker_sees_the_workers(worker_env, celery_worker):
    code, report, _ = doctor()
    services = {c["name"]: c for c in report["services"]}
    assert services["broker"]["status"] == "ok"
    assert celery_worker.hostname in services["workers"]["data"]["workers"]
    assert report["configs"] == [] and code == 0


def test_doctor_reports_a_crm_500_as_unavailable_not_as_refused_credentials(crmsync_env, db_url, hubspot_sandbox):
    _, config_id = _config(db_url, hubspot_sandbox)
    hubspot_sandbox.configure(faults={"error_rate": 1.0, "error_statuses": [500]})
    code, report, _ = doctor(config_id)
    credentials = checks(report, config_id)["credentials"]
    assert credentials["status"] == "fail" and code == 1
    assert "unavailable" in credentials["detail"] and "refused" not in credentials["detail"]


@pytest.fixture
def legacy_db_url(crmsync_env, monkeypatch):
    """A PostgreSQL database at 0008, before the database held a tenant to one enabled config per
    CRM, as the process's database: where a pair made before `configs create` refused it lives."""
    from crmsync import settings
    from crmsync.db.migrate import upgrade
    url = create_database("crmsync_legacy")
    upgrade(url, "0008")
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", url)
    settings.get_settings.cache_clear()
    yield url
    drop_database(url)


def test_doctor_flags_a_tenant_with_two_configs_of_one_crm(legacy_db_url, hubspot_sandbox):
    """`configs create` refuses a second config of a CRM in a tenant (they would share sync links);
    a pair made before that check is named by the doctor, with what to do, and the upgrade that has
    the database hold it (0009) waits until one is disabled."""
    from crmsync.db.models import SyncConfig
    db_url = legacy_db_url
    tenant_id, first = _config(db_url, hubspot_sandbox)
    with session_scope(db_url) as s:       # as `configs create` made it before it refused
        second = SyncConfig(tenant_id=tenant_id, platform="hubspot", account_id="20000002",
                            credentials_vault_id=make_secret(s, {"token": hubspot_sandbox.token},
                                                             tenant_id=tenant_id).id,
                            api_base_url=hubspot_sandbox.base_url)
        s.add(second)
        s.flush()
        second = second.id
    _, other_tenant = _config(db_url, hubspot_sandbox, account_id="30000003")
    code, report, result = doctor()
    assert code == 1, result.output
    one, two = checks(report, first)["one config per CRM"], checks(report, second)["one config per CRM"]
    assert one["status"] == two["status"] == "fail"
    assert one["data"]["other_configs"] == [second] and two["data"]["other_configs"] == [first]
    assert f"also syncs hubspot through config {second}" in one["detail"]
    assert "crmsync configs disable" in one["detail"] and "tenant of its own" in one["detail"]
    assert checks(report, other_tenant)["one config per CRM"]["status"] == "ok"
    text = CliRunner().invoke(main, ["doctor", first])
    assert text.exit_code == 1
    assert f"[FAIL] one config per CRM: tenant {tenant_id} also syncs hubspot through config {second}" in text.output
    upgraded = CliRunner().invoke(main, ["db", "upgrade"])
    assert upgraded.exit_code == 1 and f"tenant {tenant_id} syncs hubspot through enabled configs" in upgraded.stderr
    assert first in upgraded.stderr and second in upgraded.stderr and "crmsync configs disable <id>" in upgraded.stderr
    # With the second one disabled nothing mixes any more: a warning, which names it still.
    assert CliRunner().invoke(main, ["configs", "disable", second]).exit_code == 0
    code, report, _ = doctor(first)
    assert checks(report, first)["one config per CRM"]["status"] == "warn"
    assert f"{second} (disabled)" in checks(report, first)["one config per CRM"]["detail"]
    # Enabling it again is refused before the upgrade too (the Python check; the index comes with 0009).
    enable = CliRunner().invoke(main, ["configs", "enable", second])
    assert enable.exit_code == 2 and f"through config {first}; " in enable.stderr
    assert CliRunner().invoke(main, ["db", "upgrade"]).exit_code == 0
    code, report, _ = doctor()
    assert checks(report, first)["one config per CRM"]["status"] == "warn"
    assert checks(report, second)["enabled"]["status"] == "fail" and code == 1

"""Migrations: upgrade on an empty database, downgrade to base, upgrade again; the migrated
schema equals the models (autogenerate finds nothing to do) on PostgreSQL and SQLite."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from crmsync.db import get_engine
from crmsync.db.migrate import compared_with_models, current_revision, downgrade, upgrade
from crmsync.db.models import Base
from tests.fixtures.db import create_database, drop_database

SEED_TABLES = {"crm_sync_configs", "crm_contacts", "crm_companies", "crm_deals", "crm_activities", "crm_tasks",
               "crm_conflict_records", "crm_sync_jobs", "crm_webhook_events", "crm_automation_rules"}


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    url = create_database("crmsync_mig")
    yield url
    drop_database(url)


# SQLite cannot reflect the lower(email)/lower(domain) expression indexes, so autogenerate skips
# them there (PostgreSQL compares them).
@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_upgrade_downgrade_upgrade_matches_models(empty_url):
    upgrade(empty_url)
    tables = set(inspect(get_engine(empty_url)).get_table_names())
    assert tables >= SEED_TABLES
    downgrade(empty_url, "base")
    assert set(inspect(get_engine(empty_url)).get_table_names()) <= {"alembic_version"}
    upgrade(empty_url)
    assert current_revision(empty_url) is not None
    with get_engine(empty_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": compared_with_models(conn.dialect.name)})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_config_table_has_every_seed_option(pg_url):
    columns = {c["name"] for c in inspect(get_engine(pg_url)).get_columns("crm_sync_configs")}
    assert {"platform", "sync_direction", "sync_frequency_minutes", "conflict_strategy", "source_priority",
            "sync_contacts", "sync_companies", "sync_deals", "sync_activities", "sync_tasks",
            "credentials_vault_id", "enabled", "next_sync_at", "last_sync_at", "field_mappings",
            "account_id", "api_base_url"} <= columns


def test_postgres_uses_jsonb_and_timestamptz(pg_url):
    cols = {c["name"]: c for c in inspect(get_engine(pg_url)).get_columns("crm_contacts")}
    assert type(cols["custom_fields"]["type"]).__name__ == "JSONB"
    assert cols["updated_at"]["type"].timezone is True


def test_troubleshooting_queries_have_indexes(pg_url):
    insp = inspect(get_engine(pg_url))

    def indexed(table, columns):
        idx = [tuple(i["column_names"]) for i in insp.get_indexes(table)]
        idx += [tuple(u["column_names"]) for u in insp.get_unique_constraints(table)]
        return any(i[:len(columns)] == tuple(columns) for i in idx)
    assert indexed("crm_sync_jobs", ["sync_config_id", "created_at"])
    assert indexed("crm_conflict_records", ["tenant_id", "status"])
    assert indexed("crm_webhook_events", ["processed", "received_at"])
    assert indexed("crm_sync_configs", ["enabled", "next_sync_at"])
    assert indexed("crm_sync_links", ["tenant_id", "platform", "entity_type", "external_id"])
    assert indexed("crm_webhook_events", ["platform", "account_id", "event_key"])


def test_delivery_bodies_are_lz4_compressed_where_the_server_has_it(pg_url):
    from sqlalchemy import text
    with get_engine(pg_url).connect() as conn:
        has_lz4 = conn.execute(text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                                    "WHERE name = 'default_toast_compression'")).scalar()
        method = conn.execute(text("SELECT attcompression FROM pg_attribute WHERE attname = 'body' "
                                   "AND attrelid = 'crm_webhook_deliveries'::regclass")).scalar()
    assert method == ("l" if has_lz4 else "")


def _config_at_0001(conn, tenant: str, vault_id: str, hook_id: str | None, account: str, *,
                    enabled: bool = True) -> str:
    from sqlalchemy import text
    config_id = new_uuid()
    conn.execute(text(
        "INSERT INTO crm_sync_configs (id, tenant_id, platform, sync_direction, sync_frequency_minutes, "
        "conflict_strategy, source_priority, sync_contacts, sync_companies, sync_deals, sync_activities, sync_tasks, "
        "credentials_vault_id, webhook_secret_vault_id, field_mappings, value_mappings, account_id, enabled, "
        "created_at, updated_at) VALUES (:id, :t, 'hubspot', 'pull', 60, 'timestamp_based', '[]', true, true, true, "
        "true, true, :v, :w, '{}', '{}', :a, :e, :now, :now)"),
        {"id": config_id, "t": tenant, "v": vault_id, "w": hook_id, "a": account, "e": enabled, "now": NOW})
    return config_id


def new_uuid() -> str:
    import uuid
    return str(uuid.uuid4())


NOW = "2026-01-01 00:00:00+00:00"


def _tenant_and_entries(conn, *names):
    from sqlalchemy import text
    tenant = new_uuid()
    conn.execute(text("INSERT INTO tenants (id, name, created_at) VALUES (:id, :n, :now)"),
                 {"id": tenant, "n": tenant[:8], "now": NOW})
    ids = []
    for name in names:
        ids.append(new_uuid())
        conn.execute(text("INSERT INTO crm_credentials_vault (id, name, platform, ciphertext, created_at, updated_at) "
                          "VALUES (:id, :n, 'hubspot', :c, :now, :now)"),
                     {"id": ids[-1], "n": name, "c": b"\x01", "now": NOW})
    return tenant, ids


def _uuid_text(value) -> str:
    import uuid
    return str(uuid.UUID(str(value)))


def test_upgrade_binds_entries_in_use_to_their_tenant_and_keeps_webhook_secrets(empty_url):
    from sqlalchemy import text
    upgrade(empty_url, "0001")
    with get_engine(empty_url).begin() as conn:
        tenant, (creds, hook, _unused) = _tenant_and_entries(conn, "creds", "hook", "unused")
        _config_at_0001(conn, tenant, creds, hook, "1")
    upgrade(empty_url)
    with get_engine(empty_url).connect() as conn:
        bound = {r.name: r.tenant_id for r in conn.execute(text("SELECT name, tenant_id FROM crm_credentials_vault"))}
        hook_of_config = conn.execute(text("SELECT webhook_secret_vault_id FROM crm_sync_configs")).scalar()
    assert {k: v and _uuid_text(v) for k, v in bound.items()} == {"creds": tenant, "hook": tenant, "unused": None}
    assert _uuid_text(hook_of_config) == hook     # the table rebuild (SQLite) ran no ON DELETE SET NULL


def test_upgrade_refuses_an_entry_two_tenants_share(empty_url):
    upgrade(empty_url, "0001")
    with get_engine(empty_url).begin() as conn:
        a, (shared,) = _tenant_and_entries(conn, "shared")
        b, _ = _tenant_and_entries(conn)
        _config_at_0001(conn, a, shared, None, "1")
        _config_at_0001(conn, b, shared, None, "2")
    with pytest.raises(RuntimeError, match="shared"):
        upgrade(empty_url)
    assert current_revision(empty_url) == "0001"


ONE_PER_CRM = "uq_crm_sync_configs_tenant_platform_enabled"


def _has_one_per_crm_index(url) -> bool:
    return ONE_PER_CRM in {i["name"] for i in inspect(get_engine(url)).get_indexes("crm_sync_configs")}


def test_upgrade_refuses_two_enabled_configs_of_one_crm_in_a_tenant_naming_them(empty_url, monkeypatch):
    """0009 holds a tenant to one enabled config per CRM. A pair made before `configs create`
    refused it stops the upgrade with what to do, nothing changed; a disabled duplicate is fine."""
    from click.testing import CliRunner
    from sqlalchemy import text

    from crmsync import settings
    from crmsync.cli import main
    upgrade(empty_url, "0008")
    with get_engine(empty_url).begin() as conn:
        tenant, (one, two, three) = _tenant_and_entries(conn, "one", "two", "three")
        first = _config_at_0001(conn, tenant, one, None, "1")
        second = _config_at_0001(conn, tenant, two, None, "2")
        disabled = _config_at_0001(conn, tenant, three, None, "3", enabled=False)
        other_tenant, (four,) = _tenant_and_entries(conn, "four")
        _config_at_0001(conn, other_tenant, four, None, "4")      # the same CRM in another tenant
    with pytest.raises(RuntimeError) as refused:
        upgrade(empty_url)
    message = str(refused.value)
    assert f"tenant {tenant} syncs hubspot through enabled configs " in message
    assert first in message and second in message and disabled not in message and other_tenant not in message
    assert "`crmsync configs disable <id>`" in message and "nothing was changed" in message
    assert current_revision(empty_url) == "0008" and not _has_one_per_crm_index(empty_url)
    # `crmsync db upgrade` shows the error's first line: the whole message is on it.
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", empty_url)
    settings.get_settings.cache_clear()
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1 and f"tenant {tenant} syncs hubspot" in result.stderr
    assert "crmsync configs disable <id>" in result.stderr

    # As doctor advises: disable one. Two disabled duplicates and an enabled one upgrade.
    with get_engine(empty_url).begin() as conn:
        conn.execute(text("UPDATE crm_sync_configs SET enabled = :f WHERE id = :id"), {"f": False, "id": second})
    upgrade(empty_url)
    assert _has_one_per_crm_index(empty_url)
    with get_engine(empty_url).connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM crm_sync_configs")).scalar() == 4
    downgrade(empty_url, "0008")
    assert current_revision(empty_url) == "0008" and not _has_one_per_crm_index(empty_url)

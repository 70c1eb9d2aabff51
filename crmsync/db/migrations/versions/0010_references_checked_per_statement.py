"""synced records' tenant and sync links' config: checked once per statement, by triggers

A FOREIGN KEY is checked once per inserted row: a query, a row lock and a trigger event each. A
backfill inserts a record and its sync link per CRM record, thousands per unit, and those checks
were a third of PostgreSQL's work on them (and a tenth of a full pull's time). On PostgreSQL the
two keys they insert under, a record's tenant (crm_companies, crm_contacts, crm_deals,
crm_activities, crm_tasks) and a link's (tenant, config), become triggers that keep every
promise of the keys:

- an INSERT checks each distinct key of the statement once (a statement of one tenant's rows
  checks one), locking the referenced row FOR KEY SHARE, as a key check does, so it cannot be
  deleted or re-keyed before the insert commits; a missing key raises foreign_key_violation
  (SQLSTATE 23503, the key's name as its constraint), and the statement is undone;
- changing a row's key checks the new one the same way;
- deleting a tenant deletes its records, deleting a config deletes its links (ON DELETE CASCADE);
  TRUNCATE ... CASCADE of tenants or configs empties them too;
- changing the key of a referenced tenant or config is refused while rows point at it.

SQLite keeps the FOREIGN KEYs (nothing changes there). The models still declare the keys
(crmsync.db.models.PER_STATEMENT); schema comparison leaves them out on PostgreSQL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

"""
from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Dependents first: deleting a tenant's deals before its contacts spares the SET NULLs between them.
RECORD_TABLES = ("crm_activities", "crm_tasks", "crm_deals", "crm_contacts", "crm_companies")
LINK_KEY = "fk_crm_sync_links_config"


def _fk_violation(message: str, detail: str, table: str, constraint: str) -> str:
    return (f"RAISE foreign_key_violation USING MESSAGE = {message}, DETAIL = {detail}, "
            f"TABLE = {table}, CONSTRAINT = {constraint};")


def _statements(schema: str) -> list[str]:
    s = f'"{schema}"'
    tenant_missing = _fk_violation(
        "format('insert or update on table \"%s\" violates foreign key constraint \"%s_tenant_id_fkey\"', tbl, tbl)",
        "format('Key (tenant_id)=(%s) is not present in table \"tenants\".', key)", "tbl", "tbl || '_tenant_id_fkey'")
    config_missing = _fk_violation(
        f"'insert or update on table \"crm_sync_links\" violates foreign key constraint \"{LINK_KEY}\"'",
        "format('Key (tenant_id, config_id)=(%s, %s) is not present in table \"crm_sync_configs\".', tenant, config)",
        "'crm_sync_links'", f"'{LINK_KEY}'")
    tenant_in_use = _fk_violation(
        "format('update or delete on table \"tenants\" violates foreign key constraint \"%s_tenant_id_fkey\" "
        "on table \"%s\"', tbl, tbl)",
        "format('Key (id)=(%s) is still referenced from table \"%s\".', OLD.id, tbl)", "'tenants'",
        "tbl || '_tenant_id_fkey'")
    config_in_use = _fk_violation(
        f"'update or delete on table \"crm_sync_configs\" violates foreign key constraint \"{LINK_KEY}\" "
        "on table \"crm_sync_links\"'",
        "format('Key (tenant_id, id)=(%s, %s) is still referenced from table \"crm_sync_links\".', "
        "OLD.tenant_id, OLD.id)", "'crm_sync_configs'", f"'{LINK_KEY}'")
    out = [
        # The check of one key, shared by the statement and row triggers below.
        f"""CREATE FUNCTION {s}.crmsync_hold_tenant(tbl text, key uuid) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM FROM {s}.tenants WHERE id = key FOR KEY SHARE;
            IF NOT FOUND THEN {tenant_missing} END IF;
        END $$""",
        f"""CREATE FUNCTION {s}.crmsync_hold_config(tenant uuid, config uuid) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM FROM {s}.crm_sync_configs WHERE tenant_id = tenant AND id = config FOR KEY SHARE;
            IF NOT FOUND THEN {config_missing} END IF;
        END $$""",
        # Ordered, so two statements holding the same keys take them in the same order.
        f"""CREATE FUNCTION {s}.crmsync_check_new_tenants() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE key uuid;
        BEGIN
            FOR key IN SELECT DISTINCT tenant_id FROM new_rows ORDER BY 1 LOOP
                PERFORM {s}.crmsync_hold_tenant(TG_TABLE_NAME, key);
            END LOOP;
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {s}.crmsync_check_changed_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM {s}.crmsync_hold_tenant(TG_TABLE_NAME, NEW.tenant_id);
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {s}.crmsync_check_new_configs() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE k record;
        BEGIN
            FOR k IN SELECT DISTINCT tenant_id, config_id FROM new_rows ORDER BY 1, 2 LOOP
                PERFORM {s}.crmsync_hold_config(k.tenant_id, k.config_id);
            END LOOP;
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {s}.crmsync_check_changed_config() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM {s}.crmsync_hold_config(NEW.tenant_id, NEW.config_id);
            RETURN NULL;
        END $$""",
        # The referenced side: ON DELETE CASCADE, TRUNCATE ... CASCADE, and no re-keying in use.
        f"""CREATE FUNCTION {s}.crmsync_tenant_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {" ".join(f"DELETE FROM {s}.{t} WHERE tenant_id = OLD.id;" for t in RECORD_TABLES)}
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {s}.crmsync_tenants_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {" ".join(f"DELETE FROM {s}.{t};" for t in RECORD_TABLES)}
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {s}.crmsync_tenant_rekeyed() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE tbl text; used boolean;
        BEGIN
            FOREACH tbl IN ARRAY ARRAY['{"', '".join(RECORD_TABLES)}']::text[] LOOP
                EXECUTE format('SELECT EXISTS (SELECT FROM {s}.%I WHERE tenant_id = $1)', tbl) INTO used USING OLD.id;
                IF used THEN {tenant_in_use} END IF;
            END LOOP;
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {s}.crmsync_config_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM {s}.crm_sync_links WHERE tenant_id = OLD.tenant_id AND config_id = OLD.id;
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {s}.crmsync_configs_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM {s}.crm_sync_links;
            RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION {s}.crmsync_config_rekeyed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT FROM {s}.crm_sync_links WHERE tenant_id = OLD.tenant_id AND config_id = OLD.id) THEN
                {config_in_use}
            END IF;
            RETURN NULL;
        END $$""",
    ]
    for t in RECORD_TABLES:
        out += [f"ALTER TABLE {s}.{t} DROP CONSTRAINT {t}_tenant_id_fkey",
                f"CREATE TRIGGER {t}_tenant_checked AFTER INSERT ON {s}.{t} REFERENCING NEW TABLE AS new_rows "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.crmsync_check_new_tenants()",
                f"CREATE TRIGGER {t}_tenant_changed AFTER UPDATE OF tenant_id ON {s}.{t} FOR EACH ROW "
                f"WHEN (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id) EXECUTE FUNCTION {s}.crmsync_check_changed_tenant()"]
    out += [
        f"ALTER TABLE {s}.crm_sync_links DROP CONSTRAINT {LINK_KEY}",
        f"CREATE TRIGGER crm_sync_links_config_checked AFTER INSERT ON {s}.crm_sync_links "
        f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {s}.crmsync_check_new_configs()",
        f"CREATE TRIGGER crm_sync_links_config_changed AFTER UPDATE OF tenant_id, config_id ON {s}.crm_sync_links "
        "FOR EACH ROW WHEN (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.config_id IS DISTINCT FROM "
        f"OLD.config_id) EXECUTE FUNCTION {s}.crmsync_check_changed_config()",
        f"CREATE TRIGGER tenants_records_deleted AFTER DELETE ON {s}.tenants FOR EACH ROW "
        f"EXECUTE FUNCTION {s}.crmsync_tenant_deleted()",
        f"CREATE TRIGGER tenants_records_truncated AFTER TRUNCATE ON {s}.tenants FOR EACH STATEMENT "
        f"EXECUTE FUNCTION {s}.crmsync_tenants_truncated()",
        f"CREATE TRIGGER tenants_rekeyed AFTER UPDATE OF id ON {s}.tenants FOR EACH ROW "
        f"WHEN (NEW.id IS DISTINCT FROM OLD.id) EXECUTE FUNCTION {s}.crmsync_tenant_rekeyed()",
        f"CREATE TRIGGER crm_sync_configs_links_deleted AFTER DELETE ON {s}.crm_sync_configs FOR EACH ROW "
        f"EXECUTE FUNCTION {s}.crmsync_config_deleted()",
        f"CREATE TRIGGER crm_sync_configs_links_truncated AFTER TRUNCATE ON {s}.crm_sync_configs FOR EACH STATEMENT "
        f"EXECUTE FUNCTION {s}.crmsync_configs_truncated()",
        f"CREATE TRIGGER crm_sync_configs_rekeyed AFTER UPDATE OF tenant_id, id ON {s}.crm_sync_configs FOR EACH ROW "
        f"WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id) "
        f"EXECUTE FUNCTION {s}.crmsync_config_rekeyed()",
    ]
    return out


FUNCTIONS = ("crmsync_check_new_tenants()", "crmsync_check_changed_tenant()", "crmsync_check_new_configs()",
             "crmsync_check_changed_config()", "crmsync_tenant_deleted()", "crmsync_tenants_truncated()",
             "crmsync_tenant_rekeyed()", "crmsync_config_deleted()", "crmsync_configs_truncated()",
             "crmsync_config_rekeyed()", "crmsync_hold_tenant(text, uuid)", "crmsync_hold_config(uuid, uuid)")


def _schema() -> str:
    # The functions name the tables with the schema they are in now: a session's search_path
    # must not change what a key check reads.
    return op.get_bind().exec_driver_sql("SELECT current_schema()").scalar()


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in _statements(_schema()):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    s = f'"{_schema()}"'
    for t in RECORD_TABLES:
        op.execute(f"DROP TRIGGER {t}_tenant_checked ON {s}.{t}")
        op.execute(f"DROP TRIGGER {t}_tenant_changed ON {s}.{t}")
        op.execute(f"ALTER TABLE {s}.{t} ADD CONSTRAINT {t}_tenant_id_fkey FOREIGN KEY (tenant_id) "
                   f"REFERENCES {s}.tenants (id) ON DELETE CASCADE")
    for trigger, table in (("crm_sync_links_config_checked", "crm_sync_links"),
                           ("crm_sync_links_config_changed", "crm_sync_links"),
                           ("tenants_records_deleted", "tenants"), ("tenants_records_truncated", "tenants"),
                           ("tenants_rekeyed", "tenants"), ("crm_sync_configs_links_deleted", "crm_sync_configs"),
                           ("crm_sync_configs_links_truncated", "crm_sync_configs"),
                           ("crm_sync_configs_rekeyed", "crm_sync_configs")):
        op.execute(f"DROP TRIGGER {trigger} ON {s}.{table}")
    op.execute(f"ALTER TABLE {s}.crm_sync_links ADD CONSTRAINT {LINK_KEY} FOREIGN KEY (tenant_id, config_id) "
               f"REFERENCES {s}.crm_sync_configs (tenant_id, id) ON DELETE CASCADE")
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {s}.{function}")

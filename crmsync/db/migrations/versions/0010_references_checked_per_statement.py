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
import re
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


def _functions(s: str) -> list[str]:
    """The functions the triggers run, `s` the quoted schema."""
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
    return [
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


def _triggers(s: str) -> list[tuple[str, str, str, str]]:
    """(name, table, when, what it runs) of every trigger the upgrade creates."""
    out = []
    for t in RECORD_TABLES:
        out += [(f"{t}_tenant_checked", t, "AFTER INSERT",
                 f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {s}.crmsync_check_new_tenants()"),
                (f"{t}_tenant_changed", t, "AFTER UPDATE OF tenant_id",
                 "FOR EACH ROW WHEN (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id) "
                 f"EXECUTE FUNCTION {s}.crmsync_check_changed_tenant()")]
    return out + [
        ("crm_sync_links_config_checked", "crm_sync_links", "AFTER INSERT",
         f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {s}.crmsync_check_new_configs()"),
        ("crm_sync_links_config_changed", "crm_sync_links", "AFTER UPDATE OF tenant_id, config_id",
         "FOR EACH ROW WHEN (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.config_id IS DISTINCT FROM "
         f"OLD.config_id) EXECUTE FUNCTION {s}.crmsync_check_changed_config()"),
        ("tenants_records_deleted", "tenants", "AFTER DELETE", f"FOR EACH ROW EXECUTE FUNCTION {s}.crmsync_tenant_deleted()"),
        ("tenants_records_truncated", "tenants", "AFTER TRUNCATE",
         f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.crmsync_tenants_truncated()"),
        ("tenants_rekeyed", "tenants", "AFTER UPDATE OF id",
         f"FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id) EXECUTE FUNCTION {s}.crmsync_tenant_rekeyed()"),
        ("crm_sync_configs_links_deleted", "crm_sync_configs", "AFTER DELETE",
         f"FOR EACH ROW EXECUTE FUNCTION {s}.crmsync_config_deleted()"),
        ("crm_sync_configs_links_truncated", "crm_sync_configs", "AFTER TRUNCATE",
         f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.crmsync_configs_truncated()"),
        ("crm_sync_configs_rekeyed", "crm_sync_configs", "AFTER UPDATE OF tenant_id, id",
         "FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id) "
         f"EXECUTE FUNCTION {s}.crmsync_config_rekeyed()"),
    ]


# The FOREIGN KEYs the triggers stand in for: (table, name, definition).
KEYS = [*((t, f"{t}_tenant_id_fkey", "FOREIGN KEY (tenant_id) REFERENCES {s}.tenants (id) ON DELETE CASCADE")
          for t in RECORD_TABLES),
        ("crm_sync_links", LINK_KEY,
         "FOREIGN KEY (tenant_id, config_id) REFERENCES {s}.crm_sync_configs (tenant_id, id) ON DELETE CASCADE")]


def _schema() -> str:
    # The functions name the tables with the schema they are in now: a session's search_path
    # must not change what a key check reads.
    return op.get_bind().exec_driver_sql("SELECT current_schema()").scalar()


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    s = f'"{_schema()}"'
    for statement in _functions(s):
        op.execute(statement)
    for table, name, _ in KEYS:
        op.execute(f"ALTER TABLE {s}.{table} DROP CONSTRAINT {name}")
    for name, table, when, runs in _triggers(s):
        op.execute(f"CREATE TRIGGER {name} {when} ON {s}.{table} {runs}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    s = f'"{_schema()}"'
    for name, table, _, _ in _triggers(s):
        op.execute(f"DROP TRIGGER {name} ON {s}.{table}")
    for table, name, definition in KEYS:
        op.execute(f"ALTER TABLE {s}.{table} ADD CONSTRAINT {name} {definition.format(s=s)}")
    for statement in _functions(s):
        op.execute("DROP FUNCTION " + re.match(r"CREATE FUNCTION (\S+?)\(", statement).group(1))

"""sync configs: one enabled config per CRM in a tenant, held by the database

A tenant syncs one account per CRM (sync links are keyed by tenant and platform). `configs create`
checked that in Python only, so two requests at once could both pass; a partial unique index on
(tenant_id, platform) WHERE enabled now refuses the second. Disabled duplicates stay allowed: the
way out of a pair made before the check is to disable one (`crmsync doctor` says so). A database
that still holds two enabled configs of one CRM in a tenant is refused, naming them, and left as
it was.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

"""
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_crm_sync_configs_tenant_platform_enabled"
ENABLED = {"postgresql_where": sa.text("enabled"), "sqlite_where": sa.text("enabled")}


def _id(value) -> str:
    """An id as the CLI prints and takes it (SQLite keeps a UUID as 32 hex digits)."""
    return str(uuid.UUID(str(value)))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # Nothing enabled or created between the check and the index (CREATE INDEX takes this lock too).
        op.execute("LOCK TABLE crm_sync_configs IN SHARE MODE")
    rows = bind.execute(sa.text(
        "SELECT c.tenant_id, c.platform, c.id FROM crm_sync_configs c WHERE c.enabled AND EXISTS ("
        "SELECT 1 FROM crm_sync_configs o WHERE o.enabled AND o.tenant_id = c.tenant_id "
        "AND o.platform = c.platform AND o.id <> c.id) ORDER BY c.tenant_id, c.platform, c.created_at, c.id"
    )).all()
    if rows:
        pairs: dict[tuple[str, str], list[str]] = {}
        for tenant_id, platform, config_id in rows:
            pairs.setdefault((_id(tenant_id), platform), []).append(_id(config_id))
        listing = "; ".join(f"tenant {tenant} syncs {platform} through enabled configs {', '.join(ids)}"
                            for (tenant, platform), ids in pairs.items())
        # One line: `crmsync db upgrade` shows the first line of the error.
        raise RuntimeError(f"a tenant syncs one account per CRM, but {listing}. Keep one of each enabled: run "
                           "`crmsync configs disable <id>` on the others (`crmsync doctor` names them too), then "
                           "upgrade again; nothing was changed")
    op.create_index(INDEX, "crm_sync_configs", ["tenant_id", "platform"], unique=True, **ENABLED)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="crm_sync_configs", **ENABLED)

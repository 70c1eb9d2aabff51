"""sync configs: one per CRM in a tenant, held by a unique constraint (tenant_id, platform)

`crmsync configs create` has always refused a tenant's second config of a CRM; two created at
the same moment could both pass that check. An existing database holding such a pair is refused
with their ids: sync links are keyed by (tenant, platform, entity, external id), so the pair's
records have been mixed already, and which config to keep is for a person to decide.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    configs: dict[tuple[str, str], list[str]] = {}
    for config_id, tenant_id, platform in op.get_bind().execute(sa.text(
            "SELECT id, tenant_id, platform FROM crm_sync_configs ORDER BY created_at")):
        configs.setdefault((str(tenant_id), platform), []).append(str(config_id))
    pairs = {key: ids for key, ids in configs.items() if len(ids) > 1}
    if pairs:
        shown = "; ".join(f"tenant {t}, {p}: configs {', '.join(ids)}" for (t, p), ids in pairs.items())
        raise RuntimeError(f"a tenant may sync each CRM through one config only, and some have more ({shown}). "
                           "Keep one of each (delete the others' rows from crm_sync_configs, which deletes their "
                           "links and checkpoints too), then upgrade")
    with op.batch_alter_table("crm_sync_configs") as batch:
        batch.create_unique_constraint("uq_crm_sync_configs_tenant_platform", ["tenant_id", "platform"])


def downgrade() -> None:
    with op.batch_alter_table("crm_sync_configs") as batch:
        batch.drop_constraint("uq_crm_sync_configs_tenant_platform", type_="unique")

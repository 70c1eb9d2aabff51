"""tenant-bound vault entries and job leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Each vault entry belongs to one tenant (entries already in use: their configs' tenant); a
    job carries a lease (owner, expiry) so a dead runner's job can be resumed."""
    bind = op.get_bind()
    with op.batch_alter_table('crm_credentials_vault') as batch:
        batch.add_column(sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=True))
        batch.create_foreign_key('fk_crm_credentials_vault_tenant', 'tenants', ['tenant_id'], ['id'],
                                 ondelete='CASCADE')
    in_use = ("SELECT c.tenant_id FROM crm_sync_configs c WHERE crm_credentials_vault.id = c.credentials_vault_id "
              "OR crm_credentials_vault.id = c.webhook_secret_vault_id")
    shared = bind.execute(sa.text(
        f"SELECT id, name FROM crm_credentials_vault WHERE (SELECT COUNT(DISTINCT t.tenant_id) FROM ({in_use}) t) > 1"
    )).all()
    if shared:
        names = ", ".join(f"{name} ({id_})" for id_, name in shared)
        raise RuntimeError(f"vault entries used by configs of several tenants: {names}. Give each tenant its own "
                           "entry (`crmsync credentials set --tenant ...`) and point its configs at it, then upgrade")
    bind.execute(sa.text(f"UPDATE crm_credentials_vault SET tenant_id = ({in_use} LIMIT 1)"))
    op.add_column('crm_sync_jobs', sa.Column('lease_owner', sa.String(length=200), nullable=True))
    op.add_column('crm_sync_jobs', sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('crm_sync_jobs') as batch:
        batch.drop_column('lease_expires_at')
        batch.drop_column('lease_owner')
    with op.batch_alter_table('crm_credentials_vault') as batch:
        batch.drop_constraint('fk_crm_credentials_vault_tenant', type_='foreignkey')
        batch.drop_column('tenant_id')

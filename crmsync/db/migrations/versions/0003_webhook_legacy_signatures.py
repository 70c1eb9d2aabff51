"""a config may accept HubSpot's legacy v1/v2 webhook signatures

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Off for every config: v1/v2 signatures carry no timestamp, so a captured delivery could be
    replayed forever; only an app that cannot sign with v3 opts in."""
    with op.batch_alter_table('crm_sync_configs') as batch:
        batch.add_column(sa.Column('webhook_legacy_signatures', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('crm_sync_configs') as batch:
        batch.drop_column('webhook_legacy_signatures')

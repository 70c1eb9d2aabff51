"""deletion sweep: per-config cadence and the listed ids

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("crm_sync_configs", sa.Column("sweep_every_hours", sa.Integer(), nullable=False,
                                                server_default=sa.text("24")))
    op.add_column("crm_sync_configs", sa.Column("next_sweep_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "crm_sweep_ids",
        sa.Column("job_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("remote_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["crm_sync_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "entity_type", "external_id"),
    )


def downgrade() -> None:
    op.drop_table("crm_sweep_ids")
    op.drop_column("crm_sync_configs", "next_sweep_at")
    op.drop_column("crm_sync_configs", "sweep_every_hours")

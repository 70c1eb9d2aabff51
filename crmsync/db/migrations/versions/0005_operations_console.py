"""operations console: console users, the conflict audit trail, field rules, queue indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
PENDING = {"postgresql_where": sa.text("status = 'pending'"), "sqlite_where": sa.text("status = 'pending'")}
QUEUE_INDEXES = {
    "ix_crm_conflict_records_pending": ["created_at", "id"],
    "ix_crm_conflict_records_pending_tenant": ["tenant_id", "created_at", "id"],
    "ix_crm_conflict_records_pending_config": ["config_id", "created_at", "id"],
}


def upgrade() -> None:
    op.create_table(
        "crm_console_users",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.Uuid(as_uuid=False), nullable=True),
        sa.Column("is_operator", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("is_operator OR tenant_id IS NOT NULL", name="ck_crm_console_users_scope"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "crm_conflict_resolutions",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("tenant_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("conflict_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("config_id", sa.Uuid(as_uuid=False), nullable=True),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("resolved_by", sa.String(length=320), nullable=False),
        sa.Column("how", sa.String(length=32), nullable=False),
        sa.Column("before", JSON, nullable=False),
        sa.Column("after", JSON, nullable=False),
        sa.Column("writes", JSON, nullable=False),
        sa.Column("push", JSON, nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conflict_id"], ["crm_conflict_records.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_crm_conflict_resolutions_tenant", "crm_conflict_resolutions", ["tenant_id", "resolved_at"])
    op.create_index("ix_crm_conflict_resolutions_entity", "crm_conflict_resolutions", ["entity_type", "entity_id"])
    op.create_table(
        "crm_conflict_field_rules",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("tenant_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("config_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("prefer", sa.String(length=8), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("prefer IN ('local', 'remote')", name="ck_crm_conflict_field_rules_prefer"),
        sa.ForeignKeyConstraint(["tenant_id", "config_id"], ["crm_sync_configs.tenant_id", "crm_sync_configs.id"],
                                name="fk_crm_conflict_field_rules_config", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("config_id", "entity_type", "field", name="uq_crm_conflict_field_rules_field"),
    )
    for name, columns in QUEUE_INDEXES.items():
        op.create_index(name, "crm_conflict_records", columns, **PENDING)


def downgrade() -> None:
    for name in QUEUE_INDEXES:
        op.drop_index(name, table_name="crm_conflict_records", **PENDING)
    op.drop_table("crm_conflict_field_rules")
    op.drop_index("ix_crm_conflict_resolutions_entity", table_name="crm_conflict_resolutions")
    op.drop_index("ix_crm_conflict_resolutions_tenant", table_name="crm_conflict_resolutions")
    op.drop_table("crm_conflict_resolutions")
    op.drop_table("crm_console_users")

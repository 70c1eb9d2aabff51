"""sync links: the base is json, not jsonb (a document only written and read whole)

On PostgreSQL this rewrites crm_sync_links under an exclusive lock (measured: 20,000 links in
0.16 s, so about 8 s per million; syncs wait meanwhile). SQLite stores both as text; nothing
changes there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("crm_sync_links", "base", type_=sa.JSON(), existing_nullable=False,
                        postgresql_using="base::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("crm_sync_links", "base", type_=postgresql.JSONB(astext_type=sa.Text()),
                        existing_nullable=False, postgresql_using="base::jsonb")

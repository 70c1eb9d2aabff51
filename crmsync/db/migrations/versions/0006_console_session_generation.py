"""console users: a session generation, so signing out ends every session of the user

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Generation 0 for every user: cookies signed before this carry none and are refused, so
    everyone signs in once more."""
    with op.batch_alter_table("crm_console_users") as batch:
        batch.add_column(sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("crm_console_users") as batch:
        batch.drop_column("session_generation")

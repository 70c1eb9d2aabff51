"""Alembic, driven from code: `crmsync db upgrade`, the tests and the demo call these."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from crmsync.db import get_engine
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def compared_with_models(dialect_name: str):
    """Alembic's `include_object` for comparing a migrated database with the models: on
    PostgreSQL the references the models mark PER_STATEMENT are triggers, not FOREIGN KEYs
    (migration 0010), so autogenerate must not add them back."""
    from crmsync.db.models import checked_per_statement

    def include(obj, name, type_, reflected, compare_to) -> bool:
        return not (dialect_name == "postgresql" and type_ == "foreign_key_constraint" and not reflected
                    and checked_per_statement(obj))
    return include

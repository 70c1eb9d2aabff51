from alembic import context

from crmsync.db import get_engine
from crmsync.db.migrate import compared_with_models
from crmsync.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or None
    engine = get_engine(url)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")  # the connection goes back to the pool


def _run(connection) -> None:
    if connection.dialect.name == "sqlite":
        # A batch migration rebuilds a table: with foreign keys on, dropping the old copy would
        # run its ON DELETE actions on the rows that point at it (alembic's batch docs). Set
        # before the first write, when SQLite still accepts it.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      render_as_batch=connection.dialect.name == "sqlite",
                      include_object=compared_with_models(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("crmsync migrations run online only: set CRMSYNC_DATABASE_URL and run `crmsync db upgrade`")
run_migrations_online()

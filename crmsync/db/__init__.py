"""Engine and session scope. One engine per process and URL; a session per unit of work.

`session_scope()` commits on success and rolls back on any error, so a unit of work is all or
nothing — the promise behind "a crash resumes at the last written page".

SQLAlchemy is imported by the functions that use it, not here: `crmsync.db.reads` (the read path
of `crmsync jobs list`) lives in this package and must not pay for it.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    if url is None:
        from crmsync.settings import get_settings
        url = get_settings().database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _make_engine(url)
            _engines[url] = engine
        return engine


def _make_engine(url: str) -> Engine:
    from sqlalchemy import create_engine, event
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
        return engine
    engine = create_engine(url, pool_size=5, max_overflow=5)
    _ping_when_idle(engine)
    return engine


# A connection back in the pool for less than this is trusted without a ping.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """pool_pre_ping, but only for connections idle longer than PING_AFTER_IDLE_SECONDS.

    A ping is a round trip on every checkout, the one query of a webhook request besides its insert;
    a connection used a moment ago is alive. A server restarted within that moment still costs one
    failed statement: a task retries it (OperationalError is transient), a CRM resends the webhook."""
    from sqlalchemy import event, exc

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn, record):
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy):
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_conn.cursor().execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as err:
            # The pool discards this connection and checks out (or opens) another.
            raise exc.DisconnectionError(f"stale pooled connection: {type(err).__name__}") from err


def dispose_engines() -> None:
    """After a fork (Celery prefork children) connections must not be shared."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


def sessionmaker_for(url: str | None = None) -> sessionmaker[Session]:
    from sqlalchemy.orm import sessionmaker
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    session = sessionmaker_for(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session_or_engine) -> bool:
    from sqlalchemy.orm import Session
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


# --- work that waits for the commit ------------------------------------------------------------
_PENDING = "crmsync.db.after_commit"
_HOOKED = "crmsync.db.after_commit.hooked"


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run `action()` once `session`'s outermost transaction commits (tasks enqueued, metrics
    counted only for what is durable). Dropped if the transaction rolls back, or if the SAVEPOINT
    it was registered in does (only that SAVEPOINT's actions)."""
    from sqlalchemy import event
    pending = session.info.setdefault(_PENDING, [])
    pending.append((action, session.get_nested_transaction()))
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        event.listen(session, "after_commit", _run_after_commit)
        event.listen(session, "after_rollback", _drop_after_rollback)


def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        # SQLAlchemy fires after_commit when a SAVEPOINT is released too; the rows are not
        # durable until the outermost transaction commits.
        return
    for action, _savepoint in session.info.pop(_PENDING, []):
        action()


def _drop_after_rollback(session: Session) -> None:
    savepoint = session.get_nested_transaction()
    if savepoint is None:
        session.info.pop(_PENDING, None)
        return
    # A SAVEPOINT rolled back (e.g. a refused job in the dispatcher): drop what was registered
    # inside it, keep what the enclosing transaction registered.
    session.info[_PENDING] = [item for item in session.info.get(_PENDING, []) if not _inside(item[1], savepoint)]


def _inside(transaction, savepoint) -> bool:
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False

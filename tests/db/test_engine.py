"""The pool's liveness check: a connection idle past PING_AFTER_IDLE_SECONDS is pinged at checkout and
replaced if the server dropped it; one used a moment ago is trusted without that round trip."""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from crmsync import db
from crmsync.db import get_engine


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar()


def _terminate(url: str, pid: int) -> None:
    # From outside the pool, so the pooled connection is the one dropped.
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_an_idle_connection_the_server_dropped_is_replaced_without_an_error(monkeypatch, pg_url):
    engine = get_engine(pg_url)
    engine.dispose()
    first = _backend_pid(engine)
    _terminate(pg_url, first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)   # every checkout counts as idle
    assert _backend_pid(engine) != first


def test_a_connection_used_a_moment_ago_is_trusted_without_a_ping(monkeypatch, pg_url):
    engine = get_engine(pg_url)
    engine.dispose()
    first = _backend_pid(engine)
    _terminate(pg_url, first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    with pytest.raises(OperationalError):   # no ping: the statement itself finds the connection gone
        _backend_pid(engine)
    assert _backend_pid(engine) != first     # and the pool has replaced it

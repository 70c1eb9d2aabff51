"""`crmsync.db.reads` connects with what SQLAlchemy would connect with (no server needed)."""
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from crmsync.db.reads import psycopg_params


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://postgres@127.0.0.1:5432/crmsync",
    "postgresql+psycopg://app:p%40ss%3Aw%2Fd@db.example.com/crm%20sync",
    "postgresql+psycopg://app:secret@[::1]:6432/crmsync?sslmode=require&application_name=crmsync%20cli",
    "postgresql+psycopg://app@/crmsync?host=/var/run/postgresql",
    "postgresql+psycopg://app@/crmsync?host=db1:5432&host=db2:5433&target_session_attrs=read-write",
    "postgresql+psycopg://app@/crmsync?host=db1,db2&port=5432,5433",
    "postgresql+psycopg://app@/crmsync?host=db1:6543",
    "postgresql+psycopg://localhost",
])
def test_psycopg_params_are_sqlalchemys(url):
    engine = create_engine(url)
    _, expected = engine.dialect.create_connect_args(make_url(url))
    expected.pop("context", None)     # SQLAlchemy's own type adapters
    assert psycopg_params(url) == expected

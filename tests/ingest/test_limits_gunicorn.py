"""Size and depth limits as a client meets them through gunicorn, the server production runs: a
chunked body (no Content-Length) over the limit is 413 like a declared one, never cut at the limit
and accepted."""
from __future__ import annotations

import json

import pytest
import requests

from crmsync.credentials import create_api_key
from crmsync.db import session_scope
from tests.fixtures.factories import make_tenant
from tests.fixtures.ingest import start_ingest_server

LIMIT = 1_048_576


@pytest.fixture
def server(ingest_env, tmp_path):
    server = start_ingest_server(ingest_env, tmp_path, workers=1)
    yield server
    server.stop()


def _chunked(data: bytes, size: int = 64 * 1024):
    # A generator body: requests sends it with Transfer-Encoding: chunked and no Content-Length.
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_chunked_and_declared_bodies_over_the_limit_are_413(server, ingest_env, db_url):
    with session_scope(db_url) as s:
        _, key = create_api_key(s, make_tenant(s).id)
    url = f"{server.url}/events/email_replied"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    valid = json.dumps({"sender_email": "ada@example.org"}).encode()
    # Valid JSON, then whitespace up to the limit, then what a cut at the limit would have dropped.
    oversized = valid + b" " * (LIMIT - len(valid)) + b"GARBAGE"
    for body in (_chunked(oversized), oversized):
        res = requests.post(url, data=body, headers=headers, timeout=30)
        assert res.status_code == 413, res.text
        assert res.json()["error"] == "body_too_large"
    exactly = valid + b" " * (LIMIT - len(valid))
    res = requests.post(url, data=_chunked(exactly), headers=headers, timeout=30)
    assert res.status_code == 202, res.text
    deep = b'{"sender_email": "ada@example.org", "properties": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    res = requests.post(url, data=_chunked(deep), headers=headers, timeout=30)
    assert res.status_code == 400 and "deeper than 32" in res.json()["message"], res.text
    assert "Traceback" not in server.log()

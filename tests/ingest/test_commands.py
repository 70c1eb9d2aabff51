"""`crmsync webhooks list|replay` and `crmsync ingest serve`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from click.testing import CliRunner
from sqlalchemy import select

from crmsync.cli import main
from crmsync.db import session_scope
from crmsync.db.models import WebhookEvent
from tests.fixtures.ingest import hubspot_event, hubspot_headers, hubspot_portal

URI = "http://localhost/webhooks/hubspot"


def _run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_list_and_replay(ingest_env, ingest_client, ingest_queue, db_url):
    with session_scope(db_url) as s:
        portal = hubspot_portal(s)
    body = json.dumps([hubspot_event(portal.account_id, i) for i in (1, 2, 3)]).encode()
    assert ingest_client.post("/webhooks/hubspot", data=body,
                              headers=hubspot_headers(body, URI, portal.secret)).status_code == 200
    ingest_queue.run("crmsync.events.split")
    with session_scope(db_url) as s:
        rows = s.scalars(select(WebhookEvent).order_by(WebhookEvent.external_id)).all()
        rows[0].processed, rows[0].outcome, rows[0].error = True, "failed", "boom"
        rows[1].processed, rows[1].outcome = True, "applied"
    ids = [r.id for r in rows]

    listed = json.loads(_run("webhooks", "list", "--json").output)
    assert {e["id"] for e in listed} == set(ids)
    unprocessed = json.loads(_run("webhooks", "list", "--unprocessed", "--json").output)
    assert [e["id"] for e in unprocessed] == [ids[2]]
    assert "contact.updated" in _run("webhooks", "list").output

    ingest_queue.clear()
    res = _run("webhooks", "replay", "--failed", "--json")
    assert res.exit_code == 0 and json.loads(res.output) == {"replayed": [ids[0]], "count": 1}
    with session_scope(db_url) as s:
        replayed = s.get(WebhookEvent, ids[0])
        assert (replayed.processed, replayed.outcome, replayed.error) == (False, None, None)
    assert ingest_queue.tasks() == [("crmsync.events.process", [ids[0]])]

    res = _run("webhooks", "replay", ids[1], "--json")
    assert res.exit_code == 0 and json.loads(res.output)["replayed"] == [ids[1]]
    assert _run("webhooks", "replay").exit_code == 2
    assert _run("webhooks", "replay", "not-an-id").exit_code == 2
    assert _run("webhooks", "replay", "00000000-0000-0000-0000-000000000000").exit_code == 2


def test_ingest_serve_runs_the_app(ingest_env, tmp_path):
    from tests.fixtures.workers import free_port
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "crmsync.cli", "ingest", "serve", "--port", str(port)],
                            cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                res = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "ingest serve did not start"
                time.sleep(0.05)
        assert res.status_code == 200 and res.json()["checks"]["database"] == "ok"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_delivery_that_cannot_be_split_keeps_its_reason_and_replays(ingest_env, ingest_client, ingest_queue,
                                                                     db_url):
    from crmsync.db.models import WebhookDelivery
    with session_scope(db_url) as s:
        portal = hubspot_portal(s)
    ids = []
    for n in (1, 2):
        body = json.dumps([hubspot_event(portal.account_id, n)]).encode()
        res = ingest_client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, URI, portal.secret))
        assert res.status_code == 200, res.json
        ids += res.json["deliveries"]
    # The ingest app refuses what jsonb cannot hold, so only a row changed after it was stored
    # can fail to split: 1e999 is beyond what a stored JSON number can be.
    with session_scope(db_url) as s:
        first = s.get(WebhookDelivery, ids[0])
        first.body = first.body.replace('"objectId": 1', '"objectId": 1, "x": 1e999')
    ingest_queue.run("crmsync.events.split")
    with session_scope(db_url) as s:
        assert [e.external_id for e in s.scalars(select(WebhookEvent))] == ["2"]   # the other one went through
        [kept] = s.scalars(select(WebhookDelivery)).all()
        assert kept.id == ids[0] and "1e999 is out of range" in kept.error
    assert "1 delivery(ies) not yet split into events, 1 of them failed" in _run("webhooks", "list").output

    ingest_queue.clear()
    res = _run("webhooks", "replay", "--failed", "--json")
    assert res.exit_code == 0 and json.loads(res.output) == {"replayed": [ids[0]], "count": 1}
    assert ingest_queue.tasks() == [("crmsync.events.split", [ids[0]])]
    with session_scope(db_url) as s:
        assert s.get(WebhookDelivery, ids[0]).error is None

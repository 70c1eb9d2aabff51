"""Shared sandbox plumbing: the server runner, rate windows, faults, request log, webhook dispatcher."""
from __future__ import annotations

import json
import socket
import threading

import pytest
import requests

from crmsync.sandbox.faults import FaultConfig, FaultInjector
from crmsync.sandbox.limits import DailyQuota, RollingWindow
from crmsync.sandbox.requestlog import RequestLog
from crmsync.sandbox.server import DropConnection, SandboxServer
from crmsync.sandbox.webhooks import WebhookDispatcher


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_rolling_window_slides_and_tracks_peak():
    clock = FakeClock()
    w = RollingWindow(3, 10, clock=clock)
    assert [w.hit().allowed for _ in range(4)] == [True, True, True, False]
    assert w.peak == 3 and w.rejected == 1
    clock.t += 5
    assert not w.hit().allowed
    clock.t += 5.01
    s = w.hit()
    assert s.allowed and s.remaining == 2
    unlimited = RollingWindow(0, 10, clock=clock)
    for _ in range(50):
        assert unlimited.hit().allowed
    assert unlimited.peak == 50


def test_daily_quota_resets_at_midnight():
    clock = FakeClock(1_700_000_000.0)  # 2023-11-14T22:13:20Z
    q = DailyQuota(2, clock=clock)
    assert [q.hit().allowed for _ in range(3)] == [True, True, False]
    clock.t += 2 * 3600
    assert q.hit().allowed


def test_fault_injector_is_seeded():
    def draws(seed):
        f = FaultInjector(FaultConfig(error_rate=0.3, drop_rate=0.1, rate_limit_rate=0.1, seed=seed))
        return [(d.kind, d.status) for d in (f.draw() for _ in range(200))]

    a = draws(1)
    assert a == draws(1) and a != draws(2)
    kinds = {k for k, _ in a}
    assert kinds == {None, "error", "drop", "rate_limited"}
    assert FaultInjector().draw().kind is None


def test_server_keepalive_drop_and_stop():
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/drop":
            raise DropConnection()
        body = json.dumps({"path": environ["PATH_INFO"], "q": environ["QUERY_STRING"],
                           "body": environ["sandbox.body"].decode()}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    server = SandboxServer(app)
    base = server.start()
    s = requests.Session()
    for i in range(20):
        r = s.post(f"{base}/x/{i}?a=1", data="hi")
        assert r.json() == {"path": f"/x/{i}", "q": "a=1", "body": "hi"}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/drop")
    host, port = base.rsplit("/", 1)[1].split(":")
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1)


def test_request_log_counts():
    log = RequestLog(keep=2)
    for status in (200, 429, 200):
        log.record("GET", "/crm/v3/objects/{type}", status, "/crm/v3/objects/contacts")
    snap = log.snapshot()
    assert snap["total"] == 3 and snap["rate_limited"] == 1
    assert snap["by_endpoint"] == {"GET /crm/v3/objects/{type}": 3} and len(snap["entries"]) == 2


def test_webhook_dispatcher_batches_and_retries():
    got, lock = [], threading.Lock()
    fail_first = {"n": 1}

    def receiver(environ, start_response):
        with lock:
            if fail_first["n"]:
                fail_first["n"] -= 1
                start_response("500 X", [])
                return [b""]
            got.append(json.loads(environ["sandbox.body"]))
        start_response("200 OK", [])
        return [b""]

    server = SandboxServer(receiver)
    url = server.start()
    d = WebhookDispatcher(lambda url, events, attempt: (json.dumps([{**e, "a": attempt} for e in events]).encode(),
                                                        {}))
    d.configure(url=url, batch_size=10, retry_delay=0.01)
    d.enqueue([{"n": i} for i in range(25)])
    assert d.flush(10)
    events = [e for batch in got for e in batch]
    assert sorted(e["n"] for e in events) == list(range(25))
    assert max(len(b) for b in got) <= 10
    assert any(e["a"] == 1 for e in events)  # the failed batch came back as attempt 1
    assert d.snapshot()["counters"]["failed_attempts"] == 1
    d.stop()
    server.stop()

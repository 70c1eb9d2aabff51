"""Load on the ingest app: HubSpot webhook deliveries of 100 signed events at a fixed rate against gunicorn
(2 workers) on loopback, with PostgreSQL and a Redis broker; then, with Celery workers running,
how long a webhook takes to become a visible local row.

Phase 1 (open loop): request k is due at start + k/rate whatever the previous answers took; each is a
fresh 100-event body (unique event ids, so every event is a new row), signed v3 (all made before the clock starts). Prints the achieved
rate, statuses and latency percentiles (service time: send -> full answer; and from the due time,
which includes any queueing in the generator).
Phase 1b (--split): 2 Celery workers split what phase 1 stored into event rows; prints events/s.
Phase 2: the HubSpot sandbox holds the contacts; for each, one signed contact.creation delivery is
POSTed and the local crm_contacts row is polled for (every 5 ms); prints webhook -> row visible p50/p95.

Run: .venv/bin/python bench/ingest_load.py [--rate 500] [--seconds 6] [--events 100] [--workers 2]
     [--threads 1] [--split] [--visible 150] [--visible-rate 20]
Needs PostgreSQL at 127.0.0.1:5432 (user postgres) and `redis-server` on PATH (a private one is started).
Bounded: at most rate*seconds requests, and every phase has a deadline.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import itertools
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select, text

from tests.fixtures.db import TEST_SECRET_KEY, create_database, drop_database
from tests.fixtures.ingest import start_ingest_server
from tests.fixtures.workers import start_celery_worker, start_redis, worker_environment

SECRET = "bench-app-secret"
PATH = "/webhooks/hubspot"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def sign_v3(uri: str, body: bytes, ts: str) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), b"POST" + uri.encode() + body + ts.encode(),
                                     hashlib.sha256).digest()).decode()


class Deliveries:
    """Fresh signed 100-event bodies, cheap to make: a pre-encoded event with slots for the ids."""

    def __init__(self, portal: int, host: str, events: int):
        self.uri = f"http://{host}{PATH}"
        self.host = host
        self.events = events
        self.template = json.dumps({
            "eventId": 0, "subscriptionId": 7, "portalId": portal, "appId": 4242, "occurredAt": 0,
            "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 0,
            "propertyName": "email", "propertyValue": "someone@example.org", "changeSource": "CRM_UI",
        }, separators=(",", ":")).replace('"eventId":0', '"eventId":%d').replace(
            '"occurredAt":0', '"occurredAt":%d').replace('"objectId":0', '"objectId":%d')
        self.counter = itertools.count(1)

    def body(self, object_ids: list[int] | None = None, subscription: str | None = None) -> bytes:
        now = int(time.time() * 1000)
        ids = object_ids or [next(self.counter) for _ in range(self.events)]
        parts = [self.template % (next(self.counter), now, oid) for oid in ids]
        out = "[" + ",".join(parts) + "]"
        if subscription:
            out = out.replace("contact.propertyChange", subscription)
        return out.encode()

    def headers(self, body: bytes) -> dict[str, str]:
        ts = str(int(time.time() * 1000))
        return {"Content-Type": "application/json", "Host": self.host, "X-HubSpot-Request-Timestamp": ts,
                "X-HubSpot-Signature-v3": sign_v3(self.uri, body, ts)}


class Client(threading.local):
    """One keep-alive connection per thread, reopened when the server closes it."""

    def __init__(self, host: str, port: int):
        self.host, self.port, self.conn = host, port, None

    def post(self, body: bytes, headers: dict) -> int:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                self.conn.request("POST", PATH, body=body, headers=headers)
                res = self.conn.getresponse()
                res.read()
                if res.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return res.status
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def cpu_seconds_by_process() -> dict[str, float]:
    """CPU time (user + system) so far of the processes that share the machine during phase 1, by
    role: gunicorn, postgres, redis-server, this generator. Linux /proc only; {} elsewhere."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(entry.name) == os.getpid():
            role = "generator"
        elif "gunicorn" in cmd:
            role = "gunicorn"
        elif cmd.startswith("postgres"):
            role = "postgres"
        elif "redis-server" in cmd:
            role = "redis"
        else:
            continue
        out[role] = out.get(role, 0.0) + seconds
    return out


class RawClient(threading.local):
    """Sends requests prepared as bytes (`prepared`) over one socket per thread, reopened whenever the
    server closes it (gunicorn's sync workers close after every answer): the generator's own CPU per
    request stays a small share of the machine the server runs on."""

    def __init__(self, port: int):
        self.port, self.sock, self.buf = port, None, b""

    def send(self, request: bytes) -> int:
        for attempt in range(2):
            if self.sock is None:
                self.sock, self.buf = socket.create_connection(("127.0.0.1", self.port), timeout=10), b""
            try:
                self.sock.sendall(request)
                return self._answer()
            except OSError:
                self.sock.close()
                self.sock = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _recv(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed before a full answer")
        self.buf += chunk

    def _answer(self) -> int:
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status, length, close = int(lines[0].split()[1]), 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        while len(self.buf) < length:
            self._recv()
        self.buf = self.buf[length:]
        if close:
            self.sock.close()
            self.sock = None
        return status


def prepared(body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {PATH} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def load_phase(port: int, requests_: list[bytes], rate: float, seconds: float, threads: int = 48) -> dict:
    """Open loop: request k is sent at start + k/rate (by whichever of `threads` is free)."""
    total = min(len(requests_), int(rate * seconds))
    tickets = itertools.count()
    lock = threading.Lock()
    service, from_due, statuses, errors = [], [], {}, []
    client = RawClient(port)
    start = time.perf_counter() + 0.2
    # Bounded: nothing is sent after this, and answers are awaited at most 10 s more.
    deadline = start + seconds * 1.5 + 2

    def run():
        while True:
            with lock:
                k = next(tickets)
            if k >= total or time.perf_counter() > deadline:
                return
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            try:
                status = client.send(requests_[k])
            except Exception as err:  # noqa: BLE001  counted and reported, the run goes on
                with lock:
                    errors.append(type(err).__name__)
                continue
            done = time.perf_counter()
            with lock:
                service.append((done - sent) * 1000)
                from_due.append((done - due) * 1000)
                statuses[status] = statuses.get(status, 0) + 1

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(max(0.1, deadline + 10 - time.perf_counter()))
    elapsed = time.perf_counter() - start
    return {"requests": len(service), "elapsed": elapsed, "statuses": statuses, "errors": errors,
            "service": service, "from_due": from_due, "unsent": max(0, total - len(service) - len(errors))}


def split_phase(db_url: str, env: dict[str, str], logs: Path, timeout: float = 600) -> tuple[float, int, int]:
    """The backlog phase 1 stored, split by 2 Celery workers: seconds until no delivery is left, the
    deliveries and the event rows written. Processing waits (the longest coalescing delay), so only
    the split is timed."""
    from sqlalchemy import func

    from crmsync.db import session_scope
    from crmsync.db.models import WebhookDelivery, WebhookEvent
    with session_scope(db_url) as s:
        deliveries = s.scalar(select(func.count()).select_from(WebhookDelivery))
    worker = start_celery_worker({**env, "CRMSYNC_INGEST_COALESCE_SECONDS": "60"}, logs, name="split",
                                 concurrency=2, queues="events")
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            with session_scope(db_url) as s:
                if not s.scalar(select(func.count()).select_from(WebhookDelivery)):
                    break
            time.sleep(0.1)  # a bench poll, at a tenth of a second's resolution
        took = time.perf_counter() - start
        with session_scope(db_url) as s:
            return took, deliveries, s.scalar(select(func.count()).select_from(WebhookEvent))
    finally:
        worker.stop()


def visible_phase(db_url: str, port: int, deliveries: Deliveries, sandbox, count: int, rate: float) -> list[float]:
    from crmsync.db import session_scope
    from crmsync.db.models import Contact
    client = Client("127.0.0.1", port)
    # The contacts exist in the CRM first (no webhook from the sandbox itself: none configured).
    tag = next(_runs)
    emails = [f"visible{tag}-{i}@example.org" for i in range(count)]
    ids = []
    for start in range(0, count, 100):
        inputs = [{"properties": {"email": e, "firstname": "V"}} for e in emails[start:start + 100]]
        ids += [int(r["id"]) for r in sandbox.create_many(inputs)]
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    stop = threading.Event()

    def poll():
        with session_scope(db_url) as s:
            while not stop.is_set():
                pending = [e for e in sent_at if e not in seen_at]
                if pending:
                    now = time.perf_counter()
                    for email in s.scalars(select(Contact.email).where(Contact.email.in_(pending))):
                        seen_at[email] = now
                    s.rollback()  # a fresh snapshot next round
                time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    begin = time.perf_counter()
    for i, (email, oid) in enumerate(zip(emails, ids, strict=True)):
        due = begin + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = deliveries.body([oid], subscription="contact.creation")
        sent_at[email] = time.perf_counter()
        status = client.post(body, deliveries.headers(body))
        assert status == 200, status
    deadline = time.perf_counter() + 30
    while len(seen_at) < len(sent_at) and time.perf_counter() < deadline:
        time.sleep(0.02)
    stop.set()
    poller.join(2)
    missing = len(sent_at) - len(seen_at)
    if missing:
        print(f"  {missing} of {len(sent_at)} contacts not visible within 30 s")
    return [(seen_at[e] - sent_at[e]) * 1000 for e in seen_at]


_runs = itertools.count()


class Sandbox:
    def __init__(self):
        from crmsync.sandbox.hubspot import create_app
        from crmsync.sandbox.server import SandboxServer
        self.app = create_app(rate_limit=0, oauth_rate_limit=0, search_rate_limit=0, daily_limit=0)
        self.server = SandboxServer(self.app)
        self.base_url = self.server.start()
        self.token = self.app.options.token
        self.portal_id = int(self.app.options.portal_id)

    def create_many(self, inputs: list[dict]) -> list[dict]:
        import requests
        res = requests.post(f"{self.base_url}/crm/v3/objects/contacts/batch/create", json={"inputs": inputs},
                            headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        res.raise_for_status()
        return res.json()["results"]

    def stop(self):
        self.app.webhooks.stop()
        self.server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (>1: gthread)")
    ap.add_argument("--visible", type=int, default=150, help="deliveries timed to a visible row (0: skip)")
    ap.add_argument("--split", action="store_true", help="also time 2 Celery workers splitting phase 1's backlog")
    ap.add_argument("--visible-rate", type=float, default=20)
    args = ap.parse_args()

    db_url = create_database("crmsync_bench")
    from crmsync.db.migrate import upgrade
    upgrade(db_url)
    redis_server = start_redis()
    sandbox = Sandbox()
    logs = Path(tempfile.mkdtemp(prefix="ingest_load_"))
    env = worker_environment(db_url, redis_server)
    os.environ.update(env)
    server = worker = None
    try:
        from crmsync.configs import create_config, create_tenant
        from crmsync.credentials import Vault
        from crmsync.db import session_scope
        with session_scope(db_url) as s:
            vault = Vault(TEST_SECRET_KEY)
            tenant = create_tenant(s, "bench")
            creds = vault.store(s, name="bench-hubspot", platform="hubspot", value={"token": sandbox.token})
            hook = vault.store(s, name="bench-hook", platform="webhook", value={"secret": SECRET})
            create_config(s, {"tenant_id": tenant.id, "platform": "hubspot", "credentials_vault_id": creds.id,
                              "webhook_secret_vault_id": hook.id, "account_id": str(sandbox.portal_id),
                              "api_base_url": sandbox.base_url})
        server = start_ingest_server(env, logs, workers=args.workers, threads=args.threads)
        port = int(server.url.rsplit(":", 1)[1])
        deliveries = Deliveries(sandbox.portal_id, f"127.0.0.1:{port}", args.events)
        mode = f"gthread x{args.threads}" if args.threads > 1 else "sync"
        print(f"ingest under gunicorn ({args.workers} workers, {mode}), PostgreSQL + Redis broker, "
              f"{os.cpu_count()} CPUs")

        def signed(n: int) -> list[bytes]:
            # Made and signed before the clock starts (v3 timestamps stay valid for 5 minutes).
            return [prepared(body, deliveries.headers(body)) for body in (deliveries.body() for _ in range(n))]
        load_phase(port, signed(50), 50, 1)  # warm-up: connections, caches, compiled statements
        requests_ = signed(int(args.rate * args.seconds))
        cpu_before = cpu_seconds_by_process()
        r = load_phase(port, requests_, args.rate, args.seconds)
        cpu_after = cpu_seconds_by_process()
        print(f"phase 1: {r['requests']} deliveries x {args.events} events in {r['elapsed']:.1f} s "
              f"= {r['requests'] / r['elapsed']:.0f} req/s ({r['requests'] * args.events / r['elapsed']:.0f} "
              f"events/s) at a target of {args.rate:.0f} req/s; statuses {r['statuses']}"
              + (f"; errors {len(r['errors'])} ({sorted(set(r['errors']))})" if r["errors"] else "")
              + (f"; {r['unsent']} not sent by the deadline (server saturated)" if r["unsent"] else ""))
        s_ms, d_ms = r["service"], r["from_due"]
        print(f"  latency (send -> answer): p50 {pct(s_ms, 50):.1f} ms, p90 {pct(s_ms, 90):.1f} ms, "
              f"p99 {pct(s_ms, 99):.1f} ms, max {max(s_ms):.1f} ms   (target p99 < 50 ms)")
        print(f"  latency from due time:    p50 {pct(d_ms, 50):.1f} ms, p99 {pct(d_ms, 99):.1f} ms")
        if cpu_after and r["requests"]:
            per = {k: (cpu_after[k] - cpu_before.get(k, 0.0)) * 1000 / r["requests"] for k in cpu_after}
            print("  CPU per request: " + ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(per.items()))
                  + " (bodies made and signed beforehand)")

        if args.split:
            took, stored, events = split_phase(db_url, env, logs)
            print(f"phase 1b: 2 Celery workers (prefork x2) split the {stored} stored deliveries (warm-up included) "
                  f"into {events} event rows in {took:.1f} s = {events / took:,.0f} events/s "
                  f"({stored / took:.0f} deliveries/s sustained)")
        if args.visible:
            # Phase 1's events name contacts that do not exist; leave them out of phase 2's way.
            redis_server.client(0).flushdb()
            with session_scope(db_url) as s:
                s.execute(text("UPDATE crm_webhook_events SET processed = true, outcome = 'bench'"))
            worker = start_celery_worker(env, logs, name="bench", concurrency=2)
            visible_phase(db_url, port, deliveries, sandbox, 10, args.visible_rate)  # warm-up
            v = visible_phase(db_url, port, deliveries, sandbox, args.visible, args.visible_rate)
            print(f"phase 2: {len(v)} single-event deliveries at {args.visible_rate:.0f}/s with 2 Celery workers "
                  f"(prefork x2): webhook -> row visible p50 {pct(v, 50):.0f} ms, p95 {pct(v, 95):.0f} ms, "
                  f"max {max(v) if v else float('nan'):.0f} ms   (target p95 < 1000 ms)")
    finally:
        if worker:
            worker.stop()
        if server:
            server.stop()
            errors = [line for line in server.log().splitlines() if "Traceback" in line or "ERROR" in line]
            if errors:
                print(f"gunicorn log has {len(errors)} error lines; see {server.log_path}")
        sandbox.stop()
        redis_server.process.terminate()
        redis_server.process.wait(10)
        drop_database(db_url)


if __name__ == "__main__":
    main()

"""Does one shared rate budget keep a fleet of workers inside a CRM's rate limit, and use all of it?

4 worker processes (spawned, as Celery's prefork pool or separate hosts would be) share one budget
in Redis and call a real HTTP server as fast as the budget lets them, for --seconds (default 20).
The server is the HubSpot sandbox (``crmsync.sandbox.hubspot``) with its limit set to 10 requests/s
(100 per rolling 10 s window); its own counters say the highest count seen in any window and how
many 429s it served. Without the sandbox a tiny counting server built in here stands in
(``--server builtin``). Then the same with two accounts (two portals), each with its own budget.

    .venv/bin/python bench/rate_budget.py [--seconds 20] [--server auto|sandbox|builtin]

"Allowed" is the most a rolling window permits in the run: capacity x ceil(seconds / window).
"""
from __future__ import annotations

import argparse
import http.server
import json
import math
import multiprocessing
import socketserver
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import requests

from crmsync.platforms.hubspot.errors import error_for
from crmsync.platforms.hubspot.limits import observations
from crmsync.ratelimit import STANDARD, Limit, RateLimitWait, budget_for_url

TOKEN = "pat-na1-bench-0000"


def max_in_window(times: list[float], interval: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - interval:
            start += 1
        best = max(best, end - start + 1)
    return best


# ----------------------------------------------------------------------------------------- servers


class BuiltinServer:
    """Counts arrivals, answers 429 (HubSpot's body) past ``capacity`` per rolling ``interval``."""

    def __init__(self, capacity: int, interval: float) -> None:
        self.capacity, self.interval = capacity, interval
        self.arrivals: list[float] = []
        self.rejected = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                with outer._lock:
                    now = time.monotonic()
                    recent = [t for t in outer.arrivals[-outer.capacity:] if t > now - outer.interval]
                    if len(recent) >= outer.capacity:
                        outer.rejected += 1
                        status, remaining = 429, 0
                    else:
                        outer.arrivals.append(now)
                        status, remaining = 200, outer.capacity - len(recent) - 1
                body = b'{"results":[]}' if status == 200 else json.dumps({
                    "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                    "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-HubSpot-RateLimit-Max", str(outer.capacity))
                self.send_header("X-HubSpot-RateLimit-Remaining", str(remaining))
                self.send_header("X-HubSpot-RateLimit-Interval-Milliseconds", str(int(outer.interval * 1000)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def report(self) -> dict:
        return {"peak": max_in_window(self.arrivals, self.interval), "rejected": self.rejected,
                "accepted": len(self.arrivals), "source": "built-in counting server"}


class SandboxPortal:
    """The HubSpot sandbox, limit set through its /_sandbox/ admin API, read back from its counters."""

    def __init__(self, capacity: int, interval: float, portal_id: int) -> None:
        from crmsync.sandbox.hubspot import create_app
        from crmsync.sandbox.server import SandboxServer

        self.capacity, self.interval = capacity, interval
        self._server = SandboxServer(create_app(token=TOKEN, portal_id=portal_id, contacts=3, seed=1))

    def start(self) -> str:
        self.base_url = self._server.start()
        config = requests.post(f"{self.base_url}/_sandbox/config", timeout=10, json={
            "rate_limit": self.capacity, "rate_window_ms": int(self.interval * 1000)})
        config.raise_for_status()
        return self.base_url

    def stop(self) -> None:
        self._server.stop()

    def report(self) -> dict:
        counters = requests.get(f"{self.base_url}/_sandbox/requests", params={"entries": 5000}, timeout=10).json()
        arrivals = [e["t"] for e in counters["entries"] if e.get("status") == 200]
        return {"peak": counters["peaks"]["ten_secondly"], "rejected": counters["rejected"]["ten_secondly"],
                "accepted": counters["by_status"].get("200", 0),
                "peak_from_request_log": max_in_window(arrivals, self.interval),
                "source": "HubSpot sandbox /_sandbox/requests"}


# ------------------------------------------------------------------------------------------ workers


def _call_loop(budget, account: str, base_url: str, limit: Limit, deadline: float, out: list) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    while (left := deadline - time.time()) > 0:
        try:
            grant = budget.acquire("hubspot", account, STANDARD, limit, max_wait=left)
        except RateLimitWait:
            break
        response = session.get(f"{base_url}/crm/v3/objects/contacts", params={"limit": 1}, timeout=10)
        budget.observe("hubspot", account, observations(response.headers, STANDARD), grant=grant)
        if response.status_code == 429:
            rejected = error_for(429, response.content, response.headers)
            budget.penalize("hubspot", account, rejected.retry_after, kind=STANDARD, limit=limit)
        # grant to response, on one machine's clock: bounds how late a call reaches the server
        out.append((account, grant.at, response.status_code, time.time() - grant.at))


def _worker(redis_url, prefix, targets, capacity, interval, seconds, ready, go, start_at, results) -> None:
    budget = budget_for_url(redis_url, key_prefix=prefix)
    limit = Limit(capacity, interval)
    for account, _ in targets:
        budget.remaining("hubspot", account, STANDARD, limit)  # connect and load the script before the start
    ready.put(1)
    go.wait(60)
    time.sleep(max(0.0, start_at.value - time.time()))
    deadline = start_at.value + seconds
    calls: list = []
    threads = [threading.Thread(target=_call_loop, args=(budget, a, url, limit, deadline, calls))
               for a, url in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(calls)


def _spread(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)
    return {"p50": round(values[len(values) // 2], 1), "p99": round(values[int(len(values) * 0.99)], 1),
            "max": round(values[-1], 1)}


def run_scenario(accounts: int, args, server_kind: str) -> list[dict]:
    capacity, interval = int(args.rate * args.window), float(args.window)
    servers = []
    for i in range(accounts):
        if server_kind == "sandbox":
            servers.append(SandboxPortal(capacity, interval, portal_id=70000000 + i))
        else:
            servers.append(BuiltinServer(capacity, interval))
    targets = [(str(70000000 + i), s.start()) for i, s in enumerate(servers)]
    prefix = f"bench:rl:{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    start_at = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=_worker, args=(args.redis_url, prefix, targets, capacity, interval, args.seconds,
                                               ready, go, start_at, results)) for _ in range(args.processes)]
    try:
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=60)
        start_at.value = time.time() + 0.2
        go.set()
        calls = [c for _ in procs for c in results.get(timeout=args.seconds + 60)]
        for p in procs:
            p.join(timeout=10)
        rows = []
        for (account, _), server in zip(targets, servers, strict=True):
            mine = [c for c in calls if c[0] == account]
            allowed = capacity * math.ceil(args.seconds / interval - 1e-9)
            report = server.report()
            rows.append({
                "account": account,
                "limit": f"{capacity} per {interval:g} s",
                "server_peak_in_any_window": report["peak"],
                "server_429s": report["rejected"],
                "accepted": report["accepted"],
                "allowed": allowed,
                "used_pct": round(100 * report["accepted"] / allowed, 1),
                "budget_peak_in_any_window": max_in_window([c[1] for c in mine], interval),
                "calls_by_status": {str(s): sum(1 for c in mine if c[2] == s) for s in {c[2] for c in mine}},
                "grant_to_response_ms": _spread([c[3] * 1000 for c in mine]),
                **{k: v for k, v in report.items() if k not in ("peak", "rejected", "accepted")},
            })
        return rows
    finally:
        for s in servers:
            s.stop()
        client = redis.Redis.from_url(args.redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second allowed")
    parser.add_argument("--window", type=float, default=10.0, help="rolling window in seconds (HubSpot: 10)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--server", choices=["auto", "sandbox", "builtin"], default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    args = parser.parse_args(argv)

    server_kind = args.server
    if server_kind == "auto":
        try:
            import crmsync.sandbox.hubspot  # noqa: F401
            server_kind = "sandbox"
        except ImportError:
            server_kind = "builtin"

    out = {"processes": args.processes, "seconds": args.seconds, "server": server_kind,
           "one_account": run_scenario(1, args, server_kind), "two_accounts": run_scenario(2, args, server_kind)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.processes} processes, {args.seconds:g} s, server: {server_kind}")
    for name in ("one_account", "two_accounts"):
        for row in out[name]:
            print(f"  {name:12} account {row['account']}: limit {row['limit']}; highest in any window "
                  f"{row['server_peak_in_any_window']} (server), {row['budget_peak_in_any_window']} (budget); "
                  f"429s {row['server_429s']}; used {row['accepted']}/{row['allowed']} = {row['used_pct']}%; "
                  f"grant->response ms {row['grant_to_response_ms']}")
    ok = all(r["server_peak_in_any_window"] <= int(args.rate * args.window) and r["server_429s"] == 0
             and r["used_pct"] >= 95 for name in ("one_account", "two_accounts") for r in out[name])
    print("OK: none over the limit, >= 95% used" if ok else "NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Requests/s of HubSpot sandbox list calls: GET /crm/v3/objects/contacts?limit=100 with properties, over
keep-alive with requests.Session, paging through all contacts repeatedly.

Run: .venv/bin/python bench/sandbox_list.py [--contacts 10000] [--seconds 5] [--clients 1]
         [--processes N]   # the sandbox in its own process, N client processes (as a CRM and its callers)
"""
from __future__ import annotations

import argparse
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from crmsync.sandbox.hubspot import create_app
from crmsync.sandbox.server import SandboxServer

PROPS = "email,firstname,lastname,phone,jobtitle,city,country,lifecyclestage,crm_tier,crm_score"


def run_client(base: str, token: str, seconds: float, out: list) -> None:
    s = requests.Session()
    s.trust_env = False  # else requests re-reads every proxy variable of os.environ on each request
    s.headers["Authorization"] = f"Bearer {token}"
    n = records = 0
    after = None
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        params = {"limit": 100, "properties": PROPS}
        if after:
            params["after"] = after
        r = s.get(f"{base}/crm/v3/objects/contacts", params=params)
        r.raise_for_status()
        data = r.json()
        n += 1
        records += len(data["results"])
        after = data.get("paging", {}).get("next", {}).get("after")
    out.append((n, records))


def run_raw_client(base: str, token: str, seconds: float, out: list) -> None:
    """Same loop on a bare http.client connection: shows what the server can serve when the client is
    not the bottleneck (requests itself costs ~0.5 ms per 45 kB response)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    n = records = 0
    after = ""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        path = f"/crm/v3/objects/contacts?limit=100&properties={PROPS}" + (f"&after={after}" if after else "")
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        n += 1
        records += len(data["results"])
        after = data.get("paging", {}).get("next", {}).get("after", "")
    out.append((n, records))


def _client_process(client: str, base: str, token: str, seconds: float, queue) -> None:
    out: list = []
    (run_client if client == "requests" else run_raw_client)(base, token, seconds, out)
    queue.put(out[0])


def separate_processes(args) -> None:
    """The sandbox served by `crmsync sandbox serve` in its own process, called by N client
    processes: the server's own throughput, not one Python process sharing its GIL with its caller."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "pat-na1-bench-0000"
    crmsync = Path(sys.executable).parent / "crmsync"
    server = subprocess.Popen([str(crmsync), "sandbox", "serve", "--platform", "hubspot", "--port", str(port),
                               "--token", token, "--seed", "1", "--contacts", str(args.contacts),
                               "--companies", "200", "--rate-limit", "0", "--daily-limit", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(f"{base}/_sandbox/", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise SystemExit("the sandbox did not start") from None
                time.sleep(0.2)
        run_client(base, token, 1.0, [])  # warm the per-record JSON cache
        queue = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=_client_process, args=(args.client, base, token, args.seconds, queue))
                 for _ in range(args.processes)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        results = [queue.get(timeout=args.seconds + 60) for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - t0
        reqs, recs = sum(r[0] for r in results), sum(r[1] for r in results)
        print(f"contacts={args.contacts} server=own process client={args.client} processes={args.processes} "
              f"seconds={elapsed:.2f}")
        print(f"list requests/s (limit=100, {len(PROPS.split(','))} properties): {reqs / elapsed:,.0f}")
        print(f"records/s: {recs / elapsed:,.0f}")
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--client", choices=["requests", "raw"], default="requests")
    ap.add_argument("--processes", type=int, default=0, help="sandbox in its own process, N client processes")
    args = ap.parse_args()
    if args.processes:
        separate_processes(args)
        return
    app = create_app(contacts=args.contacts, companies=200, seed=1, rate_limit=0, daily_limit=0)
    server = SandboxServer(app)
    base = server.start()
    try:
        client = run_client if args.client == "requests" else run_raw_client
        client(base, app.options.token, 0.5, [])  # warm the per-record JSON cache
        results: list = []
        threads = [threading.Thread(target=client, args=(base, app.options.token, args.seconds, results))
                   for _ in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        reqs = sum(r[0] for r in results)
        recs = sum(r[1] for r in results)
        print(f"contacts={args.contacts} client={args.client} clients={args.clients} seconds={elapsed:.2f}")
        print(f"list requests/s (limit=100, {len(PROPS.split(','))} properties): {reqs / elapsed:,.0f}")
        print(f"records/s: {recs / elapsed:,.0f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

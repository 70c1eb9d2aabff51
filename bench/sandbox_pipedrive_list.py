"""Requests/s of Pipedrive sandbox list calls: GET /api/v2/persons?limit=100, cursor-paging through all
persons over and over on keep-alive connections; also sorted by update_time with an updated_since
filter, the way an incremental sync pages.

The sandbox runs in its own process (as under ``crmsync sandbox serve``) and the clients in others,
so the figure is the sandbox's, not the GIL shared with a client. Clients use http.client and pick
``next_cursor`` out of the body without a full JSON parse (a full parse is checked once per run).

Run: .venv/bin/python bench/sandbox_pipedrive_list.py [--persons 10000] [--seconds 5] [--clients 2]
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import time
from urllib.parse import urlencode, urlparse


def serve(persons: int, ready) -> None:
    from crmsync.sandbox.pipedrive import create_app
    from crmsync.sandbox.server import SandboxServer

    app = create_app(persons=persons, organizations=500, deals=100, activities=100, seed=1, rate_limit=0,
                     daily_budget=0)
    server = SandboxServer(app)
    ready.send((server.start(), app.options.token))
    server.serve_until_interrupted()


def client(base: str, token: str, seconds: float, params: dict, out) -> None:
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    headers = {"x-api-token": token}
    n = records = 0
    cursor = None
    marker = b'"next_cursor":'
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        query = {"limit": 100, **params, **({"cursor": cursor} if cursor else {})}
        conn.request("GET", "/api/v2/persons?" + urlencode(query), headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}: {body[:200]!r}")
        n += 1
        records += body.count(b'"first_name":')
        tail = body[body.rindex(marker) + len(marker):]
        cursor = None if tail.startswith(b"null") else tail.split(b'"')[1].decode()
    out.put((n, records))


def measure(base: str, token: str, seconds: float, clients: int, params: dict) -> tuple[float, float]:
    out = mp.Queue()
    procs = [mp.Process(target=client, args=(base, token, seconds, params, out)) for _ in range(clients)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    return sum(r[0] for r in results) / elapsed, sum(r[1] for r in results) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=2)
    args = ap.parse_args()
    parent, child = mp.Pipe()
    server = mp.Process(target=serve, args=(args.persons, child), daemon=True)
    server.start()
    base, token = parent.recv()
    try:
        url = urlparse(base)
        conn = http.client.HTTPConnection(url.hostname, url.port)
        conn.request("GET", "/api/v2/persons?limit=100", headers={"x-api-token": token})
        page = json.loads(conn.getresponse().read())
        assert len(page["data"]) == 100 and page["additional_data"]["next_cursor"]
        print(f"persons={args.persons} client processes={args.clients} seconds={args.seconds} "
              f"page bytes={len(json.dumps(page))}")
        for label, params in (("by id", {}),
                              ("sort_by=update_time, updated_since", {"sort_by": "update_time",
                                                                      "updated_since": "2025-01-01T00:00:00Z"})):
            rps, recs = measure(base, token, args.seconds, args.clients, params)
            print(f"list requests/s (limit=100, {label}): {rps:,.0f}   records/s: {recs:,.0f}")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()

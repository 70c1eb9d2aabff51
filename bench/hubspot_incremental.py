"""HubSpot incremental and full listing through HubSpotAdapter against the local sandbox.

Prints, per scenario: records listed, duplicates, HTTP requests (search / other), wall time and
records per second. Scenarios: 12,000 contacts sharing one lastmodifieddate (the 10,000-cap
case), 20,000 contacts with spread timestamps (incremental), and the same 20,000 as a full
listing (list endpoint). Run: .venv/bin/python bench/hubspot_incremental.py
"""
from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crmsync.platforms.hubspot import HubSpotAdapter
from crmsync.sandbox.hubspot.app import create_app
from crmsync.sandbox.server import SandboxServer


def run(app, base_url, entity, since, page_size):
    app.log.reset()
    adapter = HubSpotAdapter(credentials={"token": app.options.token}, base_url=base_url)
    started = time.perf_counter()
    cursor, ids, requests = adapter.start_cursor(entity, since), [], 0
    while cursor is not None:
        page = adapter.list_changed(entity, cursor, page_size)
        ids.extend(r.external_id for r in page.records)
        requests += page.requests
        cursor = page.cursor
    elapsed = time.perf_counter() - started
    by_endpoint = app.counters(0)["by_endpoint"]
    searches = sum(v for k, v in by_endpoint.items() if "search" in k)
    statuses = app.counters(0)["by_status"]
    return len(ids), len(ids) - len(set(ids)), requests, searches, elapsed, statuses


def main() -> None:
    app = create_app(rate_limit=0, search_rate_limit=0, daily_limit=0, index_lag_ms=0)
    server = SandboxServer(app)
    base_url = server.start()
    try:
        scenarios = []
        app.state.reset()
        app.seed(contacts=12_000, same_modified=12_000)
        with app.state.lock:
            stamp = next(iter(app.state.records["contacts"].values())).updated
        scenarios.append(("12,000 contacts, one lastmodifieddate (search, pages of 200)", "contact",
                          datetime.fromtimestamp(stamp / 1000, UTC), 200))
        for label, entity, since, size in scenarios:
            print(label, "->", fmt(*run(app, base_url, entity, since, size)))
        app.state.reset()
        app.seed(seed=1, contacts=20_000, companies=500)
        print("20,000 contacts, spread timestamps (search, pages of 200) ->",
              fmt(*run(app, base_url, "contact", datetime(2000, 1, 1, tzinfo=UTC), 200)))
        print("20,000 contacts, full listing (list endpoint, pages of 100) ->",
              fmt(*run(app, base_url, "contact", None, 100)))
    finally:
        server.stop()


def fmt(n, dups, requests, searches, elapsed, statuses) -> str:
    return (f"{n} records, {dups} duplicates, {requests} requests ({searches} searches), "
            f"{elapsed:.2f} s, {n / elapsed:,.0f} records/s, statuses {statuses}")


if __name__ == "__main__":
    main()

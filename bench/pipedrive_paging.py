"""How fast does the Pipedrive adapter pull? Pages of 500 persons from the local Pipedrive sandbox,
three ways: the bare client (HTTP + JSON), the adapter (plus mapping to unified records with custom
fields by name), and the adapter with the in-process rate budget switched on (plus one budget
grant and one header observation per request). Also the push side: creates per second (Pipedrive
has no batch create, so one request per record).

    .venv/bin/python bench/pipedrive_paging.py [--persons 20000] [--creates 500]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crmsync.cache import MetadataCache
from crmsync.platforms.base import OutboundRecord
from crmsync.platforms.pipedrive import PipedriveAdapter
from crmsync.platforms.pipedrive.client import PipedriveClient
from crmsync.ratelimit import Limit, RateBudget
from crmsync.sandbox.pipedrive import create_app
from crmsync.sandbox.server import SandboxServer


def drain(adapter: PipedriveAdapter, entity: str, page_size: int) -> int:
    cursor, n = adapter.start_cursor(entity, None), 0
    while cursor is not None:
        page = adapter.list_changed(entity, cursor, page_size)
        n += len(page.records)
        cursor = page.cursor
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--creates", type=int, default=500)
    args = parser.parse_args()

    app = create_app(rate_limit=0, daily_budget=0, seed=3, persons=args.persons, organizations=200, deals=0,
                     activities=0)
    server = SandboxServer(app)
    base_url = server.start()
    try:
        client = PipedriveClient(app.options.token, base_url=base_url)
        started = time.perf_counter()
        n = sum(1 for _ in client.iter_records("person", limit=500))
        bare = n / (time.perf_counter() - started)

        adapter = PipedriveAdapter(credentials={"api_token": app.options.token}, base_url=base_url,
                                   cache=MetadataCache())
        adapter.metadata("contact")  # metadata once, outside the timing
        started = time.perf_counter()
        mapped = drain(adapter, "contact", 500)
        mapped_rate = mapped / (time.perf_counter() - started)

        budgeted = PipedriveAdapter(credentials={"api_token": app.options.token}, base_url=base_url,
                                    cache=MetadataCache(), budget=RateBudget(None))
        budgeted.client._limits["standard"] = Limit(10_000, 2.0)
        budgeted.client._limits["daily"] = Limit.daily(10_000_000)
        budgeted.metadata("contact")
        started = time.perf_counter()
        drain(budgeted, "contact", 500)
        budget_rate = mapped / (time.perf_counter() - started)

        records = [OutboundRecord(f"L{i}", {"first_name": "Bench", "last_name": f"Person {i}",
                                            "email": f"bench{i}@example.org", "custom_fields": {"Tier": "Gold"}})
                   for i in range(args.creates)]
        started = time.perf_counter()
        results = adapter.create_many("contact", records)
        create_rate = len(results) / (time.perf_counter() - started)
        assert all(r.ok for r in results)
    finally:
        server.stop()
        app.close()

    print(f"persons listed: {n} (pages of 500)")
    print(f"bare client paging:            {bare:10,.0f} records/s")
    print(f"adapter list_changed + mapping: {mapped_rate:9,.0f} records/s")
    print(f"  ... with in-process budget:  {budget_rate:10,.0f} records/s")
    print(f"adapter create_many (1 req/record): {create_rate:6,.0f} records/s ({args.creates} creates)")


if __name__ == "__main__":
    main()

"""Full pull of N sandbox HubSpot contacts into PostgreSQL in one process (no rate limit), then
an incremental sync of 100 changes among them: records/s, and the requests the incremental took.

    .venv/bin/python bench/sync_pull.py [--contacts 20000] [--changes 100]

Needs the local PostgreSQL (CRMSYNC_TEST_DATABASE_URL or postgres@127.0.0.1); makes and drops
its own database.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=20000)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--page-size", type=int, default=500)
    args = ap.parse_args()

    os.environ["CRMSYNC_SECRET_KEY"] = "bench-secret-key-0123456789abcdef"
    os.environ["CRMSYNC_PAGE_SIZE"] = str(args.page_size)
    for var in ("CRMSYNC_BROKER_URL", "CRMSYNC_REDIS_URL"):
        os.environ.pop(var, None)
    from tests.fixtures.db import create_database, drop_database
    url = create_database("crmsync_bench")
    os.environ["CRMSYNC_DATABASE_URL"] = url
    from crmsync.configs import create_config, create_tenant
    from crmsync.credentials import Vault
    from crmsync.db import session_scope
    from crmsync.db.migrate import upgrade
    from crmsync.sandbox.hubspot import create_app
    from crmsync.sandbox.server import SandboxServer
    from crmsync.sync.orchestrator import run_job_inline

    upgrade(url)
    app = create_app(seed=1, contacts=args.contacts, rate_limit=0, search_rate_limit=0, daily_limit=0)
    server = SandboxServer(app)
    base = server.start()
    try:
        with session_scope() as s:
            tenant = create_tenant(s, "bench")
            secret = Vault().store(s, name="bench", platform="hubspot", value={"token": app.options.token, "rate_limits": "none"})
            config = create_config(s, {"tenant_id": tenant.id, "platform": "hubspot",
                                       "credentials_vault_id": secret.id, "api_base_url": base,
                                       "account_id": str(app.options.portal_id), "entities": ["contacts"],
                                       "sync_direction": "pull"})
            config_id = config.id
        t0 = time.perf_counter()
        job = run_job_inline(config_id, full=True)
        took = time.perf_counter() - t0
        assert job["status"] == "succeeded", job
        print(f"full pull: {job['contacts_synced']} contacts in {took:.2f} s = "
              f"{job['contacts_synced'] / took:,.0f} records/s (page size {args.page_size})")

        from crmsync.sandbox.hubspot import objects as ot
        contacts = ot.lookup("contacts")
        ids = sorted(app.state.records["contacts"])[: args.changes]
        for n, rid in enumerate(ids):
            app.state.update(contacts, str(rid), {"jobtitle": f"Changed {n}"}, source="CRM_UI")
        log_before = app.log.snapshot(0)["total"]
        t0 = time.perf_counter()
        job = run_job_inline(config_id)
        took = time.perf_counter() - t0
        snap = app.log.snapshot(50)
        print(f"incremental: {job['contacts_synced']} of {args.changes} changes applied in {took:.2f} s, "
              f"{snap['total'] - log_before} requests:")
        for e in snap["entries"][-(snap["total"] - log_before):]:
            print("   ", e.get("method"), e.get("endpoint") or e.get("path"), e.get("status"))
    finally:
        server.stop()
        drop_database(url)


if __name__ == "__main__":
    main()

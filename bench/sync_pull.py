"""Full pull of N sandbox HubSpot contacts into PostgreSQL by one crmsync process (no rate limit),
then an incremental sync of 100 changes among them: records/s, and the requests the incremental
took. The sandbox runs in its own process, as a CRM would.

    .venv/bin/python bench/sync_pull.py [--contacts 20000] [--changes 100] [--page-size N]

The process runs as `crmsync sync run --inline` does: start-up objects settled, the next unit's
pages read ahead. The unit of work is CRMSYNC_PAGE_SIZE's default unless --page-size is given.

Needs the local PostgreSQL (CRMSYNC_TEST_DATABASE_URL or postgres@127.0.0.1); makes and drops
its own database.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOKEN = "pat-na1-bench-0000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sandbox(contacts: int, *extra: str) -> tuple[subprocess.Popen, str]:
    """The sandbox HubSpot with `contacts` contacts in its own process, no limits; `extra` serve flags."""
    port = free_port()
    crmsync = Path(sys.executable).parent / "crmsync"
    proc = subprocess.Popen([str(crmsync), "sandbox", "serve", "--platform", "hubspot", "--port", str(port),
                             "--token", TOKEN, "--seed", "1", "--contacts", str(contacts), "--companies", "0",
                             "--deals", "0", "--tasks", "0", "--notes", "0", "--rate-limit", "0",
                             "--daily-limit", "0", "--search-rate-limit", "0", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120 + contacts / 1000     # seeding 200,000 takes a while
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/_sandbox/", timeout=1).raise_for_status()
            return proc, base
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the sandbox did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=20000)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--page-size", type=int, default=None, help="records per unit (default: the setting's)")
    args = ap.parse_args()

    os.environ["CRMSYNC_SECRET_KEY"] = "bench-secret-key-0123456789abcdef"
    if args.page_size is not None:
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
    from crmsync.runtime import settle_startup_objects
    from crmsync.settings import get_settings
    from crmsync.sync.orchestrator import run_job_inline

    upgrade(url)
    sandbox, base = start_sandbox(args.contacts)
    admin = requests.Session()
    try:
        portal = admin.get(f"{base}/_sandbox/").json()["portalId"]
        with session_scope() as s:
            tenant = create_tenant(s, "bench")
            # The sandbox runs without limits, so our own budget is off for it too.
            secret = Vault().store(s, name="bench", platform="hubspot",
                                   value={"token": TOKEN, "rate_limits": "none"})
            config = create_config(s, {"tenant_id": tenant.id, "platform": "hubspot",
                                       "credentials_vault_id": secret.id, "api_base_url": base,
                                       "account_id": str(portal), "entities": ["contacts"],
                                       "sync_direction": "pull"})
            config_id = config.id
        settle_startup_objects()          # as `crmsync sync run --inline` does before it runs
        t0 = time.perf_counter()
        job = run_job_inline(config_id, full=True)
        took = time.perf_counter() - t0
        assert job["status"] == "succeeded", job
        print(f"full pull: {job['contacts_synced']} contacts in {took:.2f} s = "
              f"{job['contacts_synced'] / took:,.0f} records/s (unit of work {get_settings().page_size} records)")

        ids = [r["id"] for r in admin.get(f"{base}/_sandbox/records/contacts").json()["results"]][: args.changes]
        for n, rid in enumerate(ids):
            admin.patch(f"{base}/_sandbox/records/contacts/{rid}",
                        json={"properties": {"jobtitle": f"Changed {n}"}}).raise_for_status()
        before = admin.get(f"{base}/_sandbox/requests?entries=0").json()["total"]
        t0 = time.perf_counter()
        job = run_job_inline(config_id)
        took = time.perf_counter() - t0
        snap = admin.get(f"{base}/_sandbox/requests?entries=50").json()
        spent = snap["total"] - before - 1      # less the admin read itself
        print(f"incremental: {job['contacts_synced']} of {args.changes} changes applied in {took:.2f} s, "
              f"{spent} requests:")
        for e in [e for e in snap["entries"] if "_sandbox" not in str(e.get("path"))][-spent:]:
            print("   ", e.get("method"), e.get("endpoint") or e.get("path"), e.get("status"))
    finally:
        sandbox.terminate()
        sandbox.wait(10)
        drop_database(url)


if __name__ == "__main__":
    main()

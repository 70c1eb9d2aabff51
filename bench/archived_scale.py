"""Incremental cost at scale: a HubSpot portal of 200,000 contacts of which 100,000 are archived.
After the full pull, 50 contacts change; the scheduled incremental sync (all eight HubSpot object
types enabled) must cost at most 10 requests, whatever the archived history. Then the deletion
sweep runs (`sync run --sweep`), as beat runs it daily: its request count is about records/100.
Everything runs through the `crmsync` command, as a user would; requests are counted by the server.

    .venv/bin/python bench/archived_scale.py [--contacts 200000] [--archived 100000] [--changes 50]

The server is the sandbox HubSpot in its own process (`--serialise-per-request`, no rate limits).
crmsync runs as deployed, with Redis (CRMSYNC_BENCH_REDIS_URL, default redis://127.0.0.1:6379/14)
holding the metadata cache every process shares; without it each process would read the portal's
property definitions again. Needs the local PostgreSQL; makes and drops its own database.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.sync_pull import TOKEN
from bench.whole_process import CRMSYNC, start_server


def served(admin: requests.Session, base: str) -> Counter:
    """Requests the server answered, by endpoint (its admin API left out)."""
    counts = admin.get(f"{base}/_sandbox/requests?entries=0").json()["by_endpoint"]
    return Counter({k: v for k, v in counts.items() if "_sandbox" not in k})


def crmsync(env: dict, *args: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    done = subprocess.run([str(CRMSYNC), *args, "--json"], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"crmsync {' '.join(args)} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=200_000)
    ap.add_argument("--archived", type=int, default=100_000)
    ap.add_argument("--changes", type=int, default=50)
    args = ap.parse_args()

    from tests.fixtures.db import create_database, drop_database
    url = create_database("crmsync_bench")
    env = {**os.environ, "CRMSYNC_DATABASE_URL": url, "CRMSYNC_SECRET_KEY": "bench-secret-key-0123456789abcdef"}
    env.pop("CRMSYNC_BROKER_URL", None)
    env["CRMSYNC_REDIS_URL"] = os.environ.get("CRMSYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    os.environ.update({k: env[k] for k in ("CRMSYNC_DATABASE_URL", "CRMSYNC_SECRET_KEY")})
    import redis
    cache = redis.Redis.from_url(env["CRMSYNC_REDIS_URL"])
    server, base = start_server(args.contacts)
    ours = None
    admin = requests.Session()
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {TOKEN}"
    try:
        subprocess.run([str(CRMSYNC), "db", "upgrade"], env=env, check=True, capture_output=True)
        ids = [r["id"] for r in admin.get(f"{base}/_sandbox/records/contacts").json()["results"]]
        archived = ids[: args.archived * 2: 2] if args.archived * 2 <= len(ids) else ids[: args.archived]
        for i in range(0, len(archived), 100):      # every other id: archived records sit between live ones
            api.post(f"{base}/crm/v3/objects/contacts/batch/archive",
                     json={"inputs": [{"id": str(x)} for x in archived[i:i + 100]]}).raise_for_status()
        live = len(ids) - len(archived)
        print(f"portal: {len(ids):,} contacts, {len(archived):,} archived, {live:,} live")

        from crmsync.configs import create_config, create_tenant
        from crmsync.credentials import Vault
        from crmsync.db import session_scope
        portal = admin.get(f"{base}/_sandbox/").json()["portalId"]
        ours = f"crmsync:cache:hubspot:{portal}:*"
        for key in cache.scan_iter(ours):        # another run's metadata would hide the first read
            cache.delete(key)
        with session_scope() as s:
            tenant = create_tenant(s, "bench")
            secret = Vault().store(s, name="bench", platform="hubspot", value={"token": TOKEN, "rate_limits": "none"})
            config_id = create_config(s, {"tenant_id": tenant.id, "platform": "hubspot", "account_id": str(portal),
                                          "credentials_vault_id": secret.id, "api_base_url": base}).id

        job, took = crmsync(env, "sync", "run", config_id, "--inline")
        assert job["status"] == "succeeded" and job["contacts_synced"] == live, job
        print(f"full pull: {live:,} contacts in {took:.1f} s (whole process)")

        gone = set(archived)
        kept = [x for x in ids if x not in gone]
        for n, rid in enumerate(kept[: args.changes]):
            admin.patch(f"{base}/_sandbox/records/contacts/{rid}",
                        json={"properties": {"jobtitle": f"Changed {n}"}}).raise_for_status()
        before = served(admin, base)
        job, took = crmsync(env, "sync", "run", config_id, "--inline")
        spent = served(admin, base) - before
        assert job["status"] == "succeeded" and job["contacts_synced"] == args.changes, job
        print(f"incremental of {args.changes} changes, all 8 HubSpot object types: {sum(spent.values())} requests "
              f"in {took:.1f} s (goal: at most 10)")
        for endpoint, n in sorted(spent.items()):
            print(f"    {n:>4}  {endpoint}")

        before = served(admin, base)
        job, took = crmsync(env, "sync", "run", config_id, "--sweep", "--inline")
        spent = served(admin, base) - before
        assert job["status"] == "succeeded", job
        drift = job["drift"]["contacts"]
        print(f"deletion sweep: {sum(spent.values())} requests in {took:.1f} s for {live:,} live contacts "
              f"(records/100 = {live // 100:,}); contacts: listed {drift['listed']:,}, remote only "
              f"{drift['remote_only']}, local only {drift['local_only']}, diverged {drift['diverged']}")
        for endpoint, n in sorted(spent.items()):
            print(f"    {n:>4}  {endpoint}")
    finally:
        for key in cache.scan_iter(ours) if ours else ():
            cache.delete(key)
        server.terminate()
        server.wait(10)
        drop_database(url)


if __name__ == "__main__":
    main()

"""Fairness: a small tenant's scheduled sync, solo and while another tenant's 100,000-record
backfill runs on the same workers (2 workers x 2 processes consuming events,syncs,backfills).

    .venv/bin/python bench/workers_fairness.py [--big 100000] [--small 1000] [--rounds 3]

The backfill is a full job (its page tasks go to the `backfills` queue); the small tenant's job
comes from a beat tick (`dispatch_due_syncs`, queue `syncs`). Ratio = contended / solo wall time
from the tick to the job's success (goal: <= 2).
"""
from __future__ import annotations

import argparse
import statistics
import time

from workers_common import due_config, environment, job_for, start_timed_sandbox, wait_job


def tick(db_url) -> list[str]:
    from crmsync.db import session_scope
    from crmsync.sync.schedule import dispatch_due_syncs
    with session_scope(db_url) as s:
        return dispatch_due_syncs(s)


def pages(db_url, job_id) -> int:
    from sqlalchemy import func, select

    from crmsync.db import session_scope
    from crmsync.db.models import SyncJobStep
    with session_scope(db_url) as s:
        return s.scalar(select(func.coalesce(func.sum(SyncJobStep.pages), 0)).where(SyncJobStep.job_id == job_id))


def small_sync(db_url, account) -> float:
    due_config(db_url, account, sync_frequency_minutes=60)
    t0 = time.monotonic()
    (job_id,) = tick(db_url)
    job = wait_job(db_url, job_id, timeout=300)
    assert job["status"] == "succeeded", job
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--big", type=int, default=100_000)
    p.add_argument("--small", type=int, default=1_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    big, big_log = start_timed_sandbox("pipedrive", 9300, seed=7, persons=args.big, organizations=200, deals=0,
                                       activities=0, rate_limit=0, oauth_rate_limit=0, daily_budget=0)
    smalls = [start_timed_sandbox("hubspot", 9400 + i, seed=8, contacts=args.small, companies=args.small // 10,
                                  deals=args.small // 5, rate_limit=0, search_rate_limit=0, daily_limit=0)[0]
              for i in range(2 * args.rounds)]
    try:
        with environment(workers=2, concurrency=2) as (db_url, _env, _workers):
            solo = [small_sync(db_url, smalls[i]) for i in range(args.rounds)]
            _, big_config = due_config(db_url, big, sync_frequency_minutes=0, entities=["contacts", "companies"])
            big_job = job_for(db_url, big_config, full=True)
            while pages(db_url, big_job) < 5:
                time.sleep(0.05)
            contended = []
            for i in range(args.rounds):
                before = pages(db_url, big_job)
                contended.append(small_sync(db_url, smalls[args.rounds + i]))
                assert pages(db_url, big_job) > before, "the backfill was not running during the small sync"
            during = pages(db_url, big_job)
            t0 = time.monotonic()
            result = wait_job(db_url, big_job, timeout=1800)
            rest = time.monotonic() - t0
    finally:
        for account in (big, *smalls):
            account.server.stop()
    s_med, c_med = statistics.median(solo), statistics.median(contended)
    print(f"small tenant ({args.small} contacts, {args.small // 10} companies, {args.small // 5} deals), "
          f"scheduled sync wall time:")
    print(f"  solo:      {', '.join(f'{t:.2f}' for t in solo)} s (median {s_med:.2f})")
    print(f"  contended: {', '.join(f'{t:.2f}' for t in contended)} s (median {c_med:.2f})")
    print(f"  ratio contended/solo: {c_med / s_med:.2f} (goal <= 2)")
    print(f"big tenant backfill: {result['status']}, {result['contacts_synced']} contacts, "
          f"{len(big_log.log)} requests; {during} pages done when the small syncs ended, "
          f"finished {rest:.1f} s later")


if __name__ == "__main__":
    main()

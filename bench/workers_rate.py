"""4 Celery workers sharing one HubSpot account limited to 10 requests/s (the sandbox enforces 100
per rolling 10 s): how much of the limit a backfill uses, and whether any window went over.

    .venv/bin/python bench/workers_rate.py [--contacts 30000] [--workers 4]

Utilisation = requests per second between the first and last request / 10. "Over" = the largest
count of requests in any 10-second window (must be <= 100) and the number of 429 answers.
"""
from __future__ import annotations

import argparse
import bisect
import time

from workers_common import due_config, environment, job_for, start_timed_sandbox, wait_job


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--contacts", type=int, default=30_000)
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args()
    account, timed = start_timed_sandbox("hubspot", 9101, seed=5, contacts=args.contacts, rate_limit=100,
                                         rate_window_ms=10_000, search_rate_limit=0, daily_limit=0)
    try:
        with environment(workers=args.workers, concurrency=1) as (db_url, _env, _workers):
            _, config_id = due_config(db_url, account, sync_frequency_minutes=0, entities=["contacts"])
            t0 = time.monotonic()
            job_id = job_for(db_url, config_id)
            job = wait_job(db_url, job_id, timeout=900)
            wall = time.monotonic() - t0
    finally:
        account.server.stop()
    times = sorted(t for t, _ in timed.log)
    statuses = [s for _, s in timed.log]
    n = len(times)
    span = times[-1] - times[0]
    rate = (n - 1) / span if span else float("nan")
    worst = max(bisect.bisect_left(times, t + 10.0) - i for i, t in enumerate(times))
    print(f"job {job['status']}: {job['contacts_synced']} contacts in {wall:.1f} s with {args.workers} workers")
    print(f"requests: {n}, 429s: {statuses.count(429)}")
    print(f"rate: {rate:.2f} req/s over {span:.1f} s = {rate / 10:.1%} of the 10 req/s limit (incl. the first burst)")
    # after the first window the budget is the bottleneck: that is the steady utilisation
    steady = [t for t in times if t >= times[0] + 10.0]
    if len(steady) > 1:
        s_rate = (len(steady) - 1) / (steady[-1] - steady[0])
        print(f"steady rate after the first window: {s_rate:.2f} req/s = {s_rate / 10:.1%} of the limit")
    print(f"most requests in any 10 s window: {worst} (limit 100)")


if __name__ == "__main__":
    main()

"""Worker memory over a 200,000-record pull: RSS of the Celery worker's main process and of its
pool processes, sampled every 0.2 s while one full job pulls every record (goal: < 200 MB each).

    .venv/bin/python bench/workers_memory.py [--records 200000] [--platform pipedrive|hubspot]

Pipedrive by default (its Ultimate plan's budget lets the pull run at full speed); HubSpot's 10
requests/s budget makes a 200,000-contact pull take ~3.5 minutes.
"""
from __future__ import annotations

import argparse
import threading
import time

from workers_common import due_config, environment, job_for, rss_kib, start_timed_sandbox, wait_job


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--platform", default="pipedrive", choices=("pipedrive", "hubspot"))
    args = p.parse_args()
    if args.platform == "pipedrive":
        account, log = start_timed_sandbox("pipedrive", 9500, seed=3, persons=args.records, organizations=0,
                                           deals=0, activities=0, rate_limit=0, oauth_rate_limit=0, daily_budget=0)
    else:
        account, log = start_timed_sandbox("hubspot", 9500, seed=3, contacts=args.records, rate_limit=0,
                                           search_rate_limit=0, daily_limit=0)
    peaks = {"main": 0, "pool": 0}
    samples = []
    try:
        with environment(workers=1, concurrency=2) as (db_url, _env, (worker,)):
            start = {"main": rss_kib(worker.pid), "pool": max(rss_kib(c) for c in worker.child_pids())}
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    try:
                        main_rss = rss_kib(worker.pid)
                        pool = max((rss_kib(c) for c in worker.child_pids()), default=0)
                    except (FileNotFoundError, ProcessLookupError):
                        continue
                    peaks["main"] = max(peaks["main"], main_rss)
                    peaks["pool"] = max(peaks["pool"], pool)
                    samples.append(pool)
                    stop.wait(0.2)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            _, config_id = due_config(db_url, account, sync_frequency_minutes=0, entities=["contacts"])
            t0 = time.monotonic()
            job = wait_job(db_url, job_for(db_url, config_id, full=True), timeout=1800)
            wall = time.monotonic() - t0
            stop.set()
            sampler.join()
    finally:
        account.server.stop()
    print(f"{args.platform}: job {job['status']}, {job['contacts_synced']} contacts in {wall:.1f} s "
          f"({job['contacts_synced'] / wall:.0f} records/s, {len(log.log)} requests)")
    print(f"worker main process RSS: start {start['main'] / 1024:.0f} MB, peak {peaks['main'] / 1024:.0f} MB")
    print(f"pool process RSS: start {start['pool'] / 1024:.0f} MB, peak {peaks['pool'] / 1024:.0f} MB "
          f"(goal < 200 MB); at 25/50/75/100 % of the run: "
          + ", ".join(f"{samples[min(len(samples) - 1, int(len(samples) * q))] / 1024:.0f}"
                      for q in (0.25, 0.5, 0.75, 0.999)) + " MB")


if __name__ == "__main__":
    main()

"""The figure a user sees: a full pull of N HubSpot contacts by `crmsync sync run CONFIG --inline
--json` started from the shell (start-up, migrations check, everything), against dlt's `rest_api`
source into the same PostgreSQL, from the same server, in the same run, alternating. The ratio of
the medians is printed last.

    pip install -e ".[bench]"          # dlt[postgres], pinned
    .venv/bin/python bench/whole_process.py [--contacts 20000] [--rounds 3]

The server is the sandbox HubSpot with `--serialise-per-request`: every answer is serialised
when asked, as a real server does (the sandbox's default keeps pre-serialised pages, which would
flatter whichever client asks most). It runs in its own process, without rate limits; crmsync's
own budget is off for it too (`"rate_limits": "none"`), as a user lifting an account's limits would.
Before each round the local tables (crmsync) or the dataset (dlt) are emptied, untimed.
`--latency-ms N` delays every answer by N ms, as a network between client and CRM would: a list
is 200 pages one after another whichever client reads it, so the figure then shows how much of
each client's own work hides behind those waits.

crmsync's own modules are compiled to bytecode first, as `pip install` does for an installed
package (dlt's already are, in site-packages): an editable checkout run with
PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module on every start (~0.1 s here).

Also printed, labelled: the start-up of `crmsync --help` and `crmsync jobs list` (wall, best of 5).
In-process figures (bench/sync_pull.py) are diagnostics, not this.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.sync_pull import TOKEN, start_sandbox

CRMSYNC = Path(sys.executable).parent / "crmsync"


def start_server(contacts: int, latency_ms: float = 0) -> tuple[subprocess.Popen, str]:
    """The sandbox HubSpot answering as a real server does: serialised per request; with
    `latency_ms`, each answer that much later (a network's round trip)."""
    return start_sandbox(contacts, "--serialise-per-request", "--latency-ms", str(latency_ms))


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return took, done.stdout


def best_wall(cmd: list[str], env: dict, times: int = 5) -> float:
    return min(timed(cmd, env)[0] for _ in range(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="added to every answer, as a network would (default 0: the two clients' own work)")
    args = ap.parse_args()
    try:
        import dlt  # noqa: F401
    except ImportError:
        raise SystemExit('dlt is not installed: pip install -e ".[bench]"') from None
    import compileall
    for package in ("crmsync", "workers"):
        compileall.compile_dir(str(ROOT / package), quiet=1)

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.fixtures.db import create_database, drop_database
    url = create_database("crmsync_bench")
    env = {**os.environ, "CRMSYNC_DATABASE_URL": url, "CRMSYNC_SECRET_KEY": "bench-secret-key-0123456789abcdef"}
    for var in ("CRMSYNC_BROKER_URL", "CRMSYNC_REDIS_URL", "CRMSYNC_PAGE_SIZE"):
        env.pop(var, None)
    os.environ.update({k: env[k] for k in ("CRMSYNC_DATABASE_URL", "CRMSYNC_SECRET_KEY")})
    server, base = start_server(args.contacts, args.latency_ms)
    pipelines = tempfile.mkdtemp(prefix="dlt-bench-")
    try:
        subprocess.run([str(CRMSYNC), "db", "upgrade"], env=env, check=True, capture_output=True)
        from crmsync.configs import create_config, create_tenant
        from crmsync.credentials import Vault
        from crmsync.db import session_scope
        from crmsync.sync.connect import connect
        with session_scope() as s:
            tenant = create_tenant(s, "bench")
            secret = Vault().store(s, name="bench", platform="hubspot", value={"token": TOKEN, "rate_limits": "none"})
            config = create_config(s, {"tenant_id": tenant.id, "platform": "hubspot",
                                       "credentials_vault_id": secret.id, "api_base_url": base,
                                       "entities": ["contacts"], "sync_direction": "pull",
                                       "sync_frequency_minutes": 0, "sweep_every_hours": 0})
            config.account_id = connect(s, config).account_id()
            # dlt asks for the same properties crmsync reads.
            properties = ",".join(connect(s, config)._read_properties("contact", "contacts"))
            config_id = config.id
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        # dlt insists on a password; the local server trusts its users and ignores it.
        pg = make_url(url).set(drivername="postgresql", password=make_url(url).password or "unused")
        dlt_url = pg.render_as_string(hide_password=False)

        def reset_crmsync() -> None:
            with engine.connect() as conn:
                conn.execute(text("TRUNCATE crm_contacts, crm_sync_links, crm_sync_checkpoints, "
                                  "crm_sync_job_steps, crm_sync_jobs CASCADE"))
                conn.execute(text("VACUUM ANALYZE crm_contacts"))
                conn.execute(text("VACUUM ANALYZE crm_sync_links"))

        def reset_dlt() -> None:
            with engine.connect() as conn:
                conn.execute(text("DROP SCHEMA IF EXISTS hubspot CASCADE"))
                conn.execute(text("DROP SCHEMA IF EXISTS hubspot_staging CASCADE"))
            shutil.rmtree(pipelines, ignore_errors=True)

        crmsync_cmd = [str(CRMSYNC), "sync", "run", config_id, "--inline", "--json"]
        dlt_cmd = [sys.executable, str(ROOT / "bench" / "dlt_hubspot.py"), base, TOKEN, dlt_url, properties,
                   pipelines]
        print(f"start-up (wall, best of 5): crmsync --help {best_wall([str(CRMSYNC), '--help'], env):.3f} s, "
              f"crmsync jobs list {best_wall([str(CRMSYNC), 'jobs', 'list', '--json'], env):.3f} s")
        ours, theirs = [], []
        for n in range(args.rounds):
            reset_crmsync()
            took, out = timed(crmsync_cmd, env)
            job = json.loads(out)
            assert job["status"] == "succeeded" and job["contacts_synced"] == args.contacts, job
            ours.append(took)
            reset_dlt()
            took, out = timed(dlt_cmd, env)
            assert int(out.strip().splitlines()[-1]) == args.contacts, out
            theirs.append(took)
            print(f"round {n + 1}: crmsync {ours[-1]:.2f} s ({args.contacts / ours[-1]:,.0f} records/s), "
                  f"dlt rest_api {theirs[-1]:.2f} s ({args.contacts / theirs[-1]:,.0f} records/s)", flush=True)
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"whole process, full pull of {args.contacts:,} contacts, median of {args.rounds}: crmsync {a:.2f} s, "
              f"dlt {b:.2f} s" + (f" ({args.latency_ms:g} ms added to every answer)" if args.latency_ms else ""))
        print(f"ratio (dlt time / crmsync time): {b / a:.2f}x")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(pipelines, ignore_errors=True)
        drop_database(url)


if __name__ == "__main__":
    main()

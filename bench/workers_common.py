"""Shared set-up of the workers benchmarks: a private redis-server, a fresh migrated PostgreSQL
database, sandbox CRM accounts whose requests are timed, and `celery -A workers worker`
subprocesses (the same helpers the tests use, in tests/fixtures/workers.py)."""
from __future__ import annotations

import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.db import create_database, drop_database
from tests.fixtures.workers import (
    SandboxAccount,
    add_sandbox_config,
    rss_kib,
    start_celery_worker,
    start_redis,
    worker_environment,
)


@dataclass
class TimedApp:
    """WSGI wrapper recording (start time, status) of every API request (admin paths excluded)."""
    app: object
    log: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ, start_response):
        t = time.monotonic()
        seen = {}

        def sr(status, headers, exc_info=None):
            seen["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
        out = self.app(environ, sr)
        if not environ.get("PATH_INFO", "").startswith("/_sandbox"):
            with self.lock:
                self.log.append((t, seen.get("status")))
        return out

    def __getattr__(self, name):
        return getattr(self.app, name)


def start_timed_sandbox(platform: str, account_id: int, **options) -> tuple[SandboxAccount, TimedApp]:
    from crmsync.sandbox.server import SandboxServer
    if platform == "hubspot":
        from crmsync.sandbox.hubspot import create_app
    else:
        from crmsync.sandbox.pipedrive import create_app
    app = create_app(**({"portal_id": account_id} if platform == "hubspot" else {"company_id": account_id}),
                     **options)
    timed = TimedApp(app)
    server = SandboxServer(timed)
    base_url = server.start()
    return SandboxAccount(platform, app, base_url, str(account_id), app.options.token, server), timed


@contextmanager
def environment(workers: int = 1, concurrency: int = 2, queues: str = "events,syncs,backfills", **env):
    """Yields (db_url, env, [WorkerProcess]); this process's settings point at the same stack."""
    import os

    from crmsync.db.migrate import upgrade
    from crmsync.settings import get_settings
    from crmsync.tasks.producer import reset_producer
    db_url = create_database("crmsync_bench")
    upgrade(db_url)
    redis_server = start_redis()
    worker_env = worker_environment(db_url, redis_server, **env)
    os.environ.update({k: v for k, v in worker_env.items() if k.startswith("CRMSYNC_")})
    get_settings.cache_clear()
    reset_producer()
    logs = Path(tempfile.mkdtemp(prefix="crmsync-bench-"))
    started = []
    try:
        for i in range(workers):
            started.append(start_celery_worker(worker_env, logs, name=f"bench{i + 1}", concurrency=concurrency,
                                               queues=queues))
        yield db_url, worker_env, started
    finally:
        for w in started:
            w.stop()
        redis_server.process.terminate()
        redis_server.process.wait(10)
        drop_database(db_url)
        print(f"(worker logs in {logs})", file=sys.stderr)


def due_config(db_url, account, tenant=None, **overrides) -> tuple[str, str]:
    from crmsync.db import session_scope
    from crmsync.db.types import utcnow
    from tests.fixtures.factories import make_tenant
    with session_scope(db_url) as s:
        t = tenant or make_tenant(s)
        config = add_sandbox_config(s, t, account, **overrides)
        config.next_sync_at = utcnow() - timedelta(seconds=1)
        return t.id, config.id


def job_for(db_url, config_id: str, full: bool = False) -> str:
    """A job created and started the way `crmsync sync run` does (enqueued to the workers)."""
    from crmsync.db import session_scope
    from crmsync.db.models import SyncConfig
    from crmsync.sync.jobs import create_job
    from crmsync.tasks import enqueue_after_commit
    from crmsync.tasks.names import START_JOB
    with session_scope(db_url) as s:
        job = create_job(s, s.get(SyncConfig, config_id), trigger="manual", full=full)
        enqueue_after_commit(s, START_JOB, job.id)
        return job.id


def wait_job(db_url, job_id, timeout=600.0, on_poll=None) -> dict:
    from crmsync.db import session_scope
    from crmsync.db.models import SyncJob
    from crmsync.sync.job_view import job_as_dict
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(db_url) as s:
            job = s.get(SyncJob, job_id)
            if job.status in ("succeeded", "failed"):
                return job_as_dict(job)
        if on_poll:
            on_poll()
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not finish in {timeout} s")


__all__ = ["TimedApp", "due_config", "environment", "job_for", "rss_kib", "start_timed_sandbox", "wait_job"]

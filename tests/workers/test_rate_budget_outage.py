"""The rate budget's Redis goes away mid-sync under real Celery workers: the units that meet it are
retried (a `Retryable` blip), not failed for good, and the job ends as if nothing happened.

The workers here keep their state (rate budget, caches) on a Redis of its own, apart from the
broker's, so stopping it leaves the broker and the workers' connections to it alone.
"""
from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crmsync.db import session_scope
from crmsync.db.models import SyncJob, SyncJobStep, SyncLink
from crmsync.db.types import utcnow
from crmsync.sync.schedule import dispatch_due_syncs
from tests.fixtures.db import _set_env
from tests.fixtures.factories import make_tenant
from tests.fixtures.workers import (
    RedisServer,
    add_sandbox_config,
    start_celery_worker,
    start_redis,
    start_sandbox,
    stop_sandbox,
    wait_until,
    worker_environment,
)

CONTACTS = 1200
PAGE_SIZE = "100"   # twelve units: the job is still running when its Redis goes


def restart_redis(server: RedisServer) -> RedisServer:
    """A fresh redis-server on the same port (its state is gone, as after a crash)."""
    proc = subprocess.Popen(["redis-server", "--port", str(server.port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    again = RedisServer(server.port, proc)
    wait_until(lambda: _answers(again), 10, what="the state redis-server to come back")
    return again


def _answers(server: RedisServer) -> bool:
    import redis
    try:
        return server.client().ping()
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def outage_stack(pg_url, tmp_path_factory):
    broker, state = start_redis(), start_redis()
    env = worker_environment(pg_url, broker, CRMSYNC_REDIS_URL=f"redis://127.0.0.1:{state.port}/0",
                             CRMSYNC_PAGE_SIZE=PAGE_SIZE)
    worker = start_celery_worker(env, tmp_path_factory.mktemp("celery-outage"), name="outage")
    portal = start_sandbox("hubspot", 7301, seed=5, contacts=CONTACTS, companies=0, deals=0, tasks=0, notes=0)
    # each CRM call takes a moment, so the job is mid-flight when Redis stops
    portal.app.configure(faults={"latency_ms": 40})
    stack = {"broker": broker, "state": state, "worker": worker, "portal": portal}
    yield stack
    stop_sandbox(portal)
    worker.stop()
    for server in (broker, stack["state"]):
        server.process.terminate()
        server.process.wait(10)


def _pages(db_url, job_id) -> int:
    with session_scope(db_url) as s:
        return s.scalar(select(func.coalesce(func.sum(SyncJobStep.pages), 0)).where(SyncJobStep.job_id == job_id))


def _job(db_url, job_id) -> SyncJob:
    with session_scope(db_url) as s:
        job = s.get(SyncJob, job_id)
        s.expunge(job)
        return job


def test_a_rate_budget_outage_mid_sync_is_retried_and_the_job_succeeds(monkeypatch, db_url, outage_stack):
    worker, portal = outage_stack["worker"], outage_stack["portal"]
    _set_env(monkeypatch, {"CRMSYNC_DATABASE_URL": db_url, "CRMSYNC_BROKER_URL": outage_stack["broker"].broker_url,
                           "CRMSYNC_REDIS_URL": f"redis://127.0.0.1:{outage_stack['state'].port}/0"})
    from crmsync.tasks.producer import reset_producer
    reset_producer()
    with session_scope(db_url) as s:
        config = add_sandbox_config(s, make_tenant(s), portal, sync_frequency_minutes=30)
        config.next_sync_at = utcnow() - timedelta(seconds=1)
        config_id = config.id
    with session_scope(db_url) as s:
        (job_id,) = dispatch_due_syncs(s)

    wait_until(lambda: _pages(db_url, job_id) >= 1, 60, interval=0.02, what="the first unit of the job")
    state = outage_stack["state"]
    state.process.kill()
    state.process.wait(10)
    try:
        assert _job(db_url, job_id).status == "running", "the job ended before its Redis went away"
        wait_until(lambda: "RateBudgetUnavailable" in worker.log(), 30, interval=0.1,
                   what="a unit to meet the stopped Redis")
        assert _job(db_url, job_id).status == "running", "a Redis blip failed the job"
    finally:
        outage_stack["state"] = restart_redis(state)

    def finished():
        job = _job(db_url, job_id)
        assert job.status != "failed", f"the job failed: {job.error}"
        return job.status == "succeeded"
    wait_until(finished, 120, interval=0.2, what="the job to succeed once Redis is back")
    job = _job(db_url, job_id)
    assert job.counts["contact"]["failed"] == 0
    with session_scope(db_url) as s:
        linked = s.scalar(select(func.count()).select_from(SyncLink).where(SyncLink.config_id == config_id))
    assert linked == CONTACTS
    reset_producer()

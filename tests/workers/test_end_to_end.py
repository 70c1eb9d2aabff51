"""Beat tick -> real Celery workers -> sandbox CRMs -> PostgreSQL, and the ugly paths: worker
processes killed with SIGKILL mid-job, the broker flushed mid-job, Flower watching."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crmsync.db import session_scope
from crmsync.db.models import ENTITY_MODELS, SyncConfig, SyncJob, SyncJobStep, SyncLink
from crmsync.db.types import utcnow
from crmsync.sync.schedule import dispatch_due_syncs, sweep_outbox
from tests.fixtures.factories import make_tenant
from tests.fixtures.workers import (
    CELERY,
    ROOT,
    add_sandbox_config,
    free_port,
    start_sandbox,
    stop_sandbox,
    wait_until,
)

ENTITIES = ("company", "contact", "deal", "activity", "task")


@pytest.fixture(scope="module")
def fleet():
    """Two tenants' worth of CRM accounts: HubSpot portals 7001/7002, Pipedrive companies 8001/8002."""
    accounts = [
        start_sandbox("hubspot", 7001, seed=1, contacts=120, companies=15, deals=30, tasks=10, notes=10),
        start_sandbox("pipedrive", 8001, seed=2, persons=90, organizations=12, deals=25, activities=30),
        start_sandbox("hubspot", 7002, seed=3, contacts=60, companies=8, deals=12, tasks=5, notes=6),
        start_sandbox("pipedrive", 8002, seed=4, persons=40, organizations=6, deals=10, activities=12),
    ]
    yield accounts
    for account in accounts:
        stop_sandbox(account)


def remote_ids(session, config) -> dict[str, set[str]]:
    """Every record the CRM lists, through our own adapter (the oracle the links must match)."""
    from crmsync.sync.connect import connect
    adapter = connect(session, config, wait=True)
    out = {}
    for entity in ENTITIES:
        if entity not in adapter.entities:
            continue
        ids, cursor = set(), adapter.start_cursor(entity, None)
        while cursor is not None:
            page = adapter.list_changed(entity, cursor, 100)
            ids |= {r.external_id for r in page.records if not r.archived}
            cursor = page.cursor
        out[entity] = ids
    return out


def links(session, config_id) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {e: [] for e in ENTITIES}
    for entity, ext in session.execute(select(SyncLink.entity_type, SyncLink.external_id).where(
            SyncLink.config_id == config_id)):
        out[entity].append(ext)
    return out


def setup_tenants(db_url, fleet, *, full=False):
    with session_scope(db_url) as s:
        configs = []
        for pair in (fleet[:2], fleet[2:]):
            tenant = make_tenant(s)
            for account in pair:
                config = add_sandbox_config(s, tenant, account, sync_frequency_minutes=30)
                config.next_sync_at = utcnow() - timedelta(seconds=1)
                configs.append(config.id)
    return configs


def job_states(db_url, job_ids):
    with session_scope(db_url) as s:
        return {j.id: j.status for j in s.scalars(select(SyncJob).where(SyncJob.id.in_(job_ids)))}


def wait_jobs(db_url, job_ids, timeout, tick=None):
    def done():
        if tick:
            tick()
        states = job_states(db_url, job_ids)
        if any(v == "failed" for v in states.values()):
            with session_scope(db_url) as s:
                errors = [j.error for j in s.scalars(select(SyncJob).where(SyncJob.id.in_(job_ids)))]
            raise AssertionError(f"a job failed: {errors}")
        return all(v == "succeeded" for v in states.values())
    try:
        wait_until(done, timeout, interval=0.2, what=f"jobs {job_ids} to succeed")
    except AssertionError:
        diagnose(db_url, job_ids)
        raise


def diagnose(db_url, job_ids):
    """Print what the broker, the worker and the job's steps look like (on a timeout)."""
    import redis as _redis
    from celery import Celery

    from crmsync.settings import get_settings
    url = get_settings().broker_url
    r = _redis.Redis.from_url(url)
    print("broker:", {k: r.llen(k) for k in ("syncs", "backfills", "events")}, "unacked", r.hlen("unacked"))
    app = Celery("diagnose", broker=url, set_as_current=False)
    inspect = app.control.inspect(timeout=2)
    print("active", inspect.active(), "reserved", inspect.reserved(), "scheduled", inspect.scheduled())
    app.close()
    with session_scope(db_url) as s:
        for job in s.scalars(select(SyncJob).where(SyncJob.id.in_(job_ids))):
            print("job", job.id[:8], job.status, job.steps_done, job.steps_total, job.error)
        for st in s.scalars(select(SyncJobStep).where(SyncJobStep.job_id.in_(job_ids))):
            print("step", st.job_id[:8], st.entity_type, st.kind, st.status, st.pages, st.attempts, st.updated_at)


def assert_exact(db_url, config_ids):
    with session_scope(db_url) as s:
        for cid in config_ids:
            config = s.get(SyncConfig, cid)
            remote = remote_ids(s, config)
            have = links(s, cid)
            for entity, ids in remote.items():
                assert len(have[entity]) == len(set(have[entity])), f"duplicate links for {entity}"
                assert set(have[entity]) == ids, f"{config.platform} {entity}: links differ from the CRM"
        for entity, model in ENTITY_MODELS.items():
            # no local row twice: every live row has exactly one link per config it came from
            rows = s.scalar(select(func.count()).select_from(model).where(model.deleted_at.is_(None)))
            linked = s.scalar(select(func.count(func.distinct(SyncLink.local_id))).where(
                SyncLink.entity_type == entity))
            assert rows == linked, f"{entity}: {rows} rows but {linked} linked records"


def test_beat_tick_and_workers_bring_every_record_into_postgresql(worker_env, db_url, fleet):
    config_ids = setup_tenants(db_url, fleet)
    with session_scope(db_url) as s:
        job_ids = dispatch_due_syncs(s)
    assert len(job_ids) == 4
    wait_jobs(db_url, job_ids, 60)
    assert_exact(db_url, config_ids)
    with session_scope(db_url) as s:
        for job in s.scalars(select(SyncJob).where(SyncJob.id.in_(job_ids))):
            config = s.get(SyncConfig, job.sync_config_id)
            remote = remote_ids(s, config)
            assert job.steps_done == job.steps_total > 0
            for entity, ids in remote.items():
                c = job.counts.get(entity, {})
                assert c.get("created", 0) + c.get("updated", 0) + c.get("skipped", 0) >= len(ids) > 0 or not ids
                assert c.get("failed", 0) == 0
        # the next due time moved on; a second tick dispatches nothing
        assert all(s.get(SyncConfig, cid).next_sync_at > utcnow() for cid in config_ids)
    with session_scope(db_url) as s:
        assert dispatch_due_syncs(s) == []


def _progress(db_url, job_id) -> int:
    with session_scope(db_url) as s:
        return s.scalar(select(func.coalesce(func.sum(SyncJobStep.pages), 0)).where(SyncJobStep.job_id == job_id))


@pytest.fixture(scope="module")
def big_portal():
    account = start_sandbox("hubspot", 7101, seed=9, contacts=2500, companies=200)
    yield account
    stop_sandbox(account)


def _sweep_tick(db_url) -> bool:
    with session_scope(db_url) as s:
        sweep_outbox(s)
    return False


def _no_running_unit_died_before(worker_redis) -> bool:
    """No unit running now has been killed already. A unit whose process dies three times fails
    for good by design (CRMSYNC_TASK_MAX_DEATHS); the kills below must each hit fresh units, not
    the same redelivered page while other steps move the job's progress on."""
    from workers.base import DEATHS_KEY, RUNNING_KEY
    state = worker_redis.client(1)
    running, deaths = RUNNING_KEY.split("{")[0], DEATHS_KEY.split("{")[0]  # the keys' fixed prefixes
    return not any(state.exists(key.decode().replace(running, deaths, 1))
                   for key in state.scan_iter(match=running + "*"))


def test_kill_9_of_worker_processes_during_a_job_three_times(worker_env, db_url, big_portal, celery_worker,
                                                             worker_redis):
    with session_scope(db_url) as s:
        config = add_sandbox_config(s, make_tenant(s), big_portal, sync_frequency_minutes=30)
        config.next_sync_at = utcnow()
        config_id = config.id
    with session_scope(db_url) as s:
        (job_id,) = dispatch_due_syncs(s)
    seen, kills = 0, 0
    for _ in range(3):
        wait_until(lambda seen=seen: _sweep_tick(db_url) or (
            _progress(db_url, job_id) > seen and _no_running_unit_died_before(worker_redis)), 30, interval=0.02,
            what="progress, and no unit running that was killed before")
        assert job_states(db_url, [job_id])[job_id] == "running", "the job ended before three kills"
        children = celery_worker.child_pids()
        assert children
        for pid in children:  # the one running the page dies with the others
            os.kill(pid, signal.SIGKILL)
            kills += 1
        seen = _progress(db_url, job_id)
    # Beat's sweeper ticks as in production: a process killed between its commit and the publish
    # of the successor loses that message (the redelivered page finds its step done); the next
    # step's row says "pending" and the sweeper re-enqueues it.
    wait_jobs(db_url, [job_id], 60, tick=lambda: _sweep_tick(db_url))
    assert kills >= 3 and celery_worker.alive()
    assert_exact(db_url, [config_id])
    with session_scope(db_url) as s:
        job = s.get(SyncJob, job_id)
        assert job.counts["contact"]["created"] == 2500 and job.counts["company"]["created"] == 200


def test_redis_flushed_during_a_job_the_sweeper_finishes_it(worker_env, db_url, fleet, worker_redis,
                                                            celery_worker):
    from celery import Celery
    config_ids = setup_tenants(db_url, fleet)
    control = Celery("crmsync-test-control", broker=worker_redis.broker_url, set_as_current=False)
    try:
        with session_scope(db_url) as s:
            job_ids = dispatch_due_syncs(s)
        try:
            wait_until(lambda: _progress(db_url, job_ids[0]) > 0, 30, interval=0.02, what="the job to start")
        except AssertionError:
            diagnose(db_url, job_ids)
            print(celery_worker.log()[-5000:])
            raise
        # Stop consuming, let the in-flight tasks finish, then lose everything Redis holds.
        for q in ("syncs", "backfills"):
            control.control.cancel_consumer(q, destination=[celery_worker.hostname], reply=True, timeout=5)
        broker = worker_redis.client(0)
        wait_until(lambda: broker.llen("syncs") + broker.llen("backfills") > 0 or all(
            v == "succeeded" for v in job_states(db_url, job_ids).values()), 15, what="queued successors")
        time.sleep(0.3)  # let a task still running commit (correctness does not depend on it)
        broker.flushall()
        for q in ("syncs", "backfills"):
            control.control.add_consumer(q, destination=[celery_worker.hostname], reply=True, timeout=5)

        def beat_tick():  # what beat would do every sweep interval
            with session_scope(db_url) as s:
                sweep_outbox(s, now=utcnow() + timedelta(seconds=5))
        wait_jobs(db_url, job_ids, 90, tick=beat_tick)
    finally:
        control.close()
    assert_exact(db_url, config_ids)


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_flower_lists_tasks_by_name_and_no_argument_holds_a_secret(worker_env, db_url, fleet, tmp_path):
    from crmsync.tasks.names import TASKS
    port = free_port()
    env = {**os.environ, "FLOWER_UNAUTHENTICATED_API": "true", "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115
    flower = subprocess.Popen([CELERY, "-A", "workers", "flower", "--address=127.0.0.1", f"--port={port}",
                               "--read_only=true"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)

    def api(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return json.loads(r.read())
    try:
        def workers_seen():
            try:
                return api("/api/workers?refresh=1")
            except OSError:
                return None
        wait_until(workers_seen, 30, interval=0.2, what="Flower to see the worker")
        config_ids = setup_tenants(db_url, fleet)
        with session_scope(db_url) as s:
            job_ids = dispatch_due_syncs(s)
        seen: dict = {}

        def tasks_listed():
            seen.update(api("/api/tasks"))
            return {t.get("name") for t in seen.values()} >= {"crmsync.sync.start_job", "crmsync.sync.run_step"}
        wait_until(tasks_listed, 30, interval=0.3, what="Flower to list the sync tasks")
        wait_jobs(db_url, job_ids, 60)
        seen.update(api("/api/tasks"))
    finally:
        flower.terminate()
        flower.wait(10)
        log.close()
    # Flower can hear a task's later events before its "received" one (it names it then): those
    # entries have no name yet and are not counted against the table.
    names = {t.get("name") for t in seen.values()} - {None}
    assert names <= set(TASKS), names
    with session_scope(db_url) as s:
        secrets = {str(v) for c in s.scalars(select(SyncConfig).where(SyncConfig.id.in_(config_ids)))
                   for v in (c.api_base_url,)}
    secrets |= {a.token for a in fleet} | {os.environ["CRMSYNC_SECRET_KEY"]}
    for task in seen.values():
        args = task.get("args") or "()"
        values = re.findall(r"'([^']*)'", args)
        assert all(UUID.match(v) for v in values), args
        assert task.get("kwargs") in (None, "{}"), task.get("kwargs")
        assert not any(secret in json.dumps(task) for secret in secrets if secret)

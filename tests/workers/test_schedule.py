"""The dispatcher and the outbox sweeper on PostgreSQL, publishing real Celery messages to a Redis
list nobody consumes (so the test reads exactly what was enqueued)."""
from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crmsync.db import session_scope
from crmsync.db.models import SyncConfig, SyncJob, SyncJobStep, WebhookDelivery, WebhookEvent
from crmsync.db.types import utcnow
from crmsync.sync.schedule import dispatch_due_syncs, sweep_outbox
from crmsync.tasks.producer import reset_producer
from tests.fixtures.db import _set_env
from tests.fixtures.factories import make_config, make_tenant

PARKED_BROKER_DB = 5


@pytest.fixture
def parked_broker(monkeypatch, db_url, worker_redis):
    """Settings with a broker database no worker consumes; yields a reader of its queues."""
    client = worker_redis.client(PARKED_BROKER_DB)
    client.flushdb()
    _set_env(monkeypatch, {"CRMSYNC_DATABASE_URL": db_url,
                           "CRMSYNC_BROKER_URL": f"redis://127.0.0.1:{worker_redis.port}/{PARKED_BROKER_DB}",
                           "CRMSYNC_OUTBOX_AFTER_SECONDS": "60"})
    reset_producer()

    def messages(queue: str) -> list[tuple[str, list]]:
        out = []
        for raw in reversed(client.lrange(queue, 0, -1)):  # LPUSH'd: oldest last
            msg = json.loads(raw)
            body = json.loads(base64.b64decode(msg["body"]))
            out.append((msg["headers"]["task"], body[0]))
        return out
    yield messages
    reset_producer()
    client.flushdb()


def _job(s, config, status="running", **kw):
    job = SyncJob(tenant_id=config.tenant_id, sync_config_id=config.id, status=status, **kw)
    s.add(job)
    s.flush()
    return job


def _step(s, job, entity, status="pending", age=0.0, kind="pull", position=0):
    step = SyncJobStep(tenant_id=job.tenant_id, job_id=job.id, entity_type=entity, kind=kind, status=status,
                       position=position, updated_at=utcnow() - timedelta(seconds=age))
    s.add(step)
    s.flush()
    return step


def _event(s, config, key, processed=False, age=0.0):
    ev = WebhookEvent(tenant_id=config.tenant_id, config_id=config.id, platform="hubspot",
                      account_id=config.account_id, event_key=key, event_type="contact.propertyChange",
                      entity_type="contact", external_id="1", payload={"objectId": 1}, processed=processed,
                      received_at=utcnow() - timedelta(seconds=age))
    s.add(ev)
    s.flush()
    return ev


def _delivery(s, config, age=0.0, error=None):
    d = WebhookDelivery(tenant_id=config.tenant_id, config_id=config.id, platform="hubspot",
                        account_id=config.account_id, body="[]", events=0, error=error,
                        received_at=utcnow() - timedelta(seconds=age))
    s.add(d)
    s.flush()
    return d


def test_sweep_reenqueues_stale_events_steps_and_resumed_jobs_once(db_url, parked_broker):
    with session_scope(db_url) as s:
        c1, c2, c3 = (make_config(s, make_tenant(s)) for _ in range(3))
        running = _job(s, c1, full=True)
        stale = _step(s, running, "contact", age=120)
        _step(s, running, "company", age=1)                          # fresh: in flight
        _step(s, running, "deal", status="done", age=120)            # finished
        failed_job = _job(s, c2, status="failed")
        _step(s, failed_job, "contact", age=120)                     # its job is over
        parked = _job(s, c3, status="waiting_quota", paused_until=utcnow() - timedelta(seconds=5),
                      updated_at=utcnow() - timedelta(seconds=300))
        parked_step = _step(s, parked, "deal", age=300)
        c4, c5 = make_config(s, make_tenant(s)), make_config(s, make_tenant(s))
        unstarted = _job(s, c4, status="queued", updated_at=utcnow() - timedelta(seconds=120))
        _job(s, c5, status="queued")                                  # just created: its message is on its way
        old_event = _event(s, c1, "e1", age=120)
        _event(s, c1, "e2", age=1)
        _event(s, c1, "e3", processed=True, age=120)
        old_delivery = _delivery(s, c1, age=120)
        _delivery(s, c1, age=1)                                       # its split message is on its way
        _delivery(s, c1, age=120, error="DataError: ...")             # failed for good: waits for a replay
        ids = {"stale": stale.id, "parked_step": parked_step.id, "event": old_event.id, "unstarted": unstarted.id,
               "delivery": old_delivery.id}

    with session_scope(db_url) as s:
        counts = sweep_outbox(s)
    assert counts == {"deliveries": 1, "events": 1, "steps": 1, "jobs": 1, "queued": 1}
    assert parked_broker("events") == [("crmsync.events.split", [ids["delivery"]]),
                                       ("crmsync.events.process", [ids["event"]])]
    # the step of a full job goes to the backfills queue; the parked incremental job's to syncs
    assert parked_broker("backfills") == [("crmsync.sync.run_step", [ids["stale"]])]
    assert parked_broker("syncs") == [("crmsync.sync.run_step", [ids["parked_step"]]),
                                      ("crmsync.sync.start_job", [ids["unstarted"]])]

    with session_scope(db_url) as s:  # touched: the next sweep does not flood
        assert sweep_outbox(s) == {"deliveries": 0, "events": 0, "steps": 0, "jobs": 0, "queued": 0}
    with session_scope(db_url) as s:  # ...until another threshold has passed (the fresh ones too now)
        assert sweep_outbox(s, now=utcnow() + timedelta(seconds=61)) == {
            "deliveries": 2, "events": 2, "steps": 2, "jobs": 1, "queued": 2}


def test_sweep_reenqueues_only_the_step_a_job_is_at_not_the_later_ones_waiting_their_turn(db_url, parked_broker):
    # Steps run one after another (companies before the contacts and deals that point at them,
    # pulls before pushes); each later step's row sits pending, untouched since the job started.
    # A job busy for longer than the threshold (any backfill) must not have those started by the
    # sweeper: only the step it is at, when that one's message is lost.
    with session_scope(db_url) as s:
        busy_cfg, stalled_cfg = make_config(s, make_tenant(s)), make_config(s, make_tenant(s))
        busy = _job(s, busy_cfg)
        _step(s, busy, "company", age=1, position=0)        # its units keep it fresh
        for position, entity in enumerate(("contact", "deal", "activity", "task"), 1):
            _step(s, busy, entity, age=300, position=position)
        stalled = _job(s, stalled_cfg)
        _step(s, stalled, "company", status="done", age=300, position=0)
        lost = _step(s, stalled, "contact", age=300, position=1)   # the step it is at; its message lost
        _step(s, stalled, "deal", age=300, position=2)
        _step(s, stalled, "contact", age=300, position=3, kind="push")
        parked = _job(s, make_config(s, make_tenant(s)), status="waiting_quota",    # its daily quota is back
                      paused_until=utcnow() - timedelta(seconds=5), updated_at=utcnow() - timedelta(seconds=300))
        resumes = _step(s, parked, "contact", age=300, position=1)
        _step(s, parked, "deal", age=300, position=2)
        lost_id, resumes_id = lost.id, resumes.id
    with session_scope(db_url) as s:
        counts = sweep_outbox(s)
    assert (counts["steps"], counts["jobs"]) == (1, 1)
    assert sorted(parked_broker("syncs")) == sorted([("crmsync.sync.run_step", [lost_id]),
                                                     ("crmsync.sync.run_step", [resumes_id])])


def test_sweep_publishes_nothing_when_its_transaction_rolls_back(db_url, parked_broker):
    with session_scope(db_url) as s:
        config = make_config(s, make_tenant(s))
        _event(s, config, "e1", age=120)
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        sweep_outbox(s)
        raise RuntimeError("crash before commit")
    assert parked_broker("events") == []


def _due_configs(db_url, n, **kw):
    with session_scope(db_url) as s:
        ids = []
        for _ in range(n):
            c = make_config(s, make_tenant(s), **kw)
            c.next_sync_at = utcnow() - timedelta(seconds=10)
            ids.append(c.id)
        return ids


def test_dispatch_claims_due_configs_and_moves_them_on(db_url, parked_broker):
    due = _due_configs(db_url, 3, sync_frequency_minutes=15)
    with session_scope(db_url) as s:
        realtime = make_config(s, make_tenant(s), sync_frequency_minutes=0)
        disabled = make_config(s, make_tenant(s), enabled=False)
        later = make_config(s, make_tenant(s))
        later.next_sync_at = utcnow() + timedelta(minutes=5)
        skipped = [realtime.id, disabled.id, later.id]
    now = utcnow()
    with session_scope(db_url) as s:
        job_ids = dispatch_due_syncs(s, now=now)
    assert len(job_ids) == 3
    with session_scope(db_url) as s:
        jobs = s.scalars(select(SyncJob)).all()
        assert sorted(j.sync_config_id for j in jobs) == sorted(due)
        assert {j.trigger for j in jobs} == {"schedule"}
        for cid in due:
            assert s.get(SyncConfig, cid).next_sync_at == now + timedelta(minutes=15)
        assert not any(j.sync_config_id in skipped for j in jobs)
    assert sorted(args[0] for _, args in parked_broker("syncs")) == sorted(job_ids)
    assert {name for name, _ in parked_broker("syncs")} == {"crmsync.sync.start_job"}


def test_dispatch_skips_a_config_with_an_active_job_but_moves_it_on(db_url, parked_broker):
    (cid,) = _due_configs(db_url, 1)
    with session_scope(db_url) as s:
        _job(s, s.get(SyncConfig, cid), status="running", trigger="manual")
    with session_scope(db_url) as s:
        assert dispatch_due_syncs(s) == []
    with session_scope(db_url) as s:
        assert s.get(SyncConfig, cid).next_sync_at > utcnow()
        assert s.scalar(select(func.count()).select_from(SyncJob)) == 1
    assert parked_broker("syncs") == []


def test_two_dispatchers_racing_dispatch_each_config_exactly_once(db_url, parked_broker):
    due = _due_configs(db_url, 40)
    barrier = threading.Barrier(4)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def tick():
        try:
            barrier.wait()
            for _ in range(3):  # each dispatcher ticks a few times, as a double beat would
                with session_scope(db_url) as s:
                    results.append(dispatch_due_syncs(s, limit=7))
        except BaseException as err:  # noqa: BLE001  reported below
            errors.append(err)
    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    dispatched = [j for r in results for j in r]
    assert len(dispatched) == len(set(dispatched)) == 40
    with session_scope(db_url) as s:
        per_config = dict(s.execute(select(SyncJob.sync_config_id, func.count()).group_by(
            SyncJob.sync_config_id)).all())
    assert per_config == dict.fromkeys(due, 1)
    started = [args[0] for _, args in parked_broker("syncs")]
    assert sorted(started) == sorted(dispatched)


def test_sweep_leaves_a_live_inline_run_alone_and_takes_over_a_dead_one(db_url, parked_broker):
    from crmsync.sync.jobs import WORKERS
    now = utcnow()
    with session_scope(db_url) as s:
        live_cfg, dead_cfg = make_config(s, make_tenant(s)), make_config(s, make_tenant(s))
        live = _job(s, live_cfg, lease_owner="inline elsewhere 1", lease_expires_at=now + timedelta(seconds=30))
        _step(s, live, "contact", age=120)          # a long unit of a process that still beats
        dead = _job(s, dead_cfg, lease_owner="inline elsewhere 2", lease_expires_at=now - timedelta(seconds=1))
        dead_step = _step(s, dead, "contact", age=120)
        ids = (live.id, dead.id, dead_step.id)
    with session_scope(db_url) as s:
        assert sweep_outbox(s, now=now)["steps"] == 1
    assert parked_broker("syncs") == [("crmsync.sync.run_step", [ids[2]])]
    with session_scope(db_url) as s:
        assert s.get(SyncJob, ids[0]).lease_owner == "inline elsewhere 1"
        taken = s.get(SyncJob, ids[1])
        assert taken.lease_owner == WORKERS and taken.lease_expires_at > now


def test_sweep_leaves_a_step_waiting_out_a_rate_limit_alone_until_its_wait_is_over(
        db_url, parked_broker, hubspot_sandbox, monkeypatch):
    # A unit told to wait (the CRM's 429 names a window longer than the sweeper's threshold) is
    # re-enqueued with a countdown. The sweeper must not send it again before that countdown is
    # over: each copy would run, meet the limit and re-arm itself, so every sweep added one more
    # chain of the same step (and, after the wait, units of one step running side by side).
    from crmsync import settings
    from crmsync.sync.jobs import create_job, run_step, start_job
    from tests.fixtures.factories import make_secret
    monkeypatch.setenv("CRMSYNC_OUTBOX_AFTER_SECONDS", "3")   # the production ratio (60 s vs waits of minutes), scaled
    settings.get_settings.cache_clear()
    with session_scope(db_url) as s:
        secret = make_secret(s, {"token": hubspot_sandbox.token})
        config = make_config(s, make_tenant(s), credentials_vault_id=secret.id, api_base_url=hubspot_sandbox.base_url,
                             account_id=str(hubspot_sandbox.app.options.portal_id), sync_direction="pull")
        job = create_job(s, config)
        start_job(s, job.id)
        step_id = s.scalars(select(SyncJobStep.id).where(SyncJobStep.job_id == job.id)
                            .order_by(SyncJobStep.position)).first()
    hubspot_sandbox.validate = False
    hubspot_sandbox.configure(faults={"rate_limit_rate": 1.0})   # every call: 429, ten-secondly (a 10 s wait)
    began = utcnow()
    with session_scope(db_url) as s:
        progress = run_step(s, step_id)
    assert progress is not None and not progress.done and progress.pages == 0
    sent = parked_broker("syncs")
    assert sent == [("crmsync.sync.run_step", [step_id])] * 2      # the first unit, then its wait

    with session_scope(db_url) as s:    # past the threshold, inside the wait: the message is on its way
        assert sweep_outbox(s, now=began + timedelta(seconds=6))["steps"] == 0
    assert parked_broker("syncs") == sent
    with session_scope(db_url) as s:    # past the wait: a message lost since is sent again
        assert sweep_outbox(s, now=began + timedelta(seconds=15))["steps"] == 1
    assert parked_broker("syncs") == [*sent, ("crmsync.sync.run_step", [step_id])]

"""Poison units under a real Celery worker: a unit that kills its worker process every time, and
task messages whose ids name nothing, or are too many or too few, fail once, with their reason,
instead of coming back for ever or filling the log."""
from __future__ import annotations

import os
import re
import signal

from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import SyncJob, SyncJobStep, new_id
from crmsync.sync.jobs import create_job, start_job
from crmsync.tasks import enqueue
from crmsync.tasks.names import DISPATCH_DUE_SYNCS, PROCESS_EVENT, RUN_STEP, START_JOB
from crmsync.tasks.producer import producer_app
from tests.fixtures.factories import make_config, make_secret, make_tenant
from tests.fixtures.workers import wait_until


def _step_of_a_new_job(db_url, hubspot_sandbox) -> tuple[str, str]:
    with session_scope(db_url) as s:
        secret = make_secret(s, {"token": hubspot_sandbox.token})
        config = make_config(s, make_tenant(s), credentials_vault_id=secret.id, api_base_url=hubspot_sandbox.base_url,
                             account_id=str(hubspot_sandbox.app.options.portal_id), sync_direction="pull")
        job = create_job(s, config)
        start_job(s, job.id, enqueue=False)
        step_id = s.scalars(select(SyncJobStep.id).where(SyncJobStep.job_id == job.id)
                            .order_by(SyncJobStep.position)).first()
        return job.id, step_id


def test_a_unit_that_kills_its_worker_every_time_fails_after_the_allowed_deaths(
        worker_env, db_url, hubspot_sandbox, celery_worker):
    # Whatever kills the process running it (the OOM killer, a native crash, the hard time limit),
    # acks_late + reject_on_worker_lost give the message back, and nothing in the dying process can
    # count the attempt: the unit used to be redelivered, and kill a process, for ever.
    job_id, step_id = _step_of_a_new_job(db_url, hubspot_sandbox)
    faults = hubspot_sandbox.app.faults
    hubspot_sandbox.configure(faults={"latency_ms": 3000})   # each run waits on the CRM: time to kill it

    def sent() -> int:       # requests the unit has started (counted before the added latency)
        return faults.injected["delayed"]

    def step_status() -> str:
        with session_scope(db_url) as s:
            return s.get(SyncJobStep, step_id).status

    enqueue(RUN_STEP, step_id)
    kills = 0
    while True:
        wait_until(lambda kills=kills: sent() > kills or step_status() != "pending", 15, interval=0.02,
                   what="the unit to run again, or to be failed")
        if step_status() != "pending":
            break
        assert kills < 3, "the unit ran again after its worker died three times (CRMSYNC_TASK_MAX_DEATHS)"
        for pid in celery_worker.child_pids():   # the one running the unit dies with the others
            os.kill(pid, signal.SIGKILL)
        kills += 1

    assert (kills, sent()) == (3, 3)       # failed on its fourth delivery, before touching the CRM
    assert celery_worker.alive()
    with session_scope(db_url) as s:
        step, job = s.get(SyncJobStep, step_id), s.get(SyncJob, job_id)
        assert step.status == "failed" and "worker process died 3 times" in step.error
        assert job.status == "failed" and "worker process died 3 times" in job.error


def test_task_messages_whose_ids_are_not_ids_fail_once_with_one_short_log_line(worker_env, celery_worker):
    # Anyone who can publish to the broker can send any "id". Such a message used to fail in the
    # library with a DataError, then again in the failure hook (a second traceback, the task
    # "raised unexpected"), and a huge id was written out whole in the log lines.
    huge = "7" * 100_000
    start = len(celery_worker.log())
    enqueue(PROCESS_EVENT, "not-a-uuid")
    enqueue(RUN_STEP, "not-a-uuid", queue="syncs")
    enqueue(PROCESS_EVENT, huge)
    ended = re.compile(r"Task crmsync\.(events\.process|sync\.run_step)\[[0-9a-f-]+\] (succeeded|raised)")

    def log() -> str:
        return celery_worker.log()[start:]
    wait_until(lambda: len(ended.findall(log())) == 3, 15, interval=0.1, what="the three tasks to end")
    text = log()
    assert "Traceback" not in text and "DataError" not in text and "raised" not in text, text[-3000:]
    assert len(re.findall(r"refused: crmsync\.\S+ 1 of its ids are not ids", text)) == 3
    assert huge[:1000] not in text and max(len(line) for line in text.splitlines()) < 500


def test_task_messages_with_too_many_or_too_few_ids_fail_once_with_one_short_log_line(worker_env, celery_worker):
    # Ids of the right form, but not the number the task takes: Celery used to call the task
    # with them anyway, and log its TypeError with a traceback.
    start = len(celery_worker.log())
    enqueue(RUN_STEP, new_id(), new_id(), queue="syncs")
    enqueue(RUN_STEP, queue="syncs")
    enqueue(DISPATCH_DUE_SYNCS, new_id())
    producer_app().send_task(START_JOB, args=[new_id()], kwargs={"force": True}, queue="syncs")
    ended = re.compile(r"Task crmsync\.(sync\.run_step|schedule\.dispatch_due_syncs|sync\.start_job)"
                       r"\[[0-9a-f-]+\] (succeeded|raised)")

    def log() -> str:
        return celery_worker.log()[start:]
    wait_until(lambda: len(ended.findall(log())) == 4, 15, interval=0.1, what="the four tasks to end")
    text = log()
    assert "Traceback" not in text and "TypeError" not in text and "raised" not in text, text[-3000:]
    refused = re.findall(r"refused: (.*)", text)
    assert sorted(refused) == [
        "crmsync.schedule.dispatch_due_syncs takes (), the message carries 1 id",
        "crmsync.sync.run_step takes (step_id), the message carries 0 ids",
        "crmsync.sync.run_step takes (step_id), the message carries 2 ids",
        "crmsync.sync.start_job takes (job_id), the message carries 1 id and keyword arguments (1)",
    ], refused
    assert len(re.findall(r"succeeded in [0-9.]+s: 'failed'", text)) == 4, text[-3000:]


def test_only_a_run_that_started_and_never_ended_counts_as_a_death(monkeypatch, redis_url, redis_client):
    """kombu marks every message a dying process gives back `redelivered`: those it only held (a
    countdown waiting, a prefetched message) too, which never ran. Counting those, a crash-looping
    pod would fail its rate-waiting units for deaths they never caused."""
    import uuid

    from crmsync.settings import get_settings
    from crmsync.sync import connect
    monkeypatch.setenv("CRMSYNC_REDIS_URL", redis_url)
    monkeypatch.setenv("CRMSYNC_BROKER_URL", redis_url)     # importing the workers' app needs one
    get_settings.cache_clear()
    from workers import base
    from workers.tasks import run_step
    for cached in (connect.redis_client, base._death_counter):
        cached.cache_clear()
    task_id = str(uuid.uuid4())
    run_step.push_request(id=task_id, retries=0, delivery_info={"redelivered": True})
    try:
        deaths, running = run_step._start()          # given back, never run: no death
        assert deaths == 0 and running is not None
        deaths, running = run_step._start()          # that run started and never ended: one
        assert deaths == 1
        run_step._end(running)
        deaths, running = run_step._start()          # that one ended: still one
        assert deaths == 1
        run_step._end(running)
    finally:
        run_step.pop_request()
        redis_client.delete(base.RUNNING_KEY.format(id=task_id, retries=0),
                            base.DEATHS_KEY.format(id=task_id, retries=0))
        for cached in (get_settings, connect.redis_client, base._death_counter):
            cached.cache_clear()

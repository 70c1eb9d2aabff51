"""A real `celery -A workers worker` (prefork, 2 processes) consuming what crmsync publishes by
task name."""
from __future__ import annotations

import importlib
from datetime import timedelta

from crmsync.db import session_scope
from crmsync.db.models import SyncJob
from crmsync.db.types import utcnow
from crmsync.tasks import enqueue
from crmsync.tasks.names import TASKS
from tests.fixtures.factories import make_config, make_tenant
from tests.fixtures.workers import wait_until


def test_worker_app_settings_and_tasks_match_the_table(worker_env):
    workers = importlib.import_module("workers")
    conf = workers.app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_ignore_result and not conf.result_backend
    assert conf.worker_send_task_events and conf.task_send_sent_event
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert conf.task_soft_time_limit < conf.task_time_limit < visibility
    registered = {name: task for name, task in workers.app.tasks.items() if name.startswith("crmsync.")}
    assert set(registered) == set(TASKS)
    for name, task in registered.items():
        assert conf.task_routes[name]["queue"] == TASKS[name].queue
        assert task.acks_late and task.ignore_result
        assert not task.acks_on_timeout   # a hard time limit requeues it, counted as a death


def test_a_task_published_by_name_is_run_by_the_worker(worker_env, db_url):
    # A parked job whose pause is over: the sweeper, run by the worker, touches it.
    long_ago = utcnow() - timedelta(hours=1)
    with session_scope(db_url) as s:
        config = make_config(s, make_tenant(s))
        job = SyncJob(tenant_id=config.tenant_id, sync_config_id=config.id, status="waiting_quota",
                      paused_until=long_ago, updated_at=long_ago)
        s.add(job)
        s.flush()
        job_id = job.id

    enqueue("crmsync.schedule.sweep_outbox")

    def touched():
        with session_scope(db_url) as s:
            return s.get(SyncJob, job_id).updated_at > long_ago
    wait_until(touched, 15, what="the worker to run crmsync.schedule.sweep_outbox")

"""The Celery app: `celery -A workers worker -Q events,syncs,backfills`, `celery -A workers beat`,
`celery -A workers flower`.

Settings come from crmsync (CRMSYNC_* variables). The app starts from the options crmsync's
producer sends with (`crmsync.tasks.producer.celery_settings`: queues, routes, JSON only, the
visibility timeout) and adds the worker-only ones. Fan-in is counted in PostgreSQL
(crm_sync_jobs.steps_done): no chords, no result backend.
"""
from __future__ import annotations

import logging

from celery import Celery, signals

from crmsync.automation import subscribe
from crmsync.runtime import settle_startup_objects
from crmsync.settings import SettingsError, get_settings
from crmsync.tasks.execution import TaskContextFilter
from crmsync.tasks.producer import celery_settings
from workers.metrics import check_settings as check_metrics_settings


def make_app() -> Celery:
    settings = get_settings()
    if settings.inline:
        raise SettingsError("CRMSYNC_BROKER_URL", "the Celery workers need a broker, e.g. redis://127.0.0.1:6379/1")
    check_metrics_settings(settings)
    subscribe()   # pulls and webhook events applied here run the rules' record-change triggers
    app = Celery("crmsync")
    app.conf.update(celery_settings(settings))
    hard = settings.task_time_limit
    app.conf.update(
        # A task is acked when it has finished, and re-queued if its process dies (kill -9, OOM):
        # every task is idempotent, and PostgreSQL holds the attempt counts.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Both limits sit well under the visibility timeout, or Redis hands a running task to a
        # second worker.
        task_time_limit=hard,
        task_soft_time_limit=max(1, hard - max(5, hard // 10)),
        worker_eta_task_limit=1000,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_soft_shutdown_timeout=30.0,
        worker_max_tasks_per_child=1000,
        worker_max_memory_per_child=400_000,  # KiB; a child above this is replaced after its task
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        worker_log_format="[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
        worker_disable_rate_limits=True,  # per-account budgets live in crmsync.ratelimit
        beat_schedule=_beat_schedule(),
    )
    return app


def _beat_schedule() -> dict:
    import beat_schedule
    return beat_schedule.schedule()


app = make_app()


@signals.worker_process_init.connect
def _fresh_connections_after_fork(**_):
    # Prefork children must not share the parent's pooled database connections.
    from crmsync.db import dispose_engines
    from crmsync.sync.connect import forget_adapters
    from crmsync.tasks.producer import reset_producer
    dispose_engines()
    reset_producer()
    forget_adapters()
    settle_startup_objects()


@signals.worker_ready.connect
def _settle_solo_worker(**_):
    # A solo or threads pool runs tasks in the main process, which no child signal reaches.
    settle_startup_objects()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _task_context_in_logs(logger=None, **_):
    # Celery's -l sets the root level; CRMSYNC_LOG_LEVEL sets crmsync's own loggers.
    logging.getLogger("crmsync").setLevel(get_settings().log_level)
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(TaskContextFilter())


from workers import tasks  # noqa: E402, F401  registers the tasks on `app`, which must exist first

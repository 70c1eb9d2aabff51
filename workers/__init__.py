"""The Celery app: `celery -A workers worker -Q events,syncs,backfills`, `celery -A workers beat`,
`celery -A workers flower`.

Settings come from crmsync (CRMSYNC_* variables). `crmsync.queue` publishes Celery protocol-2
messages with kombu on the queues (`QUEUES`) and transport options declared there; this app consumes
them with the same routing, JSON-only serialization and visibility timeout. Fan-in is counted in PostgreSQL (crm_sync_jobs.steps_done): no chords, no
result backend.
"""
from __future__ import annotations

import logging

from celery import Celery, signals

from crmsync.queue import (
    PUBLISH_RETRY_POLICY,
    QUEUES,
    SYNCS,
    TASKS,
    TaskContextFilter,
    broker_transport_options,
)
from crmsync.runtime import settle_startup_objects
from crmsync.settings import SettingsError, get_settings
from workers.metrics import check_settings as check_metrics_settings


def celery_settings(settings) -> dict:
    """Celery options of the worker app: the queues, routes and broker transport options that
    `crmsync.queue` publishes with."""
    from kombu import Exchange, Queue
    transport = broker_transport_options(settings)
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": settings.visibility_timeout,
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": 10,
        "broker_pool_acquire_timeout": 10,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_send_sent_event": True,
        "task_default_queue": SYNCS,
        "task_create_missing_queues": False,
        "task_queues": [Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        "task_routes": {name: {"queue": r.queue, "routing_key": r.queue} for name, r in TASKS.items()},
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        "timezone": "UTC",
        "enable_utc": True,
    }


def make_app() -> Celery:
    settings = get_settings()
    if settings.inline:
        raise SettingsError("CRMSYNC_BROKER_URL", "the Celery workers need a broker, e.g. redis://127.0.0.1:6379/1")
    check_metrics_settings(settings)
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
    from crmsync.queue import reset_producer
    from crmsync.sync.connect import forget_adapters
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
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(TaskContextFilter())


from workers import tasks  # noqa: F401  (registers the tasks on `app`)

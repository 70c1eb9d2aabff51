"""The worker host's Prometheus metrics: task counts, runtimes and tasks running, from Celery's
signals; served on CRMSYNC_WORKER_METRICS_PORT by the worker's main process.

The prefork pool's children run the tasks, so their samples go through PROMETHEUS_MULTIPROC_DIR
(required when the port is set: `check_settings`); the main process serves the sum. The directory is emptied when
the worker starts, before any child writes to it.
"""
from __future__ import annotations

import logging
import os
import time

from celery import signals

from crmsync import metrics
from crmsync.settings import SettingsError, get_settings


def check_settings(settings) -> None:
    """At start-up, before any child writes: the port needs the multiprocess directory."""
    if settings.worker_metrics_port and metrics.multiprocess_dir() is None:
        raise SettingsError("PROMETHEUS_MULTIPROC_DIR", "must name a directory when CRMSYNC_WORKER_METRICS_PORT "
                                                        "is set: the pool's processes write their samples there")

log = logging.getLogger("crmsync.tasks")

_started: dict[str, float] = {}
OUTCOMES = {"SUCCESS": "succeeded", "RETRY": "retried", "FAILURE": "error"}


def _queue(task) -> str:
    return ((getattr(task.request, "delivery_info", None) or {}).get("routing_key")) or "unknown"


@signals.worker_init.connect
def _serve_metrics(**_):
    port = get_settings().worker_metrics_port
    if not port:
        return
    metrics.clear_multiprocess_dir()
    from prometheus_client import start_http_server
    start_http_server(port, registry=metrics.process_registry())
    log.info("worker metrics on :%d/metrics", port)


@signals.worker_process_init.connect
def _child_starts(**_):
    metrics.start_process()


@signals.task_prerun.connect
def _task_started(task_id=None, task=None, **_):
    _started[task_id] = time.monotonic()
    metrics.TASKS_RUNNING.labels(task.name, _queue(task)).inc()


@signals.task_postrun.connect
def _task_ended(task_id=None, task=None, retval=None, state=None, **_):
    queue = _queue(task)
    metrics.TASKS_RUNNING.labels(task.name, queue).dec()
    began = _started.pop(task_id, None)
    if began is not None:
        metrics.TASK_RUNTIME.labels(task.name, queue).observe(time.monotonic() - began)
    # A task given up for good is stored as failed and returns normally (see CrmsyncTask).
    outcome = "failed" if retval == "failed" else OUTCOMES.get(state, "error")
    metrics.TASKS.labels(task.name, queue, outcome).inc()


@signals.worker_process_shutdown.connect
def _child_exits(pid=None, **_):
    metrics.forget_process(pid or os.getpid())

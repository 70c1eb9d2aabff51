"""Sending tasks to the workers with Celery's own API.

A producer-only Celery app per process: it imports no task module and sends by name
(`send_task`), so the message format, the `task-sent` event Flower shows
(`task_send_sent_event`) and the remote-control ping (`control.ping`, for `crmsync doctor`) are
Celery's, and a Celery upgrade changes them on both sides at once. Connections come from the app's
producer pool (one per process, shared by its threads, made again after a fork); a publish is
retried by `PUBLISH_RETRY_POLICY` before it gives up with `QueueUnavailable` (the outbox sweeper
re-sends what a down broker did not take).

`celery_settings` is the configuration both sides share: the worker app in `workers/` starts
from it and adds the worker-only options, so queues, routes, serialization and the visibility
timeout cannot drift apart.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

from crmsync.tasks.errors import NoBroker, QueueUnavailable, UnknownQueue
from crmsync.tasks.names import QUEUES, SYNCS, TASKS

log = logging.getLogger("crmsync.tasks")

PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}

_lock = threading.Lock()
_app: Any = None
_app_pid: int | None = None


def broker_transport_options(settings) -> dict[str, Any]:
    return {"visibility_timeout": settings.visibility_timeout}


def celery_settings(settings) -> dict[str, Any]:
    """Celery options shared by the producer and the worker app: broker, queues, routes, JSON only,
    no result backend, publish retries, task-sent events."""
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


def producer_app():
    """This process's producer-only Celery app (made again after a fork or `reset_producer`)."""
    global _app, _app_pid
    with _lock:
        if _app is None or _app_pid != os.getpid():
            from celery import Celery

            from crmsync.settings import get_settings
            settings = get_settings()
            if settings.inline:
                raise NoBroker("no broker configured (CRMSYNC_BROKER_URL); tasks run inline")
            app = Celery("crmsync-producer", set_as_current=False)
            app.conf.update(celery_settings(settings))
            _app, _app_pid = app, os.getpid()
        return _app


def reset_producer() -> None:
    """Forget the producer app and its connections (after settings change, e.g. in tests; after a fork)."""
    global _app, _app_pid
    with _lock:
        if _app is not None and _app_pid == os.getpid():
            try:
                _app.close()
            except Exception as err:  # noqa: BLE001  closing a half-dead pool must not mask the caller's work
                log.debug("closing the producer: %s", type(err).__name__)
        _app, _app_pid = None, None


def publish(name: str, ids: tuple[str, ...], *, queue: str, countdown: float | None = None,
            task_id: str | None = None) -> str:
    """Send task `name` with args `ids` to `queue` (and the task-sent event). Returns the task id."""
    if queue not in QUEUES:
        raise UnknownQueue(f"unknown queue {queue!r}; expected one of {', '.join(QUEUES)}")
    app = producer_app()
    try:
        result = app.send_task(name, args=list(ids), queue=queue, countdown=countdown or None, task_id=task_id,
                               retry=True, retry_policy=PUBLISH_RETRY_POLICY, ignore_result=True)
    except Exception as err:  # kombu/redis raise many connection types; the caller needs one
        raise QueueUnavailable(f"broker did not take {name}({', '.join(ids)}): {type(err).__name__}") from err
    return result.id


def ping_workers(timeout: float = 1.0) -> list[str]:
    """Names of the Celery workers that answer a remote-control ping within `timeout` seconds."""
    replies = producer_app().control.ping(timeout=timeout) or []
    return sorted(name for reply in replies for name in reply)


def check_broker_connection() -> None:
    """Raise unless the broker accepts a connection (within a few seconds)."""
    with producer_app().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)

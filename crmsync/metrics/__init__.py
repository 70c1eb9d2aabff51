"""Every Prometheus metric crmsync's processes count, in one place, with the one-line helpers the
code calls where things happen.

Process metrics (this module) are counted where the work is done — ingest app, Celery worker
processes, inline runs — and are labelled only by bounded sets: platform, entity, direction,
outcome, task name, queue, HTTP status class. No tenant, config or account id ever labels them, so
their number of series does not grow with the number of tenants. What is per config (sync lag,
checkpoint age, failing runs, rate budget left) is read from PostgreSQL and Redis at scrape time
by the state collector (`crmsync.metrics.state`, served by `crmsync metrics serve`): one series per
enabled config, owned by one process, gone when the config is.

Multiprocess: gunicorn workers and Celery's prefork children are separate processes, so with
PROMETHEUS_MULTIPROC_DIR set (a directory of its own per process group, emptied before the group
starts) each writes its samples to files there and `/metrics` adds them up (prometheus_client's
multiprocess mode). The variable must be set before this module is imported.

prometheus_client is imported when the metrics are first needed, not with this module: a process
counts once something can read its counts, i.e. with PROMETHEUS_MULTIPROC_DIR set (files another
process serves; the metrics are made on import, as always), once it has made its metrics (the ingest
app at start-up, the worker's task signals, `process_registry`, any use of a metric below), or once
prometheus_client is loaded (its default registry may be read). Otherwise (`crmsync sync run --inline`
and the like: a short process nobody scrapes) the helpers below count nothing and cost no import.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING

from crmsync.db import after_commit
from crmsync.platforms import platform_names

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # The metrics below open their files there as they are defined: a directory not made yet
    # (a Procfile's /tmp path) is made rather than failing the import.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# Outcome of one record in one direction (pull: CRM -> PostgreSQL; push: PostgreSQL -> CRM).
RECORD_OUTCOMES = {"created": "created", "updated": "updated", "deleted": "deleted",
                   "conflicts": "conflicted", "skipped": "echo_dropped", "failed": "failed"}
TASK_RUNTIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, float("inf"))

# The metrics, defined by `_make` (module attributes once made; `metrics.X` before that makes them).
METRIC_NAMES = ("RECORDS_SYNCED", "SYNC_RUNS", "CRM_REQUESTS", "CRM_THROTTLED", "INGEST_REQUESTS", "TASKS",
                "TASK_RUNTIME", "TASKS_RUNNING")
_made = False
_make_lock = threading.Lock()


def _make() -> None:
    """Define the metrics in prometheus_client's default registry, once per process."""
    global _made, RECORDS_SYNCED, SYNC_RUNS, CRM_REQUESTS, CRM_THROTTLED, INGEST_REQUESTS, TASKS, TASK_RUNTIME, \
        TASKS_RUNNING
    if _made:
        return
    with _make_lock:
        if _made:
            return
        from prometheus_client import Counter, Gauge, Histogram
        RECORDS_SYNCED = Counter(
            "crmsync_records_synced_total",
            "Records a sync or a webhook carried, by CRM, entity, direction (pull: CRM to PostgreSQL, push: "
            "PostgreSQL to CRM) and outcome (echo_dropped: a version that changed nothing here, such as our own "
            "write coming back)",
            ["platform", "entity", "direction", "outcome"])
        SYNC_RUNS = Counter(
            "crmsync_sync_runs_total", "Sync jobs that ended, by CRM and final status (succeeded, failed)",
            ["platform", "status"])
        CRM_REQUESTS = Counter(
            "crmsync_crm_requests_total", "CRM API responses, by CRM and status class (2xx, 4xx, 429, 5xx)",
            ["platform", "status"])
        CRM_THROTTLED = Counter(
            "crmsync_crm_throttled_total",
            "CRM API answers saying the account is rate limited (HubSpot, Pipedrive: 429; Salesforce: 403 "
            "REQUEST_LIMIT_EXCEEDED), by CRM", ["platform"])
        INGEST_REQUESTS = Counter(
            "crmsync_ingest_requests_total", "Requests the ingest app answered, by endpoint and HTTP status",
            ["endpoint", "status"])
        TASKS = Counter(
            "crmsync_celery_tasks_total",
            "Celery tasks run, by name, queue and outcome (succeeded, retried: rate wait or transient error, "
            "failed: given up, stored with its reason; error: raised out of the task)",
            ["task", "queue", "outcome"])
        TASK_RUNTIME = Histogram(
            "crmsync_celery_task_runtime_seconds", "Wall time of one Celery task run", ["task", "queue"],
            buckets=TASK_RUNTIME_BUCKETS)
        TASKS_RUNNING = Gauge(
            "crmsync_celery_tasks_running", "Celery tasks running now, by name and queue", ["task", "queue"],
            multiprocess_mode="livesum")
        _made = True
    _zero_series()


def __getattr__(name: str):
    if name in METRIC_NAMES:
        _make()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def counting() -> bool:
    """Whether this process counts (see the module's doc); the metrics are made when it does."""
    if not _made and (multiprocess_dir() is not None or "prometheus_client" in sys.modules):
        _make()
    return _made


def _zero_series() -> None:
    for platform in platform_names():
        CRM_THROTTLED.labels(platform).inc(0)
        for status in ("succeeded", "failed"):
            SYNC_RUNS.labels(platform, status).inc(0)


def start_process() -> None:
    """Series that exist from the start (at 0), so a rate over them is 0 rather than no data. Called
    when the metrics are made and again in each forked process (pool child, gunicorn worker): in
    multiprocess mode a process writes its file on first use, and one that has done no work yet would
    show nothing. A process that calls it counts from then on."""
    if _made:
        _zero_series()
    else:
        _make()


def count_records(session, platform: str, entity: str, direction: str, counts: dict[str, int]) -> None:
    """Count one unit's records (`ApplyResult.counts()`) once `session` commits."""
    if not counting():
        return

    def count() -> None:
        for name, outcome in RECORD_OUTCOMES.items():
            if counts.get(name):
                RECORDS_SYNCED.labels(platform, entity, direction, outcome).inc(counts[name])
    after_commit(session, count)


def count_sync_run(session, platform: str, status: str) -> None:
    """A sync job ended with `status`, counted once `session` commits."""
    if counting():
        after_commit(session, SYNC_RUNS.labels(platform, status).inc)


def observe_crm_response(platform: str, status: int) -> None:
    """Every CRM answer, by status class (`CRMClient._exchange`, the one place they come back)."""
    if counting():
        CRM_REQUESTS.labels(platform, "429" if status == 429 else f"{status // 100}xx").inc()


def count_throttled(platform: str) -> None:
    """The CRM said the account is rate limited, whatever the status it said it with
    (`CRMClient._penalize`, which every such answer goes through)."""
    if counting():
        CRM_THROTTLED.labels(platform).inc()


def count_ingest_request(endpoint: str | None, status: int) -> None:
    """`endpoint` is the route's name (a bounded set), never the path (it holds config ids). The
    ingest app serves GET /metrics: it always counts."""
    _make()
    INGEST_REQUESTS.labels(endpoint or "unknown", str(status)).inc()


# --- exposition -------------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@cache
def _live_process_collector() -> type:
    from prometheus_client import multiprocess

    class _LiveProcessCollector(multiprocess.MultiProcessCollector):
        """The multiprocess files added up, after forgetting the live gauges of processes that are gone
        (a pool child killed with SIGKILL never says so; its running tasks are not running)."""

        def collect(self):
            path = self._path
            for name in os.listdir(path):
                if name.startswith("gauge_live") and name.endswith(".db"):
                    pid = name.rsplit("_", 1)[-1][:-3]
                    if pid.isdigit() and not _alive(int(pid)):
                        multiprocess.mark_process_dead(int(pid), path)
            return super().collect()
    return _LiveProcessCollector


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_registry(extra: Iterable = ()) -> CollectorRegistry:
    """What a process group's `/metrics` serves: every process's samples when PROMETHEUS_MULTIPROC_DIR
    is set (gunicorn, Celery prefork), else this process's own; plus `extra` collectors."""
    from prometheus_client import REGISTRY, CollectorRegistry
    _make()
    path = multiprocess_dir()
    if path is None and not extra:
        return REGISTRY
    registry = CollectorRegistry()
    if path is not None:
        _live_process_collector()(registry, path)
    else:
        for collector in (RECORDS_SYNCED, SYNC_RUNS, CRM_REQUESTS, CRM_THROTTLED, INGEST_REQUESTS, TASKS,
                          TASK_RUNTIME, TASKS_RUNNING):
            registry.register(collector)
    for collector in extra:
        registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The text format of `registry` (default: the process group's) and its content type."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
    return generate_latest(registry or process_registry()), CONTENT_TYPE_LATEST


def forget_process(pid: int | None = None) -> None:
    """A process of the group exits: its live gauges stop counting (multiprocess mode only)."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid or os.getpid(), path)


def clear_multiprocess_dir() -> None:
    """Before a process group starts: samples left by an earlier run would be added to this one's."""
    path = multiprocess_dir()
    if path is None:
        return
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))


if multiprocess_dir() is not None:
    _make()     # as every process of a multiprocess group always has: its series at 0 in its own file

"""Gauges read at scrape time from PostgreSQL, the broker and the rate budget: how far behind each
config's sync is, what waits (conflicts, webhook deliveries and events, queued tasks) and how much
of each CRM account's rate budget is left.

These are the operator's view across every tenant (like the beat dispatcher's claim of due
configs), so the queries are not scoped to one; they export config ids and counts, never CRM data.
Per-config series are bounded by the enabled configs and go away with them. One process serves
them (`crmsync metrics serve`): several would multiply the same series and the database's work.

Each source (database, broker, rate budget) is read on its own; one that fails is reported by
`crmsync_metrics_source_up{source}` = 0 and the others are still served.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select

from crmsync.db.models import (
    JOB_ACTIVE_STATUSES,
    ConflictRecord,
    SyncCheckpoint,
    SyncConfig,
    SyncJob,
    WebhookDelivery,
    WebhookEvent,
)
from crmsync.db.types import utcnow
from crmsync.platforms import platform_names

log = logging.getLogger(__name__)

CONFIG_LABELS = ["config_id", "platform"]


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


class StateCollector(Collector):
    """A prometheus_client collector: every `collect()` (one scrape) reads the current state."""

    def __init__(self, database_url: str | None = None):
        self.database_url = database_url

    def describe(self) -> list:
        return []   # names vary with the sources that answer; registering must not query them

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("crmsync_metrics_source_up",
                               "Whether the state collector could read a source at this scrape", labels=["source"])
        duration = GaugeMetricFamily("crmsync_metrics_collect_seconds", "Time this scrape spent reading a source",
                                     labels=["source"])
        configs: list = []
        for source, read in (("database", self._database), ("broker", self._broker),
                             ("rate_budget", self._rate_budget)):
            started = time.monotonic()
            try:
                families = list(read(configs))
            except Exception as err:  # noqa: BLE001  one unreadable source must not hide the others
                log.warning("metrics: could not read the %s: %s", source, f"{type(err).__name__}: {err}"[:300])
                families, ok = [], 0.0
            else:
                ok = 1.0
            up.add_metric([source], ok)
            duration.add_metric([source], time.monotonic() - started)
            yield from families
        yield up
        yield duration

    # --- PostgreSQL ----------------------------------------------------------------------------
    def _database(self, configs: list) -> Iterator[GaugeMetricFamily]:
        from crmsync.db import session_scope
        now = utcnow()
        with session_scope(self.database_url) as session:
            configs[:] = session.execute(select(
                SyncConfig.id, SyncConfig.platform, SyncConfig.account_id, SyncConfig.sync_frequency_minutes,
                SyncConfig.sync_direction, SyncConfig.created_at).where(SyncConfig.enabled.is_(True))).all()
            yield from self._sync_progress(session, configs, now)
            yield from self._failing_configs(session, configs)
            yield from self._jobs(session)
            yield from self._waiting(session, now)

    def _sync_progress(self, session, configs, now) -> Iterator[GaugeMetricFamily]:
        frequency = GaugeMetricFamily("crmsync_sync_frequency_seconds",
                                      "How often the config is synced (0: webhooks only)", labels=CONFIG_LABELS)
        lag = GaugeMetricFamily(
            "crmsync_sync_lag_seconds",
            "Now minus the point up to which every CRM change is synced (the oldest entity's high-water mark "
            "of its last complete listing; the config's creation before its first)", labels=CONFIG_LABELS)
        age = GaugeMetricFamily("crmsync_checkpoint_age_seconds",
                                "Time since the config's sync last saved progress", labels=CONFIG_LABELS)
        marks = {row.config_id: row for row in session.execute(
            select(SyncCheckpoint.config_id, func.min(SyncCheckpoint.synced_until).label("synced_until"),
                   func.max(SyncCheckpoint.updated_at).label("saved_at"))
            .group_by(SyncCheckpoint.config_id))}
        for config in configs:
            labels = [config.id, config.platform]
            frequency.add_metric(labels, 60.0 * (config.sync_frequency_minutes or 0))
            if config.sync_direction == "push":
                continue  # nothing is pulled: no high-water mark to be behind
            mark = marks.get(config.id)
            lag.add_metric(labels, _age(now, (mark.synced_until if mark else None) or config.created_at))
            age.add_metric(labels, _age(now, (mark.saved_at if mark else None) or config.created_at))
        yield from (frequency, lag, age)

    def _failing_configs(self, session, configs) -> Iterator[GaugeMetricFamily]:
        failing = GaugeMetricFamily("crmsync_config_failed_runs",
                                    "Sync jobs of the config that failed since its last successful one",
                                    labels=CONFIG_LABELS)
        last_ok = (select(SyncJob.sync_config_id, func.max(SyncJob.created_at).label("at"))
                   .where(SyncJob.status == "succeeded").group_by(SyncJob.sync_config_id).subquery())
        counts = dict(session.execute(
            select(SyncJob.sync_config_id, func.count())
            .outerjoin(last_ok, last_ok.c.sync_config_id == SyncJob.sync_config_id)
            .where(SyncJob.status == "failed", or_(last_ok.c.at.is_(None), SyncJob.created_at > last_ok.c.at))
            .group_by(SyncJob.sync_config_id)).all())
        for config in configs:
            failing.add_metric([config.id, config.platform], counts.get(config.id, 0))
        yield failing

    def _jobs(self, session) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("crmsync_sync_jobs", "Sync jobs not finished, by status", labels=["status"])
        counts = dict(session.execute(select(SyncJob.status, func.count())
                                      .where(SyncJob.status.in_(JOB_ACTIVE_STATUSES)).group_by(SyncJob.status)).all())
        for status in JOB_ACTIVE_STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs

    def _waiting(self, session, now) -> Iterator[GaugeMetricFamily]:
        """Conflicts held for a person, deliveries not yet split, events not yet applied: count and
        the oldest one's age, by CRM."""
        tables = (
            ("crmsync_conflicts_pending", "crmsync_conflict_oldest_age_seconds", "conflicts held for review",
             ConflictRecord.platform, ConflictRecord.created_at, ConflictRecord.status == "pending"),
            ("crmsync_webhook_deliveries_waiting", "crmsync_webhook_delivery_oldest_age_seconds",
             "webhook deliveries not yet split into events", WebhookDelivery.platform, WebhookDelivery.received_at,
             WebhookDelivery.error.is_(None)),
            ("crmsync_webhook_deliveries_failed", None, "webhook deliveries that failed to split (replay them)",
             WebhookDelivery.platform, WebhookDelivery.received_at, WebhookDelivery.error.is_not(None)),
            ("crmsync_webhook_events_unprocessed", "crmsync_webhook_event_oldest_age_seconds",
             "webhook and product events not yet applied", WebhookEvent.platform, WebhookEvent.received_at,
             WebhookEvent.processed.is_(False)),
        )
        for count_name, age_name, what, platform, received, waiting in tables:
            count = GaugeMetricFamily(count_name, f"Number of {what}, by platform", labels=["platform"])
            age = GaugeMetricFamily(age_name, f"Age of the oldest of the {what}, by platform",
                                    labels=["platform"]) if age_name else None
            found = {name or "unknown": (n, oldest) for name, n, oldest in session.execute(
                select(platform, func.count(), func.min(received)).where(waiting).group_by(platform))}
            for name in sorted(set(platform_names()) | set(found)):   # a CRM with none waiting says 0
                n, oldest = found.get(name, (0, None))
                count.add_metric([name], n)
                if age is not None:
                    age.add_metric([name], _age(now, oldest))
            yield count
            if age is not None:
                yield age

    # --- the broker ----------------------------------------------------------------------------
    def _broker(self, _configs) -> Iterator[GaugeMetricFamily]:
        from crmsync.settings import get_settings
        if get_settings().inline:
            return
        from kombu.exceptions import ChannelError

        from crmsync.tasks.names import QUEUES
        from crmsync.tasks.producer import producer_app
        length = GaugeMetricFamily("crmsync_queue_length",
                                   "Messages waiting in the broker's queue (not yet taken by a worker)",
                                   labels=["queue"])
        with producer_app().connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
            channel = conn.default_channel
            for queue in QUEUES:
                try:
                    length.add_metric([queue], channel.queue_declare(queue=queue, passive=True).message_count)
                except ChannelError:
                    # Redis keeps no empty list: a queue never used (or drained) does not exist yet.
                    length.add_metric([queue], 0)
                    channel = conn.channel()
        yield length

    # --- rate budgets ---------------------------------------------------------------------------
    def _rate_budget(self, configs) -> Iterator[GaugeMetricFamily]:
        from crmsync.sync.connect import rate_budget
        budget = rate_budget()
        if not budget.shared:
            return  # an in-process budget belongs to another process; this one knows nothing of it
        left = GaugeMetricFamily("crmsync_rate_budget_remaining",
                                 "Calls (Pipedrive: tokens) the account's budget would grant now, by window kind",
                                 labels=[*CONFIG_LABELS, "kind"])
        capacity = GaugeMetricFamily("crmsync_rate_budget_capacity",
                                     "The account's budget per window, by window kind", labels=[*CONFIG_LABELS, "kind"])
        for config in configs:
            if not config.account_id:
                continue
            for kind, (remaining, cap) in budget.levels(config.platform, config.account_id).items():
                left.add_metric([config.id, config.platform, kind], remaining)
                capacity.add_metric([config.id, config.platform, kind], cap)
        yield from (left, capacity)

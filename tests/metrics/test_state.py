"""The state collector against real PostgreSQL and Redis: every gauge read back from rows and
budgets this test made, per config where it says so, and a source that fails reported as down."""
from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from crmsync.db import session_scope
from crmsync.db.models import (
    ConflictRecord,
    SyncCheckpoint,
    SyncJob,
    WebhookDelivery,
    WebhookEvent,
    new_id,
)
from crmsync.db.types import utcnow
from crmsync.metrics.state import StateCollector
from crmsync.ratelimit import DAILY, STANDARD, Demand, Limit
from crmsync.tasks.names import START_JOB
from tests.fixtures.factories import make_config, make_tenant

BROKER_DB, STATE_DB = 8, 9     # databases no test's Celery worker consumes: what is published stays


@pytest.fixture
def collector_env(monkeypatch, db_url, worker_redis):
    """Settings on the test database and the session's private Redis (emptied), on databases of
    their own: the broker on 8, the rate budget on 9."""
    from crmsync.tasks.producer import reset_producer
    from tests.fixtures.db import _set_env
    for db in (BROKER_DB, STATE_DB):
        worker_redis.client(db).flushdb()
    env = _set_env(monkeypatch, {"CRMSYNC_DATABASE_URL": db_url,
                                 "CRMSYNC_REDIS_URL": f"redis://127.0.0.1:{worker_redis.port}/{STATE_DB}",
                                 "CRMSYNC_BROKER_URL": f"redis://127.0.0.1:{worker_redis.port}/{BROKER_DB}"})
    reset_producer()
    yield env
    reset_producer()
    for db in (BROKER_DB, STATE_DB):
        worker_redis.client(db).flushdb()


class Scrape:
    """One collection's samples (each `collect()` reads the sources again)."""

    def __init__(self, url=None):
        registry = CollectorRegistry()
        registry.register(StateCollector(url))
        self.samples = {(s.name, frozenset(s.labels.items())): s.value
                        for family in registry.collect() for s in family.samples}

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))


def scrape(url=None) -> Scrape:
    return Scrape(url)


def value(found: Scrape, name, **labels):
    got = found.get(name, **labels)
    assert got is not None, f"no sample {name}{labels}"
    return got


def job(session, config, status, minutes_ago):
    at = utcnow() - timedelta(minutes=minutes_ago)
    session.add(SyncJob(id=new_id(), tenant_id=config.tenant_id, sync_config_id=config.id, status=status,
                        created_at=at, finished_at=at, counts={}))
    session.flush()


def test_per_config_lag_checkpoint_age_and_failed_runs(collector_env, db_url):
    now = utcnow()
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        behind = make_config(s, tenant, sync_frequency_minutes=15)
        fresh = make_config(s, tenant, platform="pipedrive", sync_frequency_minutes=0)
        pushing = make_config(s, make_tenant(s), sync_direction="push")
        for entity, hours in (("contact", 5), ("company", 2)):
            s.add(SyncCheckpoint(id=new_id(), tenant_id=tenant.id, config_id=behind.id, entity_type=entity,
                                 synced_until=now - timedelta(hours=hours), updated_at=now - timedelta(minutes=hours)))
        s.add(SyncCheckpoint(id=new_id(), tenant_id=tenant.id, config_id=fresh.id, entity_type="deal",
                             synced_until=now - timedelta(seconds=30), updated_at=now - timedelta(seconds=30)))
        job(s, behind, "failed", 300)
        job(s, behind, "succeeded", 200)
        job(s, behind, "failed", 100)
        job(s, behind, "failed", 50)
        job(s, fresh, "failed", 10)
        job(s, fresh, "running", 1)
        ids = behind.id, fresh.id, pushing.id

    registry = scrape()
    behind_id, fresh_id, pushing_id = ids
    assert value(registry, "crmsync_sync_frequency_seconds", config_id=behind_id, platform="hubspot") == 900
    assert value(registry, "crmsync_sync_frequency_seconds", config_id=fresh_id, platform="pipedrive") == 0
    # the oldest entity's high-water mark sets the lag; the newest save sets the checkpoint age
    assert value(registry, "crmsync_sync_lag_seconds", config_id=behind_id, platform="hubspot") == \
        pytest.approx(5 * 3600, abs=60)
    assert value(registry, "crmsync_checkpoint_age_seconds", config_id=behind_id, platform="hubspot") == \
        pytest.approx(2 * 60, abs=60)
    assert value(registry, "crmsync_sync_lag_seconds", config_id=fresh_id, platform="pipedrive") < 120
    assert registry.get("crmsync_sync_lag_seconds", config_id=pushing_id, platform="hubspot") \
        is None    # a push-only config pulls nothing, so it cannot be behind
    # failures since the last success: two for one, one (and never a success) for the other
    assert value(registry, "crmsync_config_failed_runs", config_id=behind_id, platform="hubspot") == 2
    assert value(registry, "crmsync_config_failed_runs", config_id=fresh_id, platform="pipedrive") == 1
    assert value(registry, "crmsync_config_failed_runs", config_id=pushing_id, platform="hubspot") == 0
    assert value(registry, "crmsync_sync_jobs", status="running") == 1
    assert value(registry, "crmsync_sync_jobs", status="waiting_quota") == 0
    assert value(registry, "crmsync_metrics_source_up", source="database") == 1


def test_waiting_conflicts_deliveries_and_events_with_the_oldest_age(collector_env, db_url):
    now = utcnow()
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        config = make_config(s, tenant)
        for hours, status in ((30, "pending"), (2, "pending"), (50, "resolved")):
            s.add(ConflictRecord(id=new_id(), tenant_id=tenant.id, config_id=config.id, platform="hubspot",
                                 entity_type="contact", entity_id=new_id(), local_snapshot={}, remote_snapshot={},
                                 conflicting_fields=["email"], status=status,
                                 created_at=now - timedelta(hours=hours)))
        for minutes, error in ((12, None), (1, None), (40, "DataError: bad")):
            s.add(WebhookDelivery(id=new_id(), tenant_id=tenant.id, config_id=config.id, platform="hubspot",
                                  account_id=config.account_id, body="[]", events=0, error=error,
                                  received_at=now - timedelta(minutes=minutes)))
        for minutes, processed in ((7, False), (3, True)):
            s.add(WebhookEvent(id=new_id(), tenant_id=tenant.id, config_id=config.id, platform="hubspot",
                               account_id=config.account_id, event_key=new_id(), event_type="contact.updated",
                               payload={}, processed=processed, received_at=now - timedelta(minutes=minutes)))

    registry = scrape()
    assert value(registry, "crmsync_conflicts_pending", platform="hubspot") == 2
    assert value(registry, "crmsync_conflict_oldest_age_seconds", platform="hubspot") == \
        pytest.approx(30 * 3600, abs=60)
    assert value(registry, "crmsync_webhook_deliveries_waiting", platform="hubspot") == 2
    assert value(registry, "crmsync_webhook_delivery_oldest_age_seconds", platform="hubspot") == \
        pytest.approx(12 * 60, abs=60)
    assert value(registry, "crmsync_webhook_deliveries_failed", platform="hubspot") == 1
    assert value(registry, "crmsync_webhook_events_unprocessed", platform="hubspot") == 1
    assert value(registry, "crmsync_webhook_event_oldest_age_seconds", platform="hubspot") == \
        pytest.approx(7 * 60, abs=60)


def test_rate_budget_left_per_window_kind_and_queue_lengths(collector_env, db_url):
    from crmsync.sync.connect import rate_budget
    from crmsync.tasks.producer import publish
    with session_scope(db_url) as s:
        config = make_config(s, make_tenant(s), account_id="4242")
        idle = make_config(s, make_tenant(s), account_id="4343")
        config_id, idle_id = config.id, idle.id
    budget = rate_budget()
    for _ in range(4):
        assert budget.try_acquire_many("hubspot", "4242", [Demand(STANDARD, Limit(100, 10.0)),
                                                            Demand(DAILY, Limit.daily(1000))]).granted
    for _ in range(3):
        publish(START_JOB, (new_id(),), queue="syncs")
    publish("crmsync.events.split", (new_id(),), queue="events")

    registry = scrape()
    assert value(registry, "crmsync_rate_budget_remaining", config_id=config_id, platform="hubspot",
                 kind="standard") == 96
    assert value(registry, "crmsync_rate_budget_capacity", config_id=config_id, platform="hubspot",
                 kind="daily") == 1000
    assert value(registry, "crmsync_rate_budget_remaining", config_id=config_id, platform="hubspot",
                 kind="daily") == 996
    # an account whose calls never took from its budget has no limit to report against
    assert registry.get("crmsync_rate_budget_remaining", config_id=idle_id, platform="hubspot",
                        kind="standard") is None
    budget.penalize("hubspot", "4242", kind=DAILY)
    assert value(scrape(), "crmsync_rate_budget_remaining", config_id=config_id, platform="hubspot",
                 kind="standard") == 0
    assert value(registry, "crmsync_queue_length", queue="syncs") == 3
    assert value(registry, "crmsync_queue_length", queue="events") == 1
    assert value(registry, "crmsync_queue_length", queue="backfills") == 0
    assert value(registry, "crmsync_metrics_source_up", source="broker") == 1
    assert value(registry, "crmsync_metrics_source_up", source="rate_budget") == 1


def test_an_unreachable_source_is_reported_down_and_the_others_still_served(monkeypatch, db_url):
    from crmsync.tasks.producer import reset_producer
    from tests.fixtures.db import _set_env
    from tests.fixtures.workers import free_port
    _set_env(monkeypatch, {"CRMSYNC_DATABASE_URL": db_url,
                           "CRMSYNC_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
                           "CRMSYNC_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    with session_scope(db_url) as s:
        make_config(s, make_tenant(s), account_id="4444")
    reset_producer()
    try:
        registry = scrape()
    finally:
        reset_producer()
    assert value(registry, "crmsync_metrics_source_up", source="database") == 1
    assert value(registry, "crmsync_metrics_source_up", source="broker") == 0
    assert value(registry, "crmsync_metrics_source_up", source="rate_budget") == 0
    assert value(registry, "crmsync_sync_jobs", status="queued") == 0

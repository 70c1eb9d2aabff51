"""Process metrics: counted once the transaction commits (never for a rolled-back attempt), CRM
responses and rate-limit answers counted in the one request loop, the ingest app's GET /metrics, the
multiprocess files of processes that are gone, and gunicorn starting with an empty directory."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from crmsync import metrics
from crmsync.db import session_scope
from tests.fixtures.ingest import start_ingest_server


def records(outcome: str, direction: str = "pull") -> float:
    return REGISTRY.get_sample_value("crmsync_records_synced_total", {
        "platform": "hubspot", "entity": "contact", "direction": direction, "outcome": outcome}) or 0.0


def test_records_are_counted_when_the_transaction_commits_and_never_for_a_rolled_back_one(db_url):
    before = records("created"), records("echo_dropped"), records("conflicted")
    with pytest.raises(RuntimeError), session_scope(db_url) as session:
        metrics.count_records(session, "hubspot", "contact", "pull", {"created": 5})
        raise RuntimeError("the unit failed")
    with session_scope(db_url) as session:
        with session.begin_nested():
            metrics.count_records(session, "hubspot", "contact", "pull", {"created": 2, "skipped": 3})
        assert records("created") == before[0]          # a released SAVEPOINT is not a commit
        with pytest.raises(RuntimeError), session.begin_nested():
            metrics.count_records(session, "hubspot", "contact", "pull", {"created": 7})
            raise RuntimeError("this SAVEPOINT rolls back, the transaction goes on")
        metrics.count_records(session, "hubspot", "contact", "pull", {"conflicts": 1, "updated": 0})
    assert (records("created"), records("echo_dropped"), records("conflicted")) == \
        (before[0] + 2, before[1] + 3, before[2] + 1)


def test_crm_responses_and_429s_are_counted_by_platform(hubspot_sandbox):
    from crmsync.platforms.errors import RateLimited
    from crmsync.platforms.hubspot.client import HubSpotClient

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, {"platform": "hubspot", **labels}) or 0.0
    before = sample("crmsync_crm_requests_total", status="2xx"), sample("crmsync_crm_requests_total", status="429"), \
        sample("crmsync_crm_throttled_total")
    client = HubSpotClient({"token": hubspot_sandbox.token}, base_url=hubspot_sandbox.base_url, wait=False)
    client.list_page("contacts")
    hubspot_sandbox.configure(faults={"rate_limit_rate": 1.0})
    with pytest.raises(RateLimited):
        client.list_page("contacts")
    after = sample("crmsync_crm_requests_total", status="2xx"), sample("crmsync_crm_requests_total", status="429"), \
        sample("crmsync_crm_throttled_total")
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_salesforce_says_rate_limited_with_a_403_and_it_counts_as_throttled(salesforce_sandbox):
    from crmsync.platforms.errors import RateLimited
    from crmsync.platforms.salesforce import SalesforceAdapter
    from tests.platforms.salesforce.conftest import oauth_credentials

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, {"platform": "salesforce", **labels}) or 0.0
    adapter = SalesforceAdapter(credentials=oauth_credentials(salesforce_sandbox.app),
                                base_url=salesforce_sandbox.base_url, wait=False)
    adapter.account_id()
    salesforce_sandbox.configure(api_limit=50)
    salesforce_sandbox.admin("POST", "usage", {"used": 50})
    before = sample("crmsync_crm_requests_total", status="4xx"), sample("crmsync_crm_throttled_total")
    with pytest.raises(RateLimited):
        adapter.client.query_records("SELECT Id FROM Account")
    assert (sample("crmsync_crm_requests_total", status="4xx"), sample("crmsync_crm_throttled_total")) == \
        (before[0] + 1, before[1] + 1)


def test_ingest_metrics_endpoint_serves_the_text_format_without_ids(ingest_client, session):
    from tests.fixtures.ingest import hubspot_portal
    account = hubspot_portal(session)
    session.commit()
    res = ingest_client.get("/metrics")
    assert res.status_code == 200 and res.content_type.startswith("text/plain")
    text = res.get_data(as_text=True)
    assert 'crmsync_crm_throttled_total{platform="hubspot"}' in text
    assert 'crmsync_sync_runs_total{platform="pipedrive",status="failed"}' in text
    assert account.tenant.id not in text and account.config.id not in text
    ingest_client.post(f"/webhooks/pipedrive/{account.config.id}", data=b"{}")
    text = ingest_client.get("/metrics").get_data(as_text=True)
    assert 'crmsync_ingest_requests_total{endpoint="ingest.metrics",status="200"}' in text
    assert 'crmsync_ingest_requests_total{endpoint="ingest.pipedrive_webhook",status="401"}' in text


CHILD = """
import os, sys
from crmsync import metrics
metrics.TASKS_RUNNING.labels("crmsync.sync.run_step", "syncs").inc()
metrics.TASKS.labels("crmsync.sync.run_step", "syncs", "succeeded").inc(2)
"""


def test_multiprocess_sums_every_process_and_forgets_the_running_tasks_of_dead_ones(tmp_path):
    """Two children count (as prefork children do) and exit without saying so (as SIGKILL does):
    their counts stay, their running tasks do not. The directory need not exist yet (a Procfile's)."""
    directory = tmp_path / "made-by-the-first-process"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", CHILD], env=env, check=True)
    assert any(p.name.startswith("gauge_livesum") for p in directory.iterdir())
    out = subprocess.run([sys.executable, "-c", "from crmsync import metrics; print(metrics.exposition()[0].decode())"],
                         env=env, check=True, capture_output=True, text=True).stdout
    assert 'crmsync_celery_tasks_total{outcome="succeeded",queue="syncs",task="crmsync.sync.run_step"} 4.0' in out
    assert 'crmsync_celery_tasks_running{queue="syncs",task="crmsync.sync.run_step"}' not in out
    assert not any(p.name.startswith("gauge_livesum") for p in directory.iterdir())


EARLIER_RUN = """
from crmsync import metrics
metrics.INGEST_REQUESTS.labels("ingest.readyz", "200").inc(1000)
"""


def test_gunicorn_empties_the_metrics_directory_before_its_workers_count(ingest_env, tmp_path):
    directory = tmp_path / "multiproc"
    directory.mkdir()
    subprocess.run([sys.executable, "-c", EARLIER_RUN], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
                   check=True)
    assert any(directory.iterdir())
    server = start_ingest_server({**ingest_env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}, tmp_path, workers=2)
    try:
        for _ in range(6):
            assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        text = requests.get(server.url + "/metrics", timeout=5).text
    finally:
        server.stop()
    counted = {(s.labels["endpoint"], s.labels["status"]): s.value
               for family in text_string_to_metric_families(text) if family.name == "crmsync_ingest_requests"
               for s in family.samples if s.name == "crmsync_ingest_requests_total"}
    assert ("ingest.readyz", "200") not in counted                # the earlier run's samples are gone
    assert counted[("ingest.healthz", "200")] == 7                # the start-up probe and six, whichever worker answered


IDLE_POOL_CHILD = """
import os
from crmsync import metrics
metrics.clear_multiprocess_dir()      # as the worker's main process does before it forks the pool
child = os.fork()
if child == 0:
    metrics.start_process()           # a pool child that has not run a task yet
    os._exit(0)
os.waitpid(child, 0)
"""


def test_a_process_that_has_done_nothing_yet_still_shows_the_series_that_start_at_zero(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", IDLE_POOL_CHILD], env=env, check=True)
    # read as the worker's main process serves it, without this reader writing files of its own
    read = ("from prometheus_client import CollectorRegistry, generate_latest, multiprocess\n"
            "registry = CollectorRegistry(); multiprocess.MultiProcessCollector(registry)\n"
            "print(generate_latest(registry).decode())")
    out = subprocess.run([sys.executable, "-c", read], env=env, check=True, capture_output=True, text=True).stdout
    assert 'crmsync_crm_throttled_total{platform="pipedrive"} 0.0' in out
    assert 'crmsync_sync_runs_total{platform="hubspot",status="failed"} 0.0' in out

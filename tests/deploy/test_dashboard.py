"""deploy/grafana/crmsync.json against a live scrape: Prometheus (Debian's binary, its own data
directory, 127.0.0.1, a 1 s scrape interval, the alert rules loaded) scrapes a running stack —
the ingest app under gunicorn, a Celery worker host, the state collector — while a worker syncs a
HubSpot and a Pipedrive sandbox account; then every query of every panel must return data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from crmsync.db import session_scope
from crmsync.sync.jobs import create_job
from crmsync.tasks import enqueue
from crmsync.tasks.names import START_JOB
from crmsync.tasks.producer import reset_producer
from tests.deploy import tool
from tests.fixtures.db import _set_env
from tests.fixtures.factories import make_tenant
from tests.fixtures.ingest import start_ingest_server
from tests.fixtures.workers import (
    add_sandbox_config,
    free_port,
    start_celery_worker,
    start_sandbox,
    stop_sandbox,
    wait_until,
    worker_environment,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "crmsync.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
CRMSYNC = str(Path(sys.executable).with_name("crmsync"))
BROKER_DB, STATE_DB = 6, 7     # a broker of its own: no other test's worker takes these tasks


def panel_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels if p["type"] != "row" for t in p["targets"]]


def test_the_dashboard_has_panels_each_with_a_query():
    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]
    assert len(panels) >= 15 and all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)


class Process:
    def __init__(self, args, env, log: Path):
        self.log = log
        self.handle = open(log, "wb")  # noqa: SIM115 (the process writes until stop())
        self.process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.handle, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def answers(self, url: str) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.log.name} exited:\n{self.log.read_text(errors='replace')[-3000:]}")
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.handle.close()


def prometheus_config(path: Path, targets: dict[str, str]) -> None:
    path.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                           for job, target in targets.items()]}))


@pytest.fixture
def sandboxes():
    accounts = [start_sandbox("hubspot", 7301, seed=5, contacts=60, companies=10, deals=12, tasks=5, notes=5),
                start_sandbox("pipedrive", 8301, seed=6, persons=40, organizations=8, deals=10, activities=10)]
    yield accounts
    for account in accounts:
        stop_sandbox(account)


def test_every_panel_query_returns_data_from_a_live_scrape(monkeypatch, db_url, worker_redis, sandboxes,
                                                           tmp_path):
    prometheus = tool("prometheus")
    env = worker_environment(db_url, worker_redis,
                             CRMSYNC_BROKER_URL=f"redis://127.0.0.1:{worker_redis.port}/{BROKER_DB}",
                             CRMSYNC_REDIS_URL=f"redis://127.0.0.1:{worker_redis.port}/{STATE_DB}")
    for db in (BROKER_DB, STATE_DB):
        worker_redis.client(db).flushdb()
    ports = {"crmsync-worker": free_port(), "crmsync-metrics": free_port()}
    for name in ("worker", "ingest"):
        (tmp_path / f"multiproc-{name}").mkdir()
    stack = []
    try:
        worker = start_celery_worker({**env, "CRMSYNC_WORKER_METRICS_PORT": str(ports["crmsync-worker"]),
                                      "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc-worker")},
                                     tmp_path, name="metrics")
        stack.append(worker)
        ingest = start_ingest_server({**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc-ingest")},
                                     tmp_path)
        stack.append(ingest)
        collector = Process([CRMSYNC, "metrics", "serve", "--host", "127.0.0.1",
                             "--port", str(ports["crmsync-metrics"])], env, tmp_path / "collector.log")
        stack.append(collector)
        targets = {"crmsync-ingest": ingest.url.removeprefix("http://"),
                   **{job: f"127.0.0.1:{port}" for job, port in ports.items()}}
        config = tmp_path / "prometheus.yml"
        prometheus_config(config, targets)
        api = f"http://127.0.0.1:{free_port()}"
        server = Process([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address={api.removeprefix('http://')}", "--log.level=warn"],
                         {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, tmp_path / "prometheus.log")
        stack.append(server)
        wait_until(lambda: collector.answers(f"http://127.0.0.1:{ports['crmsync-metrics']}/metrics"), 20,
                   interval=0.1, what="the state collector")
        wait_until(lambda: server.answers(f"{api}/-/ready"), 20, interval=0.1, what="prometheus")

        # a sync of each CRM account, run by the worker host; and a few ingest requests
        _set_env(monkeypatch, {k: v for k, v in env.items() if k.startswith("CRMSYNC_")})
        reset_producer()
        with session_scope(db_url) as s:
            tenant = make_tenant(s)
            jobs = [create_job(s, add_sandbox_config(s, tenant, account, sync_frequency_minutes=15)).id
                    for account in sandboxes]
        for job_id in jobs:
            enqueue(START_JOB, job_id)
        for _ in range(3):
            requests.get(ingest.url + "/healthz", timeout=5)

        def synced():
            with session_scope(db_url) as s:
                from crmsync.db.models import SyncJob
                states = {s.get(SyncJob, j).status for j in jobs}
            assert "failed" not in states, f"a sync failed; worker log:\n{worker.log()[-3000:]}"
            return states == {"succeeded"}
        wait_until(synced, 40, interval=0.2, what="both syncs to succeed")

        def empty_panels():
            empty = []
            for title, expr in panel_queries():
                answer = requests.get(f"{api}/api/v1/query", params={
                    "query": expr.replace("$__rate_interval", "1m")}, timeout=5).json()
                assert answer["status"] == "success", f"{title}: {expr}: {answer}"
                if not answer["data"]["result"]:
                    empty.append(f"{title}: {expr}")
            return empty
        try:
            wait_until(lambda: not empty_panels(), 20, interval=0.5, what="every panel to have data")
        except AssertionError:
            raise AssertionError("panels without data:\n" + "\n".join(empty_panels())) from None

        # the scrape saw what the sync did, by the labels the panels read
        answer = requests.get(f"{api}/api/v1/query", params={
            "query": 'sum by (platform) (crmsync_records_synced_total{direction="pull",outcome="created"})'},
            timeout=5).json()["data"]["result"]
        created = {r["metric"]["platform"]: float(r["value"][1]) for r in answer}
        assert created["hubspot"] >= 60 + 10 + 12 and created["pipedrive"] >= 40 + 8 + 10
        rules = requests.get(f"{api}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"CrmsyncWorkerDown", "CrmsyncSyncLagging"}
    finally:
        reset_producer()
        for process in reversed(stack):
            process.stop()

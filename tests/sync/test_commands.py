"""`sync run`, `jobs`, `conflicts` as an operator runs them (in-process click runner)."""
import json
import os
import subprocess
import sys

from click.testing import CliRunner

from crmsync.cli import main


def cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_sync_run_inline_json_then_jobs(world):
    world.hs.seed(contacts=12, companies=2, seed=3)
    result = cli("sync", "run", world.config_id, "--inline", "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded" and job["contacts_synced"] == 12 and job["companies_synced"] == 2
    for key in ("job_id", "deals_synced", "activities_synced", "tasks_synced", "conflicts", "error"):
        assert key in job
    listed = json.loads(cli("jobs", "list", "--config", world.config_id, "--json").stdout)
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    shown = json.loads(cli("jobs", "show", job["job_id"], "--json").stdout)
    assert {s["entity"] for s in shown["steps"]} >= {"contact", "company"}
    assert all(s["status"] == "done" for s in shown["steps"])


def test_conflict_resolve_pushes_the_choice(make):
    world = make(conflict_strategy="manual_review")
    world.hs.seed(contacts=2, seed=4)
    world.sync()
    ext, local_id = next(iter(world.links().items()))
    world.local_edit("contact", local_id, first_name="Mine")
    world.hs.edit("contacts", ext, {"firstname": "Theirs"})
    world.sync()
    pending = json.loads(cli("conflicts", "list", "--json").stdout)
    assert len(pending) == 1 and pending[0]["conflicting_fields"] == ["first_name"]
    shown = cli("conflicts", "show", pending[0]["id"])
    assert "Mine" in shown.stdout and "Theirs" in shown.stdout
    result = cli("conflicts", "resolve", pending[0]["id"], "--value", "first_name=Agreed", "--json")
    assert result.exit_code == 0, result.output
    assert world.hs.state.records["contacts"][int(ext)].props["firstname"] == "Agreed"
    assert next(r for r in world.rows() if r["id"] == local_id)["first_name"] == "Agreed"
    assert json.loads(cli("conflicts", "list", "--json").stdout) == []


def test_bad_input_exits_2(world):
    assert cli("sync", "run", "not-an-id").exit_code == 2
    assert cli("sync", "run", world.config_id, "--inline", "--wait").exit_code == 2
    assert cli("jobs", "show", "00000000-0000-0000-0000-000000000000").exit_code == 2
    assert cli("conflicts", "resolve", "00000000-0000-0000-0000-000000000000", "--take", "local").exit_code == 2


def test_embedded_default_sqlite_runs_the_same_engine(monkeypatch, sqlite_url, hubspot_sandbox):
    """The embedded default (SQLite, inline) syncs like PostgreSQL does."""
    from crmsync.settings import get_settings
    from tests.sync.conftest import make_world
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CRMSYNC_SECRET_KEY", "test-secret-key-0123456789abcdef")
    monkeypatch.delenv("CRMSYNC_BROKER_URL", raising=False)
    monkeypatch.delenv("CRMSYNC_REDIS_URL", raising=False)
    get_settings.cache_clear()
    world = make_world(sqlite_url, hubspot_sandbox)
    hubspot_sandbox.seed(contacts=30, companies=3, deals=5, seed=8)
    job = world.sync()
    assert job["status"] == "succeeded" and job["contacts_synced"] == 30 and job["deals_synced"] == 5
    ext, local_id = next(iter(world.links().items()))
    world.local_edit("contact", local_id, job_title="SQLite")
    world.sync()
    assert world.hs.state.records["contacts"][int(ext)].props["jobtitle"] == "SQLite"


# `crmsync sync run CONFIG --inline --json` in a fresh interpreter, as the shell runs it; then the
# top-level packages it loaded, start-up and sync included, written to argv[2].
INLINE_RUN = """
import json, sys
from crmsync.cli import main
try:
    main(["sync", "run", sys.argv[1], "--inline", "--json"])
finally:
    with open(sys.argv[2], "w") as out:
        json.dump(sorted({name.split(".")[0] for name in sys.modules} | set(sys.modules)), out)
"""


def _inline_run(world, tmp_path, **env) -> tuple[dict, set[str]]:
    loaded = tmp_path / "modules.json"
    environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", INLINE_RUN, world.config_id, str(loaded)],
                            env={**environ, **env}, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), set(json.loads(loaded.read_text()))


def test_an_inline_run_without_redis_or_metrics_loads_neither_nor_marshmallow(world, tmp_path):
    """Structural, not a timing: a process with no CRMSYNC_REDIS_URL and no PROMETHEUS_MULTIPROC_DIR
    (what the benchmark's whole-process figure runs) starts and syncs without redis, prometheus_client
    and marshmallow (config validation, record schemas: nothing a sync uses)."""
    assert "CRMSYNC_REDIS_URL" not in os.environ
    world.hs.seed(contacts=6, companies=2, seed=5)
    job, loaded = _inline_run(world, tmp_path)
    assert job["status"] == "succeeded" and job["contacts_synced"] == 6 and job["companies_synced"] == 2
    assert "crmsync.automation.triggers" in loaded          # records were created: the rules' trigger heard
    assert not {"marshmallow", "redis", "prometheus_client"} & loaded


def test_an_inline_run_with_the_metrics_directory_counts_as_before(world, tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR set the process's samples are served by another: it counts
    records, CRM responses and the run, into its file there."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    directory = tmp_path / "multiproc"
    world.hs.seed(contacts=6, companies=2, seed=5)
    job, loaded = _inline_run(world, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(directory))
    assert job["status"] == "succeeded" and "prometheus_client" in loaded
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))

    def sample(name, **labels):
        return registry.get_sample_value(name, {"platform": "hubspot", **labels})
    assert sample("crmsync_records_synced_total", entity="contact", direction="pull", outcome="created") == 6
    assert sample("crmsync_records_synced_total", entity="company", direction="pull", outcome="created") == 2
    assert sample("crmsync_sync_runs_total", status="succeeded") == 1
    assert sample("crmsync_sync_runs_total", status="failed") == 0
    assert sample("crmsync_crm_requests_total", status="2xx") >= 2
    assert sample("crmsync_crm_throttled_total") == 0

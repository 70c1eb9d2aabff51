"""`sync run`, `jobs`, `conflicts` as an operator runs them (in-process click runner)."""
import json

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

"""`crmsync jobs list` reads through `crmsync.db.reads` (plain SQL, no SQLAlchemy) and answers exactly
what the ORM path answers: the same dicts from `job_as_dict`, newest first, filtered and limited."""
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from crmsync.cli import main
from crmsync.console import to_json
from crmsync.db import session_scope
from crmsync.db.models import SyncJob
from crmsync.db.reads import SYNC_JOB_COLUMNS, recent_jobs
from crmsync.sync.job_view import ENTITY_PLURALS, job_as_dict
from crmsync.sync.jobs import create_job
from tests.fixtures.db import TEST_SECRET_KEY, create_database, drop_database
from tests.fixtures.factories import make_config, make_conflict, make_tenant

CRMSYNC = shutil.which("crmsync") or os.path.join(os.path.dirname(os.sys.executable), "crmsync")
T0 = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


def _make_jobs(url: str) -> tuple[str, str]:
    """Five jobs of two configs, made as the engine makes them (create_job, then the ORM's updates),
    in every shape a job's view shows. Returns the two config ids."""
    with session_scope(url) as s:
        a, b = make_config(s, make_tenant(s)), make_config(s, make_tenant(s))
        shapes = [
            (a, {"status": "succeeded", "full": True, "steps_total": 4, "steps_done": 4,
                 "counts": {"contact": {"created": 3, "updated": 2, "deleted": 1, "conflicts": 1},
                            "deal": {"created": 4, "conflicts": 2}},
                 "started_at": T0 + timedelta(seconds=1),
                 "finished_at": T0 + timedelta(seconds=91, microseconds=5)}),
            (a, {"status": "failed", "error": "pull contacts: the CRM said 401 — ünïcode kept",
                 "started_at": T0 + timedelta(minutes=1), "finished_at": T0 + timedelta(minutes=2)}),
            (b, {"status": "cancelled", "counts": {"company": {"updated": 7}, "drift": {"contact": {"diverged": 1}}}}),
            (a, {"status": "running", "steps_total": 2, "steps_done": 1, "started_at": T0 + timedelta(minutes=3)}),
            (b, {"status": "waiting_quota", "paused_until": T0 + timedelta(hours=1)}),
        ]
        for i, (config, values) in enumerate(shapes):
            job = create_job(s, config, trigger="sweep" if i == 2 else "manual", now=T0 + timedelta(minutes=i))
            for key, value in values.items():
                setattr(job, key, value)
            s.flush()
        return a.id, b.id


def _orm_view(url: str, config_id: str | None = None, limit: int = 20) -> list[dict]:
    with session_scope(url) as s:
        q = select(SyncJob).order_by(SyncJob.created_at.desc()).limit(limit)
        if config_id:
            q = q.where(SyncJob.sync_config_id == config_id)
        return [job_as_dict(j) for j in s.scalars(q)]


def _typed(rows: list[dict]) -> list[dict]:
    """Values with their types (and datetimes' zones): 1 == True and naive != aware must not pass."""
    return [{k: (type(v), v, getattr(v, "tzinfo", None)) for k, v in row.items()} for row in rows]


def _cli(*args):
    return CliRunner().invoke(main, ["jobs", "list", *args], catch_exceptions=False)


def test_jobs_list_answers_what_the_orm_path_answers(monkeypatch, any_db_url):
    a, b = _make_jobs(any_db_url)
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", any_db_url)
    from crmsync.settings import get_settings
    get_settings.cache_clear()

    expected = _orm_view(any_db_url)
    assert [j["status"] for j in expected] == ["waiting_quota", "running", "cancelled", "failed", "succeeded"]
    assert expected[-1]["duration_seconds"] == 90.000005 and expected[-1]["contacts_synced"] == 6
    # The same dicts, value for value and type for type.
    assert _typed([job_as_dict(r) for r in recent_jobs(20, url=any_db_url)]) == _typed(expected)
    assert _typed([job_as_dict(r) for r in recent_jobs(2, a, url=any_db_url)]) == _typed(_orm_view(any_db_url, a, 2))

    for args, want in [((), expected),
                       (("--config", a), _orm_view(any_db_url, a)),
                       (("--config", b, "--limit", "1"), _orm_view(any_db_url, b, 1)),
                       (("--limit", "3"), expected[:3])]:
        result = _cli(*args, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == json.loads(to_json(want)), args
    assert [j["config_id"] for j in _orm_view(any_db_url, a)] == [a, a, a]
    human = _cli("--config", b).stdout.splitlines()
    assert human[0].split()[:3] == ["JOB_ID", "CONFIG_ID", "STATUS"] and len(human) == 3
    assert _cli("--config", "00000000-0000-0000-0000-000000000000", "--json").stdout.strip() == "[]"


def test_the_view_reads_the_same_columns_and_plurals():
    from crmsync.entities import ENTITY_PLURALS as PLURALS
    assert ENTITY_PLURALS == PLURALS
    assert set(SYNC_JOB_COLUMNS) <= set(SyncJob.__table__.columns.keys())


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(CRMSYNC_DATABASE_URL=url, CRMSYNC_SECRET_KEY=TEST_SECRET_KEY)
    return env


def test_jobs_list_does_not_import_sqlalchemy(any_db_url):
    """Structural, not a timing: the start-up of `jobs list` and `conflicts list` stays off SQLAlchemy
    and the ORM models."""
    _make_jobs(any_db_url)
    with session_scope(any_db_url) as s:
        config = make_config(s, make_tenant(s))
        for i in range(3):
            make_conflict(s, config, status="resolved" if i == 1 else "pending", created_at=T0 + timedelta(seconds=i))
        tenant_id = config.tenant_id
    commands = [["jobs", "list", "--json"], ["jobs", "list", "--limit", "2"], ["conflicts", "list", "--json"],
                ["conflicts", "list", "--tenant", tenant_id, "--status", ""]]
    code = ("import sys\n"
            "from crmsync.cli import main\n"
            f"for args in {commands!r}:\n"
            "    main(args, standalone_mode=False)\n"
            "    print('----')\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy' or m == 'crmsync.db.models')\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(any_db_url),
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    jobs_json, jobs_table, conflicts_json, conflicts_table, rest = result.stdout.split("----\n")
    assert len(json.loads(jobs_json)) == 5 and len(jobs_table.splitlines()) == 3 and rest == ""
    assert [c["status"] for c in json.loads(conflicts_json)] == ["pending", "pending"]
    assert conflicts_table.startswith("ID ") and len(conflicts_table.splitlines()) == 4


def _one_line_exit_1(result) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.usefixtures("pg_url")     # the server is up (else the fixture fails loudly)
def test_not_migrated_is_one_line_and_exit_1(tmp_path):
    empty_pg = create_database("crmsync_test_empty")
    try:
        missing = tmp_path / "nowhere" / "crmsync.db"
        empty_file = tmp_path / "empty.db"
        empty_file.touch()
        for url in (empty_pg, f"sqlite:///{missing}", f"sqlite:///{empty_file}"):
            for command in ("jobs", "conflicts"):
                result = subprocess.run([CRMSYNC, command, "list", "--json"], capture_output=True, text=True,
                                        env=_env(url), timeout=60, check=False)
                assert "crmsync db upgrade" in _one_line_exit_1(result) and result.stdout == "", command
        assert not missing.parent.exists()      # a read makes no database file
    finally:
        drop_database(empty_pg)


def test_jobs_show_answers_what_the_orm_path_answers(monkeypatch, any_db_url):
    """`jobs show` reads the same way: the job's view and its steps in order, no SQLAlchemy."""
    from crmsync.db.models import SyncJobStep
    from crmsync.db.types import utcnow
    a, _ = _make_jobs(any_db_url)
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", any_db_url)
    from crmsync.settings import get_settings
    get_settings.cache_clear()
    [job] = _orm_view(any_db_url, a, 1)
    with session_scope(any_db_url) as s:
        for position, (kind, entity, status, error) in enumerate([("pull", "contact", "done", None),
                                                                  ("push", "contact", "failed", "HTTP 400: ü"),
                                                                  ("pull", "company", "pending", None)]):
            s.add(SyncJobStep(tenant_id=job["tenant_id"], job_id=job["job_id"], entity_type=entity, kind=kind,
                              position=2 - position, status=status, pages=position, attempts=position + 1,
                              error=error, updated_at=utcnow()))
    result = CliRunner().invoke(main, ["jobs", "show", job["job_id"], "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert {k: v for k, v in shown.items() if k != "steps"} == json.loads(to_json(job))
    # Ordered by position: the step added last comes first.
    assert shown["steps"] == [
        {"entity": "company", "kind": "pull", "status": "pending", "pages": 2, "attempts": 3, "error": None},
        {"entity": "contact", "kind": "push", "status": "failed", "pages": 1, "attempts": 2, "error": "HTTP 400: ü"},
        {"entity": "contact", "kind": "pull", "status": "done", "pages": 0, "attempts": 1, "error": None}]
    human = CliRunner().invoke(main, ["jobs", "show", job["job_id"]]).stdout
    assert human.startswith(f"job {job['job_id']}: ") and "HTTP 400" in human
    for args, code in ((["00000000-0000-0000-0000-000000000000"], 2), (["not-an-id"], 2)):
        assert CliRunner().invoke(main, ["jobs", "show", *args]).exit_code == code
    loaded = subprocess.run([sys.executable, "-c",
                             "import sys\nfrom crmsync.cli import main\n"
                             f"main(['jobs', 'show', '{job['job_id']}', '--json'], standalone_mode=False)\n"
                             "assert not [m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'], 'sqlalchemy'\n"],
                            capture_output=True, text=True, env=_env(any_db_url), timeout=60, check=False)
    assert loaded.returncode == 0, loaded.stderr

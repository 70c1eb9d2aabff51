"""A job never stays stuck: a killed inline run's job is resumed from its checkpoints by the next
run, every failure ends the job `failed` with its reason, and operators can cancel or resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from crmsync.cli import main
from crmsync.db import session_scope
from crmsync.db.models import SyncCheckpoint, SyncConfig, SyncJob, SyncJobStep
from crmsync.db.types import utcnow
from crmsync.sync.jobs import create_job, start_job
from tests.fixtures.db import TEST_SECRET_KEY
from tests.fixtures.workers import wait_until

CRMSYNC = shutil.which("crmsync") or os.path.join(os.path.dirname(sys.executable), "crmsync")


def crmsync(db_url, *args, secret_key=TEST_SECRET_KEY, **popen):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env.update(CRMSYNC_DATABASE_URL=db_url, CRMSYNC_SECRET_KEY=secret_key, CRMSYNC_PAGE_SIZE="100")
    return subprocess.Popen([CRMSYNC, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def cli(*args):
    return CliRunner().invoke(main, list(args))


def job_row(db_url, job_id):
    with session_scope(db_url) as s:
        job = s.get(SyncJob, job_id)
        s.expunge(job)
        return job


def only_job(db_url, config_id):
    with session_scope(db_url) as s:
        [job_id] = s.scalars(select(SyncJob.id).where(SyncJob.sync_config_id == config_id)).all()
        return job_id


def test_kill_9_mid_run_then_the_next_run_resumes_from_the_checkpoint(world, monkeypatch):
    world.hs.seed(contacts=1500, seed=21)
    world.hs.configure(faults={"latency_ms": 60})      # a unit takes a moment: time to kill mid-run
    run = crmsync(world.db_url, "sync", "run", world.config_id, "--inline", "--json")

    def contacts_written():
        with session_scope(world.db_url) as s:
            cp = s.scalar(select(SyncCheckpoint).where(SyncCheckpoint.config_id == world.config_id,
                                                       SyncCheckpoint.entity_type == "contact"))
            return cp is not None and cp.cursor is not None and len(world.rows()) >= 300
    wait_until(contacts_written, timeout=60, what="a few committed units of contacts")
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=10)
    assert run.returncode == -signal.SIGKILL
    job_id = only_job(world.db_url, world.config_id)
    crashed = job_row(world.db_url, job_id)
    assert crashed.status == "running" and crashed.lease_owner.endswith(f" {run.pid}")
    written = len(world.rows())
    assert 300 <= written < 1500

    world.hs.configure(faults={"latency_ms": 0})
    monkeypatch.setenv("CRMSYNC_PAGE_SIZE", "100")
    from crmsync.settings import get_settings
    get_settings.cache_clear()
    result = cli("sync", "run", world.config_id, "--inline", "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["job_id"] == job_id and job["status"] == "succeeded"      # the same job, carried on
    # Units committed before the kill were not listed again: nothing seen twice (skipped/updated).
    assert job["counts"]["contact"]["created"] == 1500
    assert job["counts"]["contact"]["skipped"] == job["counts"]["contact"]["updated"] == 0
    assert len(world.rows()) == 1500


@pytest.mark.parametrize("breakage", ["crm_5xx", "crm_stopped", "wrong_secret_key"])
def test_every_failure_ends_the_job_failed_with_one_line_and_the_next_run_starts(world, breakage):
    world.hs.seed(contacts=30, seed=4)
    key = TEST_SECRET_KEY
    if breakage == "crm_5xx":       # beyond the client's retries
        world.hs.configure(faults={"error_rate": 1.0, "error_statuses": [503]})
    elif breakage == "crm_stopped":
        with session_scope(world.db_url) as s:
            s.get(SyncConfig, world.config_id).api_base_url = "http://127.0.0.1:9"
    else:
        key = "some-other-secret-key-0123456789"
    run = crmsync(world.db_url, "sync", "run", world.config_id, "--inline", "--json", secret_key=key)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    assert "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if ln.startswith("error:")]
    job = json.loads(out)
    assert job["status"] == "failed" and job["error"] and line.startswith(f"error: job {job['job_id']} failed:")
    assert job_row(world.db_url, job["job_id"]).status == "failed"
    if breakage == "wrong_secret_key":
        assert "CRMSYNC_SECRET_KEY" in job["error"]
    # Fixed: the next run is not blocked by the failed one.
    world.hs.configure(faults={"error_rate": 0.0})
    with session_scope(world.db_url) as s:
        s.get(SyncConfig, world.config_id).api_base_url = world.hs.base_url
    result = cli("sync", "run", world.config_id, "--inline", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["contacts_synced"] == 30


def _running_job(world, owner: str, expires_in: float) -> str:
    with session_scope(world.db_url) as s:
        job = create_job(s, s.get(SyncConfig, world.config_id), runner=owner)
        job_id = job.id
    with session_scope(world.db_url) as s:
        start_job(s, job_id, enqueue=False, runner=owner)
        s.execute(update(SyncJob).where(SyncJob.id == job_id).values(
            lease_expires_at=utcnow() + timedelta(seconds=expires_in)))
    return job_id


def test_a_live_runner_keeps_its_job_and_an_expired_lease_is_flagged_and_resumed(world):
    world.hs.seed(contacts=12, seed=6)
    job_id = _running_job(world, "inline another-host 4242", expires_in=60)
    result = cli("sync", "run", world.config_id, "--inline", "--json")
    assert result.exit_code == 1 and "already has an active job" in result.stderr
    result = cli("jobs", "resume", job_id, "--json")
    assert result.exit_code == 1 and "being run by inline another-host 4242" in result.stderr
    doctor = json.loads(cli("doctor", world.config_id, "--json").stdout)
    active = {c["name"]: c for c in doctor["configs"][0]["checks"]}["active job"]
    assert active["status"] == "ok"

    with session_scope(world.db_url) as s:       # that host died a while ago
        s.execute(update(SyncJob).where(SyncJob.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    result = cli("doctor", world.config_id, "--json")
    active = {c["name"]: c for c in json.loads(result.stdout)["configs"][0]["checks"]}["active job"]
    assert result.exit_code == 1 and active["status"] == "fail"
    assert "lease expired" in active["detail"] and f"crmsync jobs resume {job_id}" in active["detail"]
    result = cli("jobs", "resume", job_id, "--json")     # no broker: runs here
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["job_id"] == job_id and job["status"] == "succeeded" and job["contacts_synced"] == 12


def test_cancel_frees_the_config_and_resume_carries_on_a_failed_job(world):
    world.hs.seed(contacts=8, seed=7)
    job_id = _running_job(world, "inline another-host 4243", expires_in=60)
    result = cli("jobs", "cancel", job_id, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "cancelled"
    with session_scope(world.db_url) as s:
        assert {st.status for st in s.scalars(select(SyncJobStep).where(SyncJobStep.job_id == job_id))} == \
            {"cancelled"}
    again = cli("jobs", "cancel", job_id, "--json")
    assert again.exit_code == 1 and "already ended (cancelled)" in again.stderr
    assert cli("jobs", "resume", job_id, "--json").exit_code == 1
    assert cli("jobs", "cancel", "00000000-0000-0000-0000-000000000000").exit_code == 2
    assert cli("jobs", "resume", "not-an-id").exit_code == 2

    world.hs.configure(faults={"error_rate": 1.0, "error_statuses": [500]})
    failed = cli("sync", "run", world.config_id, "--inline", "--json")
    assert failed.exit_code == 1
    failed_id = json.loads(failed.stdout)["job_id"]
    world.hs.configure(faults={"error_rate": 0.0})
    result = cli("jobs", "resume", failed_id, "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["job_id"] == failed_id and job["status"] == "succeeded" and job["error"] is None
    assert len(world.rows()) == 8

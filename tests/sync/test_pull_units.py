"""How a pull unit treats PostgreSQL. It refreshes the planner's statistics as a backfill grows its
tables (ANALYZE at units 5, 17, 65, ...), but not at a step's last unit, whose table no later
lookup of the job reads: there it refreshes only the shared links table, and only when another step
of the job follows. And it commits without waiting for the disk, as a push unit, which has changed
the CRM, does not."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, event, select, text

from crmsync.db import get_engine, session_scope
from crmsync.db.models import SyncConfig, SyncJobStep, Task
from crmsync.sync.jobs import create_job, run_step, start_job


def analyzed(db_url) -> dict[str, int]:
    """Manual ANALYZEs so far, per table (autovacuum's are counted apart)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text(
                "SELECT relname, analyze_count FROM pg_stat_user_tables "
                "WHERE relname IN ('crm_contacts', 'crm_deals', 'crm_sync_links')")).all())
    finally:
        engine.dispose()


def grown(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {t for t in after if after[t] > before.get(t, 0)}


# Units of 100, then 500: the fifth unit starts after 1,600 contacts.
@pytest.mark.parametrize(("contacts", "entities", "expected"), [
    (2500, ["contacts"], {"crm_contacts", "crm_sync_links"}),     # the fifth unit has a sixth after it
    (2000, ["contacts"], set()),                                   # the fifth unit is the step's last
    (2000, ["contacts", "deals"], {"crm_sync_links"}),             # ... and the deals step reads links next
])
def test_a_backfill_analyzes_what_a_later_lookup_reads(make, db_url, units_of_100, contacts, entities, expected):
    world = make(entities=entities, sync_direction="pull")
    world.hs.seed(contacts=contacts, companies=0, deals=0, tasks=0, notes=0, seed=21)
    before = analyzed(db_url)
    job = world.sync(full=True)
    assert job["status"] == "succeeded" and job["contacts_synced"] == contacts
    assert grown(before, analyzed(db_url)) == expected


class CommitWaits:
    """At each commit on the engine: whether PostgreSQL waits for the disk (synchronous_commit)."""

    def __init__(self, db_url):
        self.engine, self.seen = get_engine(db_url), []

    def __enter__(self):
        event.listen(self.engine, "commit", self._hook)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "commit", self._hook)

    def _hook(self, conn):
        self.seen.append(conn.exec_driver_sql("SHOW synchronous_commit").scalar())


def test_a_pull_unit_commits_without_waiting_for_the_disk(make, db_url, units_of_100):
    world = make(entities=["contacts"], sync_direction="pull")
    world.hs.seed(contacts=250, companies=0, deals=0, tasks=0, notes=0, seed=22)
    with CommitWaits(db_url) as commits:
        job = world.sync(full=True)
    assert job["status"] == "succeeded" and job["contacts_synced"] == 250
    # Units of 100 and 150; the job's own bookkeeping (made, started, its lease) waits as before.
    assert commits.seen.count("off") == 2 and "on" in commits.seen


def test_a_push_unit_waits_for_the_disk(make, db_url):
    world = make(entities=["tasks"], sync_direction="push")
    with session_scope(db_url) as s:
        s.add(Task(tenant_id=world.tenant_id, title="Call Ada", due_date=datetime(2027, 1, 5, 9, tzinfo=UTC)))
        job = create_job(s, s.get(SyncConfig, world.config_id), trigger="push")
        start_job(s, job.id, enqueue=False)
        step_id = s.scalar(select(SyncJobStep.id).where(SyncJobStep.job_id == job.id, SyncJobStep.kind == "push"))
    with CommitWaits(db_url) as commits, session_scope(db_url) as s:
        run_step(s, step_id, enqueue=False)
    assert commits.seen and set(commits.seen) == {"on"}
    assert any(r.props.get("hs_task_subject") == "Call Ada" for r in world.hs.state.records["tasks"].values())


def test_a_unit_that_runs_clears_the_wait_its_step_was_marked_with(make, db_url, units_of_100):
    """A retry's backoff marks the step not_before its end, so the sweeper sends no copy meanwhile.
    A unit that runs before then (the retry came early, an inline run took the step) ends that wait:
    left set, it would keep the sweeper from sending the step's next unit if that message were lost."""
    from datetime import timedelta

    from crmsync.db.types import utcnow
    from crmsync.sync.jobs import defer_step
    from crmsync.sync.schedule import sweep_outbox
    world = make(entities=["contacts"], sync_direction="pull")
    world.hs.seed(contacts=250, companies=0, deals=0, tasks=0, notes=0, seed=23)
    with session_scope(db_url) as s:
        job = create_job(s, s.get(SyncConfig, world.config_id), full=True)
        start_job(s, job.id, enqueue=False)
        step_id = s.scalar(select(SyncJobStep.id).where(SyncJobStep.job_id == job.id))
        defer_step(s, step_id, utcnow() + timedelta(hours=1))
    with session_scope(db_url) as s:
        assert run_step(s, step_id, enqueue=False).done is False       # 100 of 250: more to come
    with session_scope(db_url) as s:
        step = s.get(SyncJobStep, step_id)
        assert step.status == "pending" and step.pages == 1 and step.not_before is None
    with session_scope(db_url) as s:      # its next unit's message lost: the sweeper sends it on
        assert sweep_outbox(s, now=utcnow() + timedelta(minutes=10))["steps"] == 1

"""Two copies of one unit at once (a message the sweeper sent again while the first still waited in a
backlog, a finished unit's redelivery publishing its successor a second time): the step's row lock
makes them take turns, so the second finds the first's work done instead of doing it again."""
from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import select, text

from crmsync.db import get_engine, session_scope
from crmsync.db.models import SyncConfig, SyncJob, SyncJobStep, SyncLink, Task
from crmsync.sync.jobs import create_job, run_step, start_job
from tests.fixtures.workers import wait_until


def _waiting_on_locks(db_url) -> int:
    with session_scope(db_url) as s:
        return s.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock'"))


def _task_push_step(world, db_url, title: str) -> tuple[str, str]:
    """A local task and a started push job of the world's config: (job id, the task push step's id)."""
    with session_scope(db_url) as s:
        s.add(Task(tenant_id=world.tenant_id, title=title, due_date=datetime(2027, 1, 5, 9, tzinfo=UTC)))
        job = create_job(s, s.get(SyncConfig, world.config_id), trigger="push")
        start_job(s, job.id, enqueue=False)
        return job.id, s.scalar(select(SyncJobStep.id).where(SyncJobStep.job_id == job.id,
                                                             SyncJobStep.kind == "push", SyncJobStep.entity_type == "task"))


def _unit(db_url, step_id, errors: list[BaseException]):
    """One run of the unit in its own session, its error (if any) put in `errors`."""
    def run():
        try:
            with session_scope(db_url) as s:
                run_step(s, step_id, enqueue=False)
        except BaseException as err:  # noqa: BLE001  the test reads them
            errors.append(err)
    return run


def test_two_copies_of_one_push_unit_at_once_create_the_record_in_the_crm_once(make, db_url):
    world = make(sync_direction="push")
    world.hs.configure(index_lag_ms=5000)   # HubSpot's search shows a new record a few seconds late
    job_id, step_id = _task_push_step(world, db_url, "Call Ada")
    errors: list[BaseException] = []
    copies = [threading.Thread(target=_unit(db_url, step_id, errors)) for _ in range(2)]
    with get_engine(db_url).connect() as holder, holder.begin():     # both copies queue on the step's row
        holder.execute(select(SyncJobStep.id).where(SyncJobStep.id == step_id).with_for_update())
        for t in copies:
            t.start()
        wait_until(lambda: _waiting_on_locks(db_url) >= 2, 10, what="both copies to wait for the step")
    for t in copies:
        t.join(30)
    assert not errors, errors
    made = [r for r in world.hs.state.records["tasks"].values() if r.props.get("hs_task_subject") == "Call Ada"]
    assert len(made) == 1, f"{len(made)} tasks made in the CRM for one local task"
    with session_scope(db_url) as s:
        (link,) = s.scalars(select(SyncLink).where(SyncLink.config_id == world.config_id,
                                                   SyncLink.entity_type == "task")).all()
        assert link.external_id is not None and link.external_id.endswith(str(made[0].id))
        step, job = s.get(SyncJobStep, step_id), s.get(SyncJob, job_id)
        assert (step.status, step.pages) == ("done", 1)
        assert job.steps_done == 1, "the step counted done twice"


def test_a_push_unit_whose_pending_links_cannot_be_written_gives_up_instead_of_hanging(make, db_url):
    """The pending-create links go in on a connection of their own while the unit's transaction
    waits in Python, where PostgreSQL's deadlock detector cannot see it. A lock that insert needs
    (its config's row: a `configs delete` holding it would itself wait for the unit's rows) must
    end the unit with an error it is retried for, not hang it: no create goes out meanwhile."""
    world = make(sync_direction="push")
    _, step_id = _task_push_step(world, db_url, "Call Grace")
    errors: list[BaseException] = []
    runner = threading.Thread(target=_unit(db_url, step_id, errors))
    with get_engine(db_url).connect() as holder, holder.begin():
        holder.execute(select(SyncConfig.id).where(SyncConfig.id == world.config_id).with_for_update())
        runner.start()
        runner.join(30)
        hung = runner.is_alive()
    runner.join(30)
    assert not hung, "the unit was still waiting for the config's row after 30 s"
    assert errors and "lock timeout" in str(errors[0]), errors
    assert not [r for r in world.hs.state.records["tasks"].values() if r.props.get("hs_task_subject") == "Call Grace"]

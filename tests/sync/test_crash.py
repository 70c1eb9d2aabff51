"""A crash between pages, then a rerun, gives the same database as an uninterrupted run."""
import pytest
from sqlalchemy import select

from crmsync.configs import create_config
from crmsync.db import session_scope
from crmsync.db.models import ENTITY_MODELS, SyncConfig, SyncJob, SyncJobStep, SyncLink
from crmsync.platforms.errors import TransientError
from crmsync.sync.jobs import create_job, run_step, start_job
from tests.fixtures.factories import make_secret, make_tenant


def snapshot(db_url, tenant_id):
    """external id -> every synced column, per entity: what the tenant's store holds."""
    out = {}
    with session_scope(db_url) as s:
        for entity, model in ENTITY_MODELS.items():
            table = model.__table__
            rows = s.execute(select(table, SyncLink.external_id).join(
                SyncLink, (SyncLink.local_id == table.c.id) & (SyncLink.entity_type == entity))
                .where(table.c.tenant_id == tenant_id)).all()
            keep = [c.name for c in table.columns if c.name not in ("id", "tenant_id", "created_at", "updated_at",
                                                                  "company_id", "contact_id", "deal_id")]
            out[entity] = {r.external_id: tuple(r._mapping[c] for c in keep) for r in rows}
            assert len(out[entity]) == len(rows), "a record linked twice"
    return out


def next_step(db_url, job_id):
    with session_scope(db_url) as s:
        step = s.scalar(select(SyncJobStep).where(SyncJobStep.job_id == job_id, SyncJobStep.status == "pending")
                        .order_by(SyncJobStep.position).limit(1))
        return step.id if step else None


def test_fault_between_pages_then_rerun_equals_uninterrupted(world, monkeypatch):
    monkeypatch.setenv("CRMSYNC_PAGE_SIZE", "200")
    from crmsync.settings import get_settings
    get_settings.cache_clear()
    world.hs.seed(contacts=900, companies=20, deals=60, seed=33)
    with session_scope(world.db_url) as s:
        other = make_tenant(s)
        secret = make_secret(s, {"token": world.hs.token})
        clean_config = create_config(s, {"tenant_id": other.id, "platform": "hubspot", "credentials_vault_id": secret.id,
                                         "api_base_url": world.hs.base_url, "account_id": "uninterrupted"}).id
        job_id = create_job(s, s.get(SyncConfig, world.config_id)).id
    with session_scope(world.db_url) as s:
        start_job(s, job_id, enqueue=False)
    pages = 0
    crashed = 0
    while (step_id := next_step(world.db_url, job_id)) is not None:
        if pages in (2, 5):          # the CRM drops the connection in the middle of the backfill
            world.hs.configure(faults={"drop_rate": 1.0})
            with pytest.raises(TransientError), session_scope(world.db_url) as s:
                run_step(s, step_id, enqueue=False, wait=True)
            world.hs.configure(faults={"drop_rate": 0.0})
            crashed += 1
        with session_scope(world.db_url) as s:
            run_step(s, step_id, enqueue=False, wait=True)
        pages += 1
    assert crashed == 2
    with session_scope(world.db_url) as s:
        assert s.get(SyncJob, job_id).status == "succeeded"
    assert world.sync(clean_config)["status"] == "succeeded"
    interrupted, clean = snapshot(world.db_url, world.tenant_id), snapshot(world.db_url, other.id)
    assert len(clean["contact"]) == 900 and len(clean["deal"]) == 60
    assert interrupted == clean

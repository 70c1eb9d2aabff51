"""An inline run fetches the next units' CRM pages while it writes the current one: the same rows,
and not one request more than fetching in turn. `sync run --inline` starts that reader before the
job exists, while SQLAlchemy loads; it reads only what the config's own tenant may, and only when
the job's first unit is foreseeable."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from sqlalchemy import select, update

from crmsync.db import session_scope
from crmsync.db.models import SyncConfig, SyncJob, SyncJobStep
from crmsync.sync.connect import connect, reader_adapter
from crmsync.sync.read_ahead import DEPTH, ReadAhead, fetch_unit, read_early
from tests.fixtures.factories import make_secret, make_tenant
from tests.sync.conftest import add_pipedrive_config, make_world


def contact_list_requests(hs) -> int:
    return hs.requests_log(entries=0)["by_endpoint"].get("GET /crm/v3/objects/{type}", 0)


def test_a_pull_reads_ahead_without_spending_a_request_more(make, units_of_100):
    world = make(entities=["contacts"], sync_direction="pull")
    world.hs.seed(contacts=450, companies=0, deals=0, tasks=0, notes=0, seed=11)
    before, before_all = contact_list_requests(world.hs), world.hs.requests_log(entries=0)["total"]
    job = world.sync(full=True)
    assert job["status"] == "succeeded" and job["contacts_synced"] == 450
    assert len(world.rows()) == 450 and len(world.links()) == 450
    # Units of 100 then 500: one list request per 100 records. Had a unit thrown away what was
    # read ahead for it and fetched again, there would be more.
    assert contact_list_requests(world.hs) - before == 5
    # Every request counts in the job, those the reader sent between two units too.
    assert job["counts"]["requests"] == world.hs.requests_log(entries=0)["total"] - before_all


def fresh_adapter(world):
    """A factory of adapters of the world's config, as a reader gets one."""
    def make():
        with session_scope(world.db_url) as s:
            return reader_adapter(s, s.get(SyncConfig, world.config_id))
    return make


def test_what_was_read_ahead_serves_only_the_same_entity_at_the_same_cursor(world):
    world.hs.seed(contacts=30, companies=0, deals=0, tasks=0, notes=0, seed=12)
    with session_scope(world.db_url) as s:
        adapter = connect(s, s.get(SyncConfig, world.config_id))
    first = adapter.start_cursor("contact", None)
    expected, after = fetch_unit(adapter, "contact", first, 10)
    assert len(expected) == 10 and after is not None

    ahead = ReadAhead()
    ahead.follow(fresh_adapter(world), "contact", first, 10)
    assert ahead.take("contact", after) is None                  # another cursor: dropped
    ahead.follow(fresh_adapter(world), "contact", first, 10)
    assert ahead.take("company", first) is None                  # another entity: dropped
    ahead.follow(fresh_adapter(world), "contact", first, 10)
    records, next_cursor = ahead.take("contact", first)
    assert [r.external_id for r in records] == [r.external_id for r in expected]
    assert next_cursor == after
    assert ahead.take("contact", first) is None                  # taken once
    ahead.discard()


def test_the_reader_goes_on_by_itself_but_no_further_than_depth_units(world):
    world.hs.seed(contacts=60, companies=0, deals=0, tasks=0, notes=0, seed=13)
    with session_scope(world.db_url) as s:
        adapter = connect(s, s.get(SyncConfig, world.config_id))
    first = adapter.start_cursor("contact", None)
    before = contact_list_requests(world.hs)
    ahead = ReadAhead()
    ahead.follow(fresh_adapter(world), "contact", first, 10)
    reader = ahead._reader
    with reader._cond:
        assert reader._cond.wait_for(lambda: len(reader._units) >= DEPTH, timeout=30)
    assert contact_list_requests(world.hs) - before == DEPTH   # it waits for the taker there
    cursor, seen = first, []
    while cursor is not None:
        ahead.follow(fresh_adapter(world), "contact", cursor, 10)   # already reading there: goes on
        records, cursor = ahead.take("contact", cursor)
        seen += [r.external_id for r in records]
    assert len(seen) == len(set(seen)) == 60
    assert contact_list_requests(world.hs) - before == 6
    ahead.discard()


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_the_early_read_serves_the_jobs_first_units_and_counts_its_requests(engine, request, monkeypatch,
                                                                             crmsync_env, hubspot_sandbox,
                                                                             units_of_100):
    url = request.getfixturevalue("db_url" if engine == "postgresql" else "sqlite_url")
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", url)
    world = make_world(url, hubspot_sandbox, entities=["contacts"], sync_direction="pull")
    world.hs.seed(contacts=250, companies=0, deals=0, tasks=0, notes=0, seed=14)
    before, before_all = contact_list_requests(world.hs), world.hs.requests_log(entries=0)["total"]
    early = read_early(world.config_id, full=False, force=False, url=url)
    assert early is not None
    job = world.sync(read_ahead=early)
    assert job["status"] == "succeeded" and job["contacts_synced"] == 250
    assert len(world.links()) == 250
    assert contact_list_requests(world.hs) - before == 3        # 100 + 100 + 50: nothing fetched twice
    # Read while the job was made, the first unit is as large as the later ones (up to 500), not
    # the short one (100) a unit fetching for itself starts with.
    with session_scope(url) as s:
        assert s.scalars(select(SyncJobStep.pages).where(SyncJobStep.job_id == job["job_id"])).all() == [1]
    # The early adapter's requests (its property read too) are the job's.
    assert job["counts"]["requests"] == world.hs.requests_log(entries=0)["total"] - before_all


def test_an_early_read_that_is_not_the_jobs_is_dropped_and_counted(world, units_of_100):
    """The checkpoint moved between the early read and the job (a full listing asked of a read
    that started incrementally): the unit fetches for itself; the wasted requests still count."""
    world.hs.seed(contacts=120, companies=0, deals=0, tasks=0, notes=0, seed=15)
    assert world.sync()["contacts_synced"] == 120
    before = world.hs.requests_log(entries=0)["total"]
    early = read_early(world.config_id, full=False, force=False, url=world.db_url)   # a search listing
    assert early is not None
    job = world.sync(full=True, read_ahead=early)
    assert job["status"] == "succeeded" and job["counts"]["contact"]["updated"] == 0
    assert job["counts"]["requests"] == world.hs.requests_log(entries=0)["total"] - before


def test_no_early_read_where_the_first_unit_cannot_be_foreseen(world):
    world.hs.seed(contacts=5, companies=0, deals=0, tasks=0, notes=0, seed=16)
    url = world.db_url
    before = world.hs.requests_log(entries=0)["total"]
    assert read_early("not-a-uuid", full=False, force=False, url=url) is None
    assert read_early("00000000-0000-0000-0000-000000000000", full=False, force=False, url=url) is None
    with session_scope(url) as s:
        s.execute(update(SyncConfig).where(SyncConfig.id == world.config_id).values(enabled=False))
    assert read_early(world.config_id, full=False, force=False, url=url) is None
    with session_scope(url) as s:
        s.execute(update(SyncConfig).where(SyncConfig.id == world.config_id).values(enabled=True,
                                                                                       sync_direction="push"))
    assert read_early(world.config_id, full=False, force=False, url=url) is None
    with session_scope(url) as s:
        s.execute(update(SyncConfig).where(SyncConfig.id == world.config_id).values(sync_direction="pull"))
        s.add(SyncJob(id="11111111-1111-4111-8111-111111111111", tenant_id=world.tenant_id,
                      sync_config_id=world.config_id, status="running", trigger="manual", full=False, counts={}))
    assert read_early(world.config_id, full=False, force=False, url=url) is None     # it is resumed or refused
    assert world.hs.requests_log(entries=0)["total"] == before


def test_the_early_read_never_opens_another_tenants_secret(world):
    """A config row pointed (by hand, past create_config's check) at a vault entry of another
    tenant: the early read finds no secret for the config's tenant and asks the CRM nothing."""
    with session_scope(world.db_url) as s:
        other = make_tenant(s)
        stolen = make_secret(s, {"token": world.hs.token, "rate_limits": "none"}, tenant_id=other.id).id
        s.execute(update(SyncConfig).where(SyncConfig.id == world.config_id).values(credentials_vault_id=stolen))
    before = world.hs.requests_log(entries=0)["total"]
    assert read_early(world.config_id, full=False, force=False, url=world.db_url) is None
    assert world.hs.requests_log(entries=0)["total"] == before


EARLY_READ = """
import json, sys
from crmsync.sync.read_ahead import read_early
ahead = read_early(sys.argv[1], full=False, force=False)
cursor = ahead.start_cursor("contact", None)
records, _ = ahead.take("contact", cursor)
loaded = sorted(m for m in ("sqlalchemy", "requests", "cryptography", "crmsync.sync.connect") if m in sys.modules)
print(json.dumps({"reader": type(ahead._reader).__name__, "records": len(records), "loaded": loaded}))
ahead.discard()
"""


def test_the_early_read_loads_neither_sqlalchemy_nor_the_crms_client(make, units_of_100):
    """Structural, not a timing: what runs before the first request leaves SQLAlchemy and the
    models to load beside it, and the child that reads connects to the CRM itself: this process
    loads neither requests nor the vault's cipher."""
    world = make(entities=["contacts"], sync_direction="pull")
    world.hs.seed(contacts=40, companies=0, deals=0, tasks=0, notes=0, seed=17)
    environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", EARLY_READ, world.config_id], env=environ,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"reader": "_ChildReader", "records": 40, "loaded": []}


def test_a_listing_read_early_is_the_high_water_mark_from_when_it_began(world, pipedrive_crm):
    """Pipedrive lists changes from `synced_until` on, with no look-back. A listing read before
    the job existed ended before the job's first unit; a record changed in between is in none of
    its pages, so the next run must start from when the listing began, not from the unit's time."""
    import time
    config_id = add_pipedrive_config(world, pipedrive_crm, entities=["contacts"], sync_direction="pull")
    person = pipedrive_crm.state.create("person", {"name": "Ada", "emails": [{"value": "ada@example.org"}]})
    assert world.sync(config_id)["contacts_synced"] == 1
    early = read_early(config_id, full=False, force=False, url=world.db_url)
    assert early is not None
    reader = early._reader
    with reader._cond:
        assert reader._cond.wait_for(lambda: reader._done, timeout=30)     # the listing has ended
    began = int(reader.began.timestamp())
    # The change lands in the second after the listing began, and the job starts a second later
    # still (Pipedrive's times are whole seconds).
    deadline = time.monotonic() + 5
    while int(time.time()) < began + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pipedrive_crm.state.update("person", person["id"], {"name": "Ada Lovelace"})
    pipedrive_crm.state.set_update_time("person", person["id"], began + 1)
    assert world.sync(config_id, read_ahead=early)["status"] == "succeeded"
    world.sync(config_id)
    assert [r["first_name"] for r in world.rows()] == ["Ada"] and [r["last_name"] for r in world.rows()] == ["Lovelace"]


def test_the_plain_read_knows_the_same_active_job_statuses_as_the_models():
    from crmsync.db import models, reads
    assert reads.JOB_ACTIVE_STATUSES == models.JOB_ACTIVE_STATUSES


# --- the early read in a child process (`sync run --inline` forks it before any thread runs) ------
EARLY_JOB = """
import json, sys
from crmsync.sync.inline import run_job_inline
from crmsync.sync.read_ahead import read_early
early = read_early(sys.argv[1], full=False, force=False)
reader = early._reader
job = run_job_inline(sys.argv[1], full=sys.argv[2] == "full", read_ahead=early)
print(json.dumps({"reader": type(reader).__name__, "status": job["status"], "requests": job["counts"]["requests"],
                  "synced": job["contacts_synced"], "job_id": job["job_id"],
                  "read_here": reader.adapter is not None, "child_sent": reader.requests_sent() - (
                      reader.adapter.requests_sent() if reader.adapter is not None else 0)}))
"""


def run_early_job(world, full: bool) -> dict:
    """A job of the world's config run with an early read, in a process of its own (no thread runs
    there before the read, so its child process may read)."""
    environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", EARLY_JOB, world.config_id, "full" if full else "changes"],
                            env=environ, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("contacts", [250, 1200])    # one unit of 500; three, the pipe full between them
def test_a_child_process_reads_the_listing_and_every_request_counts(make, units_of_100, contacts):
    world = make(entities=["contacts"], sync_direction="pull")
    world.hs.seed(contacts=contacts, companies=0, deals=0, tasks=0, notes=0, seed=18)
    before, before_all = contact_list_requests(world.hs), world.hs.requests_log(entries=0)["total"]
    job = run_early_job(world, full=False)
    assert job["reader"] == "_ChildReader" and not job["read_here"]
    assert job["status"] == "succeeded" and job["synced"] == contacts
    assert len(world.rows()) == contacts and len(world.links()) == contacts
    assert contact_list_requests(world.hs) - before == -(-contacts // 100)      # nothing fetched twice
    assert job["requests"] == world.hs.requests_log(entries=0)["total"] - before_all
    # Units of 500 from the first on: the child's, not those of a unit fetching for itself (100, then 500).
    with session_scope(world.db_url) as s:
        assert s.scalars(select(SyncJobStep.pages).where(SyncJobStep.job_id == job["job_id"])).all() == \
            [-(-contacts // 500)]


def test_a_child_process_read_that_is_not_the_jobs_is_dropped_and_counted(world, units_of_100):
    world.hs.seed(contacts=120, companies=0, deals=0, tasks=0, notes=0, seed=19)
    assert world.sync()["contacts_synced"] == 120
    before = world.hs.requests_log(entries=0)["total"]
    job = run_early_job(world, full=True)      # the early read lists changes; the job lists everything
    assert job["reader"] == "_ChildReader" and job["status"] == "succeeded"
    assert job["requests"] == world.hs.requests_log(entries=0)["total"] - before


def test_a_child_whose_budget_would_be_its_own_leaves_the_early_read_to_a_thread(make, units_of_100):
    """The account has limits and no Redis keeps its budget: the child, having connected, sends
    no request and says so; a thread of the process reads ahead instead, from the first unit."""
    world = make(entities=["contacts"], sync_direction="pull")
    world.hs.seed(contacts=250, companies=0, deals=0, tasks=0, notes=0, seed=20)
    with session_scope(world.db_url) as s:
        limited = make_secret(s, {"token": world.hs.token}, tenant_id=world.tenant_id).id   # HubSpot's own limits
        s.execute(update(SyncConfig).where(SyncConfig.id == world.config_id).values(credentials_vault_id=limited))
    before, before_all = contact_list_requests(world.hs), world.hs.requests_log(entries=0)["total"]
    job = run_early_job(world, full=False)
    assert job["reader"] == "_ChildReader" and job["read_here"] and job["child_sent"] == 0
    assert job["status"] == "succeeded" and job["synced"] == 250
    assert contact_list_requests(world.hs) - before == 3          # 100 + 100 + 50: nothing fetched twice
    assert job["requests"] == world.hs.requests_log(entries=0)["total"] - before_all
    with session_scope(world.db_url) as s:        # read ahead from the first unit on: units of 500
        assert s.scalars(select(SyncJobStep.pages).where(SyncJobStep.job_id == job["job_id"])).all() == [1]


def test_no_child_process_reads_on_a_budget_only_this_process_keeps(world, monkeypatch):
    """Without Redis the rate budget lives in this process's memory: a child's spending would go
    unseen, so a thread reads instead."""
    from crmsync.ratelimit import Limit
    from crmsync.sync.read_ahead import child_may_read
    with session_scope(world.db_url) as s:
        adapter = connect(s, s.get(SyncConfig, world.config_id))
    monkeypatch.setattr(threading, "active_count", lambda: 1)    # as in a fresh `crmsync` process
    assert child_may_read(adapter)                 # the world's account has no limits
    adapter.client._limits = {"general": Limit(capacity=100, interval_seconds=10)}
    assert adapter.client.budget is not None and not adapter.client.budget.shared
    assert not child_may_read(adapter)

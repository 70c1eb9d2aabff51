"""Incremental cost, the deletion sweep and drift, against the sandbox CRMs on the real PostgreSQL."""
from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import delete, func, select, update

from crmsync.cli import main
from crmsync.db import session_scope
from crmsync.db.models import Contact, SweepId, SyncCheckpoint, SyncConfig, SyncJob, SyncLink
from crmsync.sync.schedule import dispatch_due_syncs
from tests.sync.conftest import add_pipedrive_config


def api_calls(world, before: dict | None = None) -> Counter:
    """Requests the sandbox served by endpoint (its admin API left out), less `before`."""
    now = Counter({k: v for k, v in world.hs.requests_log(entries=0)["by_endpoint"].items() if "_sandbox" not in k})
    return now - Counter(before or {})


def archive(world, ids):
    for i in range(0, len(ids), 100):
        world.hs.api("POST", "/crm/v3/objects/contacts/batch/archive",
                     json={"inputs": [{"id": str(x)} for x in ids[i:i + 100]]}).raise_for_status()


def test_incremental_with_archived_records_costs_one_search_per_type(world):
    world.hs.seed(contacts=260, seed=21)
    contacts = sorted(world.hs.state.records["contacts"])
    archive(world, contacts[:130])          # more archived records than one list page holds
    assert world.sync()["status"] == "succeeded"
    object_types = 8                        # contacts, companies, deals, tasks, notes, calls, meetings, emails

    before = api_calls(world)
    job = world.sync()
    spent = api_calls(world, before)
    assert job["status"] == "succeeded", job
    # Nothing changed: one search per object type, and nothing else (no archived listing).
    assert sum(spent.values()) == object_types, spent
    assert all("search" in endpoint for endpoint in spent), spent

    for n, rid in enumerate(contacts[130:180]):
        world.hs.edit("contacts", rid, {"jobtitle": f"Changed {n}"})
    before = api_calls(world)
    job = world.sync()
    spent = api_calls(world, before)
    assert job["contacts_synced"] == 50, job
    # 50 changes: the searches, and one association read for the changed contacts' companies.
    assert sum(spent.values()) == object_types + 1, spent
    assert not [e for e in spent if e.startswith("GET")], spent


def _sweep(world):
    return world.sync(trigger="sweep")


def test_sweep_finds_deletions_drift_and_repairs(world):
    world.hs.seed(contacts=40, seed=22)
    assert world.sync()["status"] == "succeeded"
    links = world.links()
    exts = sorted(links, key=int)
    # 1. Two records archived in the CRM with no webhook: local only.
    archive(world, exts[:2])
    # 2. A record whose local copy vanished: remote only.
    lost = exts[2]
    with session_scope(world.db_url) as s:
        s.execute(delete(SyncLink).where(SyncLink.tenant_id == world.tenant_id, SyncLink.external_id == lost))
        s.execute(delete(Contact).where(Contact.tenant_id == world.tenant_id, Contact.id == links[lost]))
    # 3. A CRM edit the incremental listing missed (the checkpoint moved past it): diverged remotely.
    missed = exts[3]
    world.hs.edit("contacts", missed, {"jobtitle": "Missed by search"})
    with session_scope(world.db_url) as s:
        s.execute(update(SyncCheckpoint).where(SyncCheckpoint.config_id == world.config_id,
                                               SyncCheckpoint.entity_type == "contact")
                  .values(synced_until=datetime.now(UTC) + timedelta(seconds=5)))
    # 4. A local change made behind crmsync's back (updated_at untouched): diverged locally.
    behind = exts[4]
    with session_scope(world.db_url) as s:
        s.execute(update(Contact).where(Contact.id == links[behind]).values(job_title="Edited in SQL"))
    # 5. A local record never sent to the CRM: local only too.
    with session_scope(world.db_url) as s:
        s.add(Contact(tenant_id=world.tenant_id, email="unsent@example.org", first_name="Unsent"))

    before = api_calls(world)
    job = _sweep(world)
    spent = api_calls(world, before)
    assert job["status"] == "succeeded", job
    drift = job["counts"]["drift"]["contact"]
    assert {k: drift[k] for k in ("remote_only", "local_only", "diverged", "repaired")} == {
        "remote_only": 1, "local_only": 3, "diverged": 2, "repaired": 5}, drift
    kinds = Counter(e["kind"] for e in drift["examples"])
    assert kinds == {"local_only": 3, "remote_only": 1, "diverged": 2}
    assert {e["external_id"] for e in drift["examples"] if e["kind"] == "local_only"} == {exts[0], exts[1], None}
    # ids only: one list page for 38 live contacts, one page per other object type; to repair the
    # remote-only and missed records, the property definitions (the sweep refreshes them), one
    # batch read and its association read.
    assert drift["listed"] == 38
    assert spent["GET /crm/v3/objects/{type}"] == 8 and spent["GET /crm/v3/properties/{type}"] == 1, spent
    assert drift["requests"] == 4 and sum(spent.values()) == drift["requests"] + 7, spent  # 7 other types
    # Repaired: the archived two deleted here, the lost one back, the missed edit merged, and the
    # local edit marked for the push.
    rows = {r["id"]: r for r in world.rows(include_deleted=True)}
    assert rows[links[exts[0]]]["deleted_at"] and rows[links[exts[1]]]["deleted_at"]
    now_links = world.links()
    assert lost in now_links and rows[now_links[lost]]["deleted_at"] is None
    assert rows[links[missed]]["job_title"] == "Missed by search"
    world.sync()
    assert world.hs.state.records["contacts"][int(behind)].props["jobtitle"] == "Edited in SQL"
    with session_scope(world.db_url) as s:   # the listing does not stay behind
        assert s.scalar(select(func.count()).select_from(SweepId)) == 0

    again = _sweep(world)["counts"]["drift"]["contact"]
    assert {k: again[k] for k in ("remote_only", "local_only", "diverged", "repaired")} == {
        "remote_only": 0, "local_only": 0, "diverged": 0, "repaired": 0}, again

    # `sync drift` prints the last sweep's figures.
    result = CliRunner().invoke(main, ["sync", "drift", world.config_id, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"contacts", "companies", "deals", "activities", "tasks"}
    assert {report["contacts"][k] for k in ("remote_only", "local_only", "diverged", "repaired")} == {0}
    assert report["contacts"]["sweep_status"] == "succeeded" and report["contacts"]["examples"] == []


def test_drift_before_any_sweep_is_empty(world):
    result = CliRunner().invoke(main, ["sync", "drift", world.config_id, "--json"], catch_exceptions=False)
    assert result.exit_code == 0 and json.loads(result.stdout) == {}
    bad = CliRunner().invoke(main, ["sync", "drift", "not-an-id", "--json"])
    assert bad.exit_code == 2 and "not an id" in bad.output


def test_sweep_mass_delete_guard_changes_nothing(world):
    world.hs.seed(contacts=30, seed=23)
    world.sync()
    archive(world, sorted(world.links(), key=int)[:25])
    result = CliRunner().invoke(main, ["sync", "run", world.config_id, "--sweep", "--inline", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 1
    job = json.loads(result.stdout)
    assert job["status"] == "failed" and "refusing to delete 25 of 30 contact records" in job["error"]
    assert len(world.rows()) == 30
    with session_scope(world.db_url) as s:   # nothing was counted or kept either
        assert s.scalar(select(func.count()).select_from(SweepId)) == 0


def test_push_only_config_counts_but_does_not_delete(world):
    world.hs.seed(contacts=12, seed=24)
    world.sync()
    with session_scope(world.db_url) as s:
        s.get(SyncConfig, world.config_id).sync_direction = "push"
    archive(world, sorted(world.links(), key=int)[:1])
    drift = _sweep(world)["counts"]["drift"]["contact"]
    assert drift["local_only"] == 1 and drift["repaired"] == 0
    assert len(world.rows()) == 12


def test_beat_dispatches_due_sweeps_on_their_own_cadence(crmsync_env, world, make):
    lazy = make(sweep_every_hours=0, account_id="999")
    now = datetime.now(UTC)
    with session_scope(world.db_url) as s:
        for cid in (world.config_id, lazy.config_id):
            config = s.get(SyncConfig, cid)
            config.next_sync_at = now + timedelta(hours=1)        # no sync due: only sweeps
        assert s.get(SyncConfig, world.config_id).next_sweep_at > now + timedelta(hours=23)
        s.get(SyncConfig, world.config_id).next_sweep_at = now - timedelta(seconds=1)
    with session_scope(world.db_url) as s:
        jobs = dispatch_due_syncs(s, now=now)
    with session_scope(world.db_url) as s:
        made = [s.get(SyncJob, j) for j in jobs]
        assert [(j.sync_config_id, j.trigger) for j in made] == [(world.config_id, "sweep")]
        assert s.get(SyncConfig, world.config_id).next_sweep_at == now + timedelta(hours=24)
        assert s.get(SyncConfig, lazy.config_id).next_sweep_at is None
    with session_scope(world.db_url) as s:          # not due again until its cadence has passed
        assert dispatch_due_syncs(s, now=now + timedelta(minutes=5)) == []

    result = CliRunner().invoke(main, ["configs", "update", world.config_id, "--sweep-every", "6", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sweep_every_hours"] == 6
    bad = CliRunner().invoke(main, ["configs", "update", world.config_id, "--sweep-every", "-1"])
    assert bad.exit_code == 2 and "sweep_every_hours" in bad.output


def test_pipedrive_sweep_finds_a_deleted_person(world, pipedrive_crm):
    config_id = add_pipedrive_config(world, pipedrive_crm, entities=["contacts"])
    people = [pipedrive_crm.state.create("person", {"name": f"P{n}", "emails": [{"value": f"p{n}@x.org"}]})
              for n in range(12)]
    assert world.sync(config_id)["status"] == "succeeded"
    gone = str(people[0]["id"])
    pipedrive_crm.state.delete("person", int(gone))
    job = world.sync(config_id, trigger="sweep")
    drift = job["counts"]["drift"]["contact"]
    assert drift["local_only"] == 1 and drift["repaired"] == 1 and drift["listed"] == 11, drift
    assert drift["requests"] == 1                           # 500 ids a page
    deleted = [r for r in world.rows(include_deleted=True) if r["deleted_at"]]
    assert [r["id"] for r in deleted] == [world.links(platform="pipedrive")[gone]]

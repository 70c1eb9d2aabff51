"""Notes both ways between the local store and the Salesforce sandbox over HTTP, through the whole
sync engine on the real PostgreSQL: classic Notes ("Salesforce Object Reference: Note") pulled as
activities of type note on their parent, edits either side, a local note created on its contact
(its occurred_at kept), edited and deleted, our own writes coming back as nothing, and a note on no
record left out with its reason."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from crmsync.configs import create_config
from crmsync.db import session_scope
from crmsync.db.models import Activity, new_id
from tests.fixtures.factories import make_secret, make_tenant
from tests.sync.conftest import World


def add_salesforce_config(db_url, tenant_id, salesforce_sandbox, entities) -> str:
    app = salesforce_sandbox.app
    with session_scope(db_url) as s:
        # The sandbox runs without an allocation; our own budget is off for it too.
        secret = make_secret(s, {"client_id": app.options.client_id, "client_secret": app.options.client_secret,
                                 "refresh_token": app.options.refresh_token, "rate_limits": "none"},
                             platform="salesforce")
        return create_config(s, {"tenant_id": tenant_id, "platform": "salesforce", "credentials_vault_id": secret.id,
                                 "api_base_url": salesforce_sandbox.base_url, "account_id": app.options.org_id,
                                 "entities": entities}).id


@pytest.fixture
def world(crmsync_env, db_url, salesforce_sandbox):
    with session_scope(db_url) as s:
        tenant_id = make_tenant(s).id
    config_id = add_salesforce_config(db_url, tenant_id, salesforce_sandbox,
                                      ["contacts", "companies", "deals", "activities"])
    return World(db_url=db_url, tenant_id=tenant_id, config_id=config_id, sf=salesforce_sandbox)


def _notes(world, include_deleted=False):
    return {r["id"]: r for r in world.rows("activity", include_deleted=include_deleted) if r["type"] == "note"}


def _add_local_note(world, **values) -> str:
    rid = new_id()
    with session_scope(world.db_url) as s:
        s.add(Activity(id=rid, tenant_id=world.tenant_id, type="note", updated_at=datetime.now(UTC), **values))
    return rid


def _synced(job) -> int:
    return sum(v for k, v in job.items() if k.endswith("_synced"))


def test_notes_sync_both_ways(world):
    sf = world.sf
    sf.seed(accounts=4, contacts=6, opportunities=3, tasks=0, events=0, notes=5)
    contact = sf.records("Contact")[0]
    remote = sf.api("POST", "/sobjects/Note/", json={"ParentId": contact["Id"], "Title": "Call notes",
                                                      "Body": "Wants a pilot in May."}).json()["id"]
    job = world.sync()
    assert job["status"] == "succeeded", job
    # Pulled: every Note, type note, on the local row of its parent.
    notes = _notes(world)
    assert len(notes) == 6
    contact_links = world.links("contact", "salesforce")
    activity_links = world.links("activity", "salesforce")
    pulled = notes[activity_links[remote]]
    assert (pulled["subject"], pulled["body"]) == ("Call notes", "Wants a pilot in May.")
    assert pulled["contact_id"] == contact_links[contact["Id"]] and pulled["company_id"] is None
    assert _synced(world.sync()) == 0

    # An edit in Salesforce comes in with the next (incremental) sync.
    sf.edit("Note", remote, {"Body": "Pilot agreed for May."})
    job = world.sync()
    assert job["status"] == "succeeded" and _notes(world)[activity_links[remote]]["body"] == "Pilot agreed for May."

    # A local note on a contact and its company goes to the contact, titled by its body.
    occurred = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    account_links = world.links("company", "salesforce")
    company_local = account_links[contact["AccountId"]] if contact.get("AccountId") else None
    local = _add_local_note(world, body="Sent the contract\nAwaiting signature", occurred_at=occurred,
                            contact_id=contact_links[contact["Id"]], company_id=company_local)
    job = world.sync()
    assert job["status"] == "succeeded", job
    assert job["counts"]["activity"]["created"] == 1, job["counts"]["activity"]
    made_id = {v: k for k, v in world.links("activity", "salesforce").items()}[local]
    made = next(n for n in sf.records("Note") if n["Id"] == made_id)
    assert (made["ParentId"], made["Title"], made["Body"]) == (contact["Id"], "Sent the contract",
                                                               "Sent the contract\nAwaiting signature")
    row = _notes(world)[local]
    # The Note's CreatedDate is the time of our write: the local occurred_at stays as it was.
    assert row["occurred_at"] == occurred and row["subject"] is None and row["company_id"] == company_local
    assert _synced(world.sync()) == 0            # our own write comes back as nothing

    # Edited here: the body travels, the title made from it follows.
    world.local_edit("activity", local, body="Signed\nKick-off in June")
    assert world.sync()["status"] == "succeeded"
    made = next(n for n in sf.records("Note") if n["Id"] == made_id)
    assert (made["Title"], made["Body"]) == ("Signed", "Signed\nKick-off in June")
    assert _synced(world.sync()) == 0

    # Deleted here: deleted there.
    world.local_edit("activity", local, deleted_at=datetime.now(UTC))
    job = world.sync()
    assert job["status"] == "succeeded" and job["counts"]["activity"]["deleted"] == 1, job["counts"]["activity"]
    assert made_id not in {n["Id"] for n in sf.records("Note")}


def test_a_local_note_on_no_record_is_left_out_with_its_reason(world):
    sf = world.sf
    sf.seed(accounts=2, contacts=2, opportunities=0, tasks=0, events=0)
    assert world.sync()["status"] == "succeeded"
    orphan = _add_local_note(world, subject="Loose thought", body="Not about anyone")
    job = world.sync()
    assert job["status"] == "succeeded", job
    counts = job["counts"]["activity"]
    assert counts["created"] == 0 and counts["failed"] == 1, counts
    [reason] = job["counts"]["errors"]
    assert orphan in reason and "Note.ParentId is required" in reason
    assert sf.records("Note") == [] and orphan not in world.links("activity", "salesforce").values()
    # It stays local and untouched; each push offers it again (refused before any request is
    # sent) while the rest of the config keeps syncing.
    assert _notes(world)[orphan]["subject"] == "Loose thought"
    again = world.sync()
    assert again["status"] == "succeeded" and again["counts"]["activity"]["failed"] == 1, again["counts"]
    # Given a contact, it goes.
    contact = world.sf.records("Contact")[0]["Id"]
    with session_scope(world.db_url) as s:
        s.execute(update(Activity).where(Activity.id == orphan).values(
            contact_id=world.links("contact", "salesforce")[contact], updated_at=datetime.now(UTC)))
    job = world.sync()
    assert job["status"] == "succeeded" and job["counts"]["activity"]["created"] == 1, job["counts"]
    assert [(n["ParentId"], n["Title"]) for n in sf.records("Note")] == [(contact, "Loose thought")]


def test_a_hubspot_note_reaches_salesforce_on_its_contact_and_comes_back_as_nothing(make, salesforce_sandbox):
    """HubSpot notes have no subject and an HTML body: in Salesforce they are titled by their first
    line and hang on their contact; neither CRM then sees a change it did not make."""
    hs_world = make()
    hs_world.hs.seed(contacts=4, companies=2, notes=3, seed=7)
    salesforce_sandbox.seed(accounts=0, contacts=0, opportunities=0, tasks=0, events=0)   # an empty org
    assert hs_world.sync()["status"] == "succeeded"
    sf_config = add_salesforce_config(hs_world.db_url, hs_world.tenant_id, salesforce_sandbox,
                                      ["contacts", "companies", "activities"])
    job = hs_world.sync(sf_config)
    assert job["status"] == "succeeded", job
    assert job["counts"]["activity"]["created"] == 3, job["counts"]["activity"]
    local = {r["id"]: r for r in hs_world.rows("activity")}
    sf_contacts = {v: k for k, v in hs_world.links("contact", "salesforce").items()}
    notes = {n["Id"]: n for n in salesforce_sandbox.records("Note")}
    for ext, local_id in hs_world.links("activity", "salesforce").items():
        row = local[local_id]
        assert notes[ext]["ParentId"] == sf_contacts[row["contact_id"]]
        assert notes[ext]["Body"] == row["body"] and notes[ext]["Title"] == row["body"][3:-4]   # <p>...</p>
        assert row["subject"] is None
    before = {k: (v["subject"], v["body"], v["occurred_at"]) for k, v in local.items()}
    assert _synced(hs_world.sync(sf_config)) == 0
    assert _synced(hs_world.sync()) == 0
    assert {r["id"]: (r["subject"], r["body"], r["occurred_at"]) for r in hs_world.rows("activity")} == before

"""One tenant can neither see nor change another's rows, whatever the ids say."""
from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import Contact, SyncConfig, SyncLink
from crmsync.platforms.base import RemoteRecord
from crmsync.sync.apply import apply_remote_deletions, apply_remote_records
from tests.sync.conftest import make_world


def test_same_external_ids_in_two_tenants_stay_apart(crmsync_env, db_url, hubspot_sandbox):
    a = make_world(db_url, hubspot_sandbox)
    b = make_world(db_url, hubspot_sandbox, account_id="tenant-b-account")
    hubspot_sandbox.seed(contacts=20, seed=5)
    assert a.sync()["contacts_synced"] == 20
    assert b.rows() == []                            # A's sync wrote nothing of B's
    assert b.sync()["contacts_synced"] == 20         # B links the same external ids to its own rows
    a_ids = {r["id"] for r in a.rows()}
    b_ids = {r["id"] for r in b.rows()}
    assert not a_ids & b_ids
    # A's remote change, delete and merge path, driven with B's external ids, never reach B's rows
    ext = next(iter(b.links()))
    with session_scope(db_url) as s:
        config_a = s.get(SyncConfig, a.config_id)
        apply_remote_records(s, config_a, "contact", [RemoteRecord("contact", ext, {"email": "x@a.test",
                                                                                      "first_name": "Mallory"})])
        apply_remote_deletions(s, config_a, "contact", list(b.links()), guard=False)
    assert all(r["first_name"] != "Mallory" and r["deleted_at"] is None for r in b.rows())
    with session_scope(db_url) as s:
        links_b = s.scalars(select(SyncLink).where(SyncLink.tenant_id == b.tenant_id)).all()
        assert {l.local_id for l in links_b} == b_ids
        assert s.scalar(select(Contact).where(Contact.tenant_id == b.tenant_id, Contact.first_name == "Mallory")) \
            is None

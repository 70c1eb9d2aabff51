"""One tenant can neither see nor change another's rows, whatever the ids say."""
import pytest
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


def test_a_config_pointed_at_another_tenants_entry_opens_nothing(crmsync_env, db_url, hubspot_sandbox):
    """Even a row edited behind the CLI's back: every vault read names the config's tenant."""
    from sqlalchemy import update

    from crmsync.credentials import SecretNotFound, Vault
    from crmsync.ingest.errors import Forbidden
    from crmsync.ingest.tenancy import WebhookSecrets
    from tests.fixtures.db import TEST_SECRET_KEY
    a = make_world(db_url, hubspot_sandbox)
    b = make_world(db_url, hubspot_sandbox, account_id="tenant-b-account")
    hubspot_sandbox.seed(contacts=20, seed=5)
    with session_scope(db_url) as s:
        a_entry = s.get(SyncConfig, a.config_id).credentials_vault_id
        s.execute(update(SyncConfig).where(SyncConfig.id == b.config_id).values(
            credentials_vault_id=a_entry, webhook_secret_vault_id=a_entry))
    job = b.sync()
    assert job["status"] == "failed" and f"no vault entry {a_entry} for tenant {b.tenant_id}" in job["error"]
    assert b.rows() == []
    secrets = WebhookSecrets(lambda: Vault(TEST_SECRET_KEY))
    with session_scope(db_url) as s:
        with pytest.raises(Forbidden):
            secrets.entry(s, b.tenant_id, a_entry)
        assert secrets.entry(s, a.tenant_id, a_entry)[0]["token"] == hubspot_sandbox.token
        with pytest.raises(SecretNotFound):
            Vault(TEST_SECRET_KEY).read(s, a_entry, tenant_id=b.tenant_id)


def test_a_disabled_config_syncs_only_when_forced(crmsync_env, db_url, hubspot_sandbox):
    from click.testing import CliRunner

    from crmsync.cli import main
    world = make_world(db_url, hubspot_sandbox, enabled=False)
    hubspot_sandbox.seed(contacts=5, seed=2)
    for extra in ((), ("--inline",)):
        result = CliRunner().invoke(main, ["sync", "run", world.config_id, *extra, "--json"])
        assert result.exit_code == 1 and "is disabled" in result.stderr and "--force" in result.stderr, result.output
    assert world.rows() == []
    result = CliRunner().invoke(main, ["sync", "run", world.config_id, "--inline", "--force", "--json"])
    assert result.exit_code == 0, result.output
    assert len(world.rows()) == 5

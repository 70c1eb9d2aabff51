"""Constraints that make duplicates impossible, on both databases."""
import pytest
from sqlalchemy.exc import IntegrityError

from crmsync.db import session_scope
from crmsync.db.models import Contact, SyncJob, SyncLink, WebhookEvent
from tests.fixtures.factories import make_config, make_tenant


def test_one_link_per_external_id(any_db_url):
    with session_scope(any_db_url) as s:
        tenant = make_tenant(s)
        config = make_config(s, tenant)
        a, b = Contact(tenant_id=tenant.id, email="a@x.org"), Contact(tenant_id=tenant.id, email="b@x.org")
        s.add_all([a, b])
        s.flush()
        s.add(SyncLink(tenant_id=tenant.id, config_id=config.id, platform="hubspot", entity_type="contact",
                       local_id=a.id, external_id="101"))
        ids = (tenant.id, config.id, b.id)
    with pytest.raises(IntegrityError), session_scope(any_db_url) as s:
        s.add(SyncLink(tenant_id=ids[0], config_id=ids[1], platform="hubspot", entity_type="contact",
                       local_id=ids[2], external_id="101"))


def test_one_webhook_event_per_key(any_db_url):
    with session_scope(any_db_url) as s:
        tenant = make_tenant(s)
        row = {"tenant_id": tenant.id, "platform": "hubspot", "account_id": "42", "event_key": "e1",
               "event_type": "contact.creation", "payload": {}}
        s.add(WebhookEvent(**row))
    with pytest.raises(IntegrityError), session_scope(any_db_url) as s:
        s.add(WebhookEvent(**row))


def test_one_active_job_per_config(any_db_url):
    with session_scope(any_db_url) as s:
        tenant = make_tenant(s)
        config = make_config(s, tenant)
        s.add(SyncJob(tenant_id=tenant.id, sync_config_id=config.id, status="succeeded"))
        s.add(SyncJob(tenant_id=tenant.id, sync_config_id=config.id, status="running"))
        ids = (tenant.id, config.id)
    with pytest.raises(IntegrityError), session_scope(any_db_url) as s:
        s.add(SyncJob(tenant_id=ids[0], sync_config_id=ids[1], status="queued"))


def test_external_ids_is_a_view_of_links(any_db_url):
    with session_scope(any_db_url) as s:
        tenant = make_tenant(s)
        config = make_config(s, tenant)
        c = Contact(tenant_id=tenant.id, email="a@x.org")
        s.add(c)
        s.flush()
        s.add(SyncLink(tenant_id=tenant.id, config_id=config.id, platform="hubspot", entity_type="contact",
                       local_id=c.id, external_id="501"))
        cid = c.id
    with session_scope(any_db_url) as s:
        assert [e["external_id"] for e in s.get(Contact, cid).external_ids] == ["501"]
        assert s.get(Contact, cid).external_ids[0]["platform"] == "hubspot"


def test_a_link_cannot_name_another_tenants_config(any_db_url):
    # One composite key checks both: the config exists, and it is this tenant's.
    with session_scope(any_db_url) as s:
        mine, theirs = make_tenant(s), make_tenant(s)
        their_config = make_config(s, theirs)
        row = Contact(tenant_id=mine.id, email="a@x.org")
        s.add(row)
        s.flush()
        ids = (mine.id, their_config.id, row.id)
    with pytest.raises(IntegrityError), session_scope(any_db_url) as s:
        s.add(SyncLink(tenant_id=ids[0], config_id=ids[1], platform="hubspot", entity_type="contact",
                       local_id=ids[2], external_id="101"))

"""A synced record's tenant and a sync link's (tenant, config): FOREIGN KEYs on SQLite, triggers
checked once per statement on PostgreSQL (migration 0010). Either way they keep the keys'
promises: no row points at a missing or another tenant's parent, the parent's deletion takes
the rows with it, and a parent in use cannot be re-keyed or deleted under an open insert."""
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from crmsync.db import get_engine, session_scope
from crmsync.db.models import ENTITY_MODELS, Contact, Deal, SyncConfig, SyncLink, Tenant
from crmsync.sync import store
from tests.fixtures.factories import make_config, make_tenant


def _two_tenants(url):
    with session_scope(url) as s:
        a, b = make_tenant(s, "a"), make_tenant(s, "b")
        ca, cb = make_config(s, a), make_config(s, b, platform="pipedrive")
        return a.id, b.id, ca.id, cb.id


def _link(tenant_id, config_id, local_id, external_id="101"):
    return SyncLink(tenant_id=tenant_id, config_id=config_id, platform="hubspot", entity_type="contact",
                    local_id=local_id, external_id=external_id)


def _contact(session, tenant_id, config_id=None) -> str:
    """A contact of the tenant, linked through the config if one is given; its id."""
    contact = Contact(tenant_id=tenant_id, email="a@x.org")
    session.add(contact)
    session.flush()
    if config_id is not None:
        session.add(_link(tenant_id, config_id, contact.id))
    return contact.id


def _count(url, model, **where) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(model).filter_by(**where))


@pytest.mark.parametrize("entity", sorted(ENTITY_MODELS))
def test_a_record_of_a_tenant_that_does_not_exist_is_refused(any_db_url, entity):
    _two_tenants(any_db_url)
    with pytest.raises(IntegrityError), session_scope(any_db_url) as s:
        s.add(ENTITY_MODELS[entity](tenant_id=str(uuid.uuid4()), **_required(entity)))
    assert _count(any_db_url, ENTITY_MODELS[entity]) == 0


def _required(entity: str) -> dict:
    return {"activity": {"type": "note"}, "task": {"title": "t"}, "deal": {"name": "d"},
            "company": {"name": "c"}, "contact": {"email": "x@y.org"}}[entity]


def test_a_link_to_another_tenants_config_is_refused(any_db_url):
    a, _b, _ca, cb = _two_tenants(any_db_url)
    with session_scope(any_db_url) as s:
        local = _contact(s, a)
    with pytest.raises(IntegrityError), session_scope(any_db_url) as s:
        s.add(_link(a, cb, local))
    assert _count(any_db_url, SyncLink) == 0


def test_a_copy_of_links_with_one_bad_config_stores_none_of_them(db_url):
    """A page's links go in by COPY (crmsync.sync.store.new_rows): one row of another tenant's
    config undoes the whole statement, named as the key it breaks."""
    a, _b, ca, cb = _two_tenants(db_url)
    columns = ["id", "tenant_id", "config_id", "platform", "entity_type", "local_id", "external_id", "base",
               "created_at"]
    now = datetime.now(UTC)
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught, session_scope(db_url) as s:
        with store.new_rows(s, SyncLink.__table__, columns) as add:
            for n, config in enumerate([ca, ca, cb, ca]):
                add([str(uuid.uuid4()), a, config, "hubspot", "contact", str(uuid.uuid4()), str(n), {}, now])
        s.flush()
    assert caught.value.diag.constraint_name == "fk_crm_sync_links_config"
    assert cb in caught.value.diag.message_detail
    assert _count(db_url, SyncLink) == 0


def test_moving_a_record_or_link_to_a_missing_parent_is_refused(any_db_url):
    a, _b, ca, _cb = _two_tenants(any_db_url)
    with session_scope(any_db_url) as s:
        local = _contact(s, a, ca)
    with pytest.raises(IntegrityError), session_scope(any_db_url) as s:
        s.execute(update(Contact).where(Contact.id == local).values(tenant_id=str(uuid.uuid4())))
    with pytest.raises(IntegrityError), session_scope(any_db_url) as s:
        s.execute(update(SyncLink).where(SyncLink.local_id == local).values(config_id=str(uuid.uuid4())))
    assert _count(any_db_url, Contact, tenant_id=a) == 1 and _count(any_db_url, SyncLink, config_id=ca) == 1


def test_deleting_a_tenant_or_config_deletes_its_rows_only(any_db_url):
    a, b, ca, cb = _two_tenants(any_db_url)
    with session_scope(any_db_url) as s:
        for tenant, config in ((a, ca), (b, cb)):
            contact, deal = Contact(tenant_id=tenant, email="a@x.org"), Deal(tenant_id=tenant, name="d")
            s.add_all([contact, deal])
            s.flush()
            s.add(_link(tenant, config, contact.id))
    with session_scope(any_db_url) as s:
        s.execute(delete(SyncConfig).where(SyncConfig.id == ca))
    assert _count(any_db_url, SyncLink, config_id=ca) == 0 and _count(any_db_url, SyncLink, config_id=cb) == 1
    with session_scope(any_db_url) as s:
        s.execute(delete(Tenant).where(Tenant.id == a))
    assert _count(any_db_url, Contact, tenant_id=a) == _count(any_db_url, Deal, tenant_id=a) == 0
    assert _count(any_db_url, Contact, tenant_id=b) == _count(any_db_url, Deal, tenant_id=b) == 1
    assert _count(any_db_url, SyncLink, tenant_id=b) == 1


def test_a_tenant_or_config_in_use_keeps_its_key(db_url):
    a, _b, ca, _cb = _two_tenants(db_url)
    with session_scope(db_url) as s:
        _contact(s, a, ca)
        only_records = make_tenant(s, "c").id     # no config: only the trigger holds its key
        s.add(Contact(tenant_id=only_records, email="c@x.org"))
    with pytest.raises(IntegrityError, match="crm_contacts_tenant_id_fkey"), session_scope(db_url) as s:
        s.execute(text("UPDATE tenants SET id = gen_random_uuid() WHERE id = :a"), {"a": only_records})
    with pytest.raises(IntegrityError, match="fk_crm_sync_links_config"), session_scope(db_url) as s:
        s.execute(text("UPDATE crm_sync_configs SET id = gen_random_uuid() WHERE id = :c"), {"c": ca})


def test_truncating_tenants_empties_their_records_and_links(db_url):
    a, _b, ca, _cb = _two_tenants(db_url)
    with session_scope(db_url) as s:
        _contact(s, a, ca)
    with get_engine(db_url).begin() as conn:
        conn.execute(text("TRUNCATE tenants CASCADE"))
    assert _count(db_url, Contact) == _count(db_url, SyncLink) == 0


def test_an_open_insert_holds_its_parents_as_a_key_check_does(db_url):
    """The insert's check locks the tenant and config (FOR KEY SHARE) until it commits: their
    deletion waits for it, and then takes its rows along."""
    a, _b, ca, _cb = _two_tenants(db_url)
    engine = get_engine(db_url)
    with session_scope(db_url) as s:
        local = _contact(s, a)
    with engine.connect() as inserting, engine.connect() as deleting:
        inserting.execute(SyncLink.__table__.insert().values(
            id=str(uuid.uuid4()), tenant_id=a, config_id=ca, platform="hubspot", entity_type="contact",
            local_id=local, external_id="101", base={}))
        deleting.execute(text("SET lock_timeout = '200ms'"))
        deleting.commit()       # kept for the session: the rollbacks below would undo it
        for parent in ("DELETE FROM crm_sync_configs WHERE id = :k", "DELETE FROM tenants WHERE id = :k"):
            with pytest.raises(Exception) as caught:
                deleting.execute(text(parent), {"k": ca if "configs" in parent else a})
            assert isinstance(caught.value.orig, psycopg.errors.LockNotAvailable)
            deleting.rollback()
        inserting.commit()
        deleting.execute(text("DELETE FROM crm_sync_configs WHERE id = :k"), {"k": ca})
        deleting.commit()
    assert _count(db_url, SyncLink) == 0


def test_postgresql_checks_the_keys_per_statement(db_url):
    """The keys are triggers there, not FOREIGN KEYs (whose per-row checks they replace)."""
    with get_engine(db_url).connect() as conn:
        keys = set(conn.execute(text(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(CAST(:t AS regclass[]))"),
            {"t": ["crm_sync_links", *(m.__tablename__ for m in ENTITY_MODELS.values())]}).scalars())
        triggers = set(conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars())
    assert "fk_crm_sync_links_config" not in keys
    assert not {f"{m.__tablename__}_tenant_id_fkey" for m in ENTITY_MODELS.values()} & keys
    assert {"crm_contacts_company_id_fkey"} <= keys       # the others stay FOREIGN KEYs
    assert {"crm_sync_links_config_checked", "crm_contacts_tenant_checked", "tenants_records_deleted",
            "crm_sync_configs_links_deleted"} <= triggers

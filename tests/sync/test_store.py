"""The page-at-a-time reads and writes of `crmsync.sync.store`, on PostgreSQL and SQLite."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import Contact
from crmsync.db.types import utcnow
from crmsync.sync import store
from tests.fixtures.factories import make_tenant

AWKWARD = ['plain@example.com', 'quo"te@example.com', 'back\\slash@example.com', 'com,ma@example.com',
           '{brace}@example.com', 'sp ace@example.com', 'NULL', '', 'ünï@exämple.com', "a'b@example.com"]


@pytest.mark.parametrize("probe", [AWKWARD, AWKWARD[:1], [*AWKWARD, None]])
def test_among_finds_exactly_the_values_however_they_are_spelled(any_db_url, probe):
    # On PostgreSQL the list travels as one array literal: quotes, backslashes, commas, braces and
    # the word NULL must arrive as the strings they are.
    with session_scope(any_db_url) as s:
        tenant = make_tenant(s)
        now = utcnow()
        ids = store.new_ids(len(AWKWARD) + 1)
        store.insert_records(s, "contact", [store.record_values("contact", {"email": e}, [i, tenant.id, now, now, None])
                                            for i, e in zip(ids, [*AWKWARD, "other@example.com"], strict=True)])
        s.flush()
        found = s.scalars(select(Contact.email).where(Contact.tenant_id == tenant.id,
                                                      store.among(s, Contact.email, probe))).all()
        by_id = s.scalars(select(Contact.id).where(store.among(s, Contact.id, ids[:3]))).all()
    assert sorted(found) == sorted(e for e in probe if e is not None)
    assert sorted(by_id) == sorted(ids[:3])


@pytest.mark.parametrize("count", [0, 1, 2, 5000])
def test_new_ids_are_distinct_version_4_uuids_as_uuid4_spells_them(count):
    ids = store.new_ids(count)
    assert len(ids) == len(set(ids)) == count
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_new_record_row_holds_every_synced_field_its_custom_fields_and_the_defaults(any_db_url):
    from crmsync.db.models import Activity
    from crmsync.sync.merge import CUSTOM
    with session_scope(any_db_url) as s:
        tenant = make_tenant(s)
        now = utcnow()
        first, second = store.new_ids(2)
        store.insert_records(s, "activity", [
            store.record_values("activity", {"subject": "Call", "type": "call", "occurred_at": "2025-03-13T15:30:00+00:00",
                                             CUSTOM + "mood": "good", CUSTOM + "gone": None},
                                [first, tenant.id, now, now, "sync:hubspot"], {"type": "note"}),
            store.record_values("activity", {"subject": "Empty", "type": ""}, [second, tenant.id, now, now, None],
                                {"type": "note"})])
        s.flush()
        rows = {a.id: a for a in s.scalars(select(Activity).where(Activity.tenant_id == tenant.id))}
    call, empty = rows[first], rows[second]
    assert (call.subject, call.type, call.custom_fields, call.last_change_cause) == (
        "Call", "call", {"mood": "good"}, "sync:hubspot")
    assert call.occurred_at.isoformat() == "2025-03-13T15:30:00+00:00"
    assert (empty.type, empty.custom_fields, empty.body, empty.occurred_at) == ("note", {}, None, None)

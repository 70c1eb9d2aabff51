"""A backfill refreshes the planner's statistics as its tables grow (ANALYZE at units 5, 17, 65, ...),
but not at a step's last unit, whose table no later lookup of the job reads: there it refreshes
only the shared links table, and only when another step of the job follows."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text


@pytest.fixture
def units_of_100(monkeypatch):
    from crmsync.settings import get_settings
    monkeypatch.setenv("CRMSYNC_PAGE_SIZE", "100")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def analyzed(db_url) -> dict[str, int]:
    """Manual ANALYZEs so far, per table (autovacuum's are counted apart)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text(
                "SELECT relname, analyze_count FROM pg_stat_user_tables "
                "WHERE relname IN ('crm_contacts', 'crm_deals', 'crm_sync_links')")).all())
    finally:
        engine.dispose()


def grown(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {t for t in after if after[t] > before.get(t, 0)}


# Units of 100, then 500: the fifth unit starts after 1,600 contacts.
@pytest.mark.parametrize(("contacts", "entities", "expected"), [
    (2500, ["contacts"], {"crm_contacts", "crm_sync_links"}),     # the fifth unit has a sixth after it
    (2000, ["contacts"], set()),                                   # the fifth unit is the step's last
    (2000, ["contacts", "deals"], {"crm_sync_links"}),             # ... and the deals step reads links next
])
def test_a_backfill_analyzes_what_a_later_lookup_reads(make, db_url, units_of_100, contacts, entities, expected):
    world = make(entities=entities, sync_direction="pull")
    world.hs.seed(contacts=contacts, companies=0, deals=0, tasks=0, notes=0, seed=21)
    before = analyzed(db_url)
    job = world.sync(full=True)
    assert job["status"] == "succeeded" and job["contacts_synced"] == contacts
    assert grown(before, analyzed(db_url)) == expected

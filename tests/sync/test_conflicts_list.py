"""`crmsync conflicts list` reads through `crmsync.db.reads` (plain SQL, no SQLAlchemy) and answers
exactly what the ORM path answers (`list_conflicts`, then `conflict_as_dict`): the same dicts, newest
first, filtered by tenant and status, at most CONFLICT_LIST_LIMIT of them."""
import json
import uuid
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import text

from crmsync.cli import main
from crmsync.console import table, to_json
from crmsync.db import get_engine, session_scope
from crmsync.db.models import ConflictRecord
from crmsync.db.reads import CONFLICT_COLUMNS, CONFLICT_LIST_LIMIT, recent_conflicts
from crmsync.sync.conflicts import conflict_as_dict, list_conflicts
from tests.fixtures.factories import make_config, make_conflict, make_tenant

T0 = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
COLUMNS = ["id", "entity_type", "entity_id", "platform", "conflicting_fields", "status"]
# conflict_as_dict's keys in the order it has always given them.
KEYS = ["id", "tenant_id", "config_id", "platform", "entity_type", "entity_id", "external_id",
        "conflicting_fields", "status", "local", "remote", "base", "local_snapshot", "remote_snapshot",
        "base_snapshot", "resolution", "created_at", "resolved_at"]


def _make_conflicts(url: str) -> tuple[str, str]:
    """Seven conflicts of two tenants, interleaved in time, in every shape a conflict's view shows.
    Returns the two tenant ids."""
    with session_scope(url) as s:
        a, b = make_config(s, make_tenant(s)), make_config(s, make_tenant(s))
        shapes = [
            (a, {"conflicting_fields": ["first_name", "phone", "tags"],
                 "local_snapshot": {"first_name": "Mine — ü", "phone": "+1 555", "lead_score": 1.5,
                                    "tags": ["vip", "eu"], "opted_in": True},
                 "remote_snapshot": {"first_name": "Theirs", "phone": None, "lead_score": 2, "tags": []},
                 "base_snapshot": {"first_name": "Base", "phone": "+1 000", "tags": ["vip"]}}),
            (b, {"entity_type": "deal", "conflicting_fields": ["amount"], "local_snapshot": {"amount": 12.5},
                 "remote_snapshot": {"amount": 13}, "base_snapshot": None}),        # JSON null, not SQL NULL
            (a, {"status": "resolved", "resolution": {"take": "local", "values": {"first_name": "Mine"}, "by": "cli"},
                 "resolved_at": T0 + timedelta(hours=1, microseconds=5), "base_snapshot": {"first_name": "Base"}}),
            (b, {"conflicting_fields": ["custom:Favourite colour", "email"],     # no base: SQL NULL
                 "local_snapshot": {"custom:Favourite colour": "blue", "email": "a@x.test"},
                 "remote_snapshot": {"email": "b@x.test"}}),
            (a, {"platform": None, "config_id": None, "external_id": None}),
            (b, {"status": "resolved", "conflicting_fields": [], "resolution": {"take": "remote", "values": {},
                                                                                "by": "rule"},
                 "resolved_at": T0 + timedelta(days=2)}),
            (a, {"entity_type": "company", "conflicting_fields": ["name"], "local_snapshot": {"name": "Acme"},
                 "remote_snapshot": {"name": "ACME Inc."}, "base_snapshot": {"name": "Acme"}}),
        ]
        for i, (config, values) in enumerate(shapes):
            make_conflict(s, config, created_at=T0 + timedelta(minutes=i, microseconds=i), **values)
        return a.tenant_id, b.tenant_id


def _orm_view(url: str, **filters) -> list[dict]:
    with session_scope(url) as s:
        return [conflict_as_dict(c) for c in list_conflicts(s, **filters)]


def _cli(*args):
    return CliRunner().invoke(main, ["conflicts", "list", *args], catch_exceptions=False)


def _use(monkeypatch, url: str) -> None:
    monkeypatch.setenv("CRMSYNC_DATABASE_URL", url)
    from crmsync.settings import get_settings
    get_settings.cache_clear()


def test_conflicts_list_answers_what_the_orm_path_answers(monkeypatch, any_db_url):
    ta, tb = _make_conflicts(any_db_url)
    _use(monkeypatch, any_db_url)
    with get_engine(any_db_url).connect() as conn:     # both shapes of "no base" are stored
        assert conn.scalar(text("SELECT count(*) FROM crm_conflict_records WHERE base_snapshot IS NULL")) == 3

    expected = _orm_view(any_db_url)
    assert len(expected) == 5 and [c["entity_type"] for c in expected[:2]] == ["company", "contact"]
    assert list(expected[0]) == KEYS
    # The same dicts, value for value, type for type and key for key (repr tells 1 from 1.0 and
    # True, a str from a UUID, naive from aware, and shows the order of keys).
    for filters in ({}, {"tenant_id": ta}, {"tenant_id": tb, "status": None}, {"status": "resolved"},
                    {"status": None}, {"status": None, "limit": 3}):
        want = _orm_view(any_db_url, **filters)
        got = [conflict_as_dict(r) for r in recent_conflicts(url=any_db_url, **filters)]
        assert got == want and repr(got) == repr(want), filters

    a_all = _orm_view(any_db_url, tenant_id=ta, status=None)
    b_all = _orm_view(any_db_url, tenant_id=tb, status=None)
    assert len(a_all) == 4 and len(b_all) == 3
    for args, want in [((), expected),
                       (("--tenant", ta), _orm_view(any_db_url, tenant_id=ta)),
                       (("--tenant", ta.upper(), "--status", ""), a_all),
                       (("--tenant", tb, "--status", ""), b_all),
                       (("--status", "resolved"), _orm_view(any_db_url, status="resolved")),
                       (("--status", "resolved", "--tenant", tb), _orm_view(any_db_url, tenant_id=tb, status="resolved")),
                       (("--status", ""), _orm_view(any_db_url, status=None)),
                       (("--status", "nonsense"), []),
                       (("--status", "x" * 300), []),
                       (("--tenant", str(uuid.uuid4())), [])]:
        result = _cli(*args, "--json")
        assert result.exit_code == 0, result.output
        assert result.stdout == to_json(want) + "\n", args
    # One tenant's filter never shows the other's rows.
    for tenant, other in ((ta, b_all), (tb, a_all)):
        shown = json.loads(_cli("--tenant", tenant, "--status", "", "--json").stdout)
        assert {c["tenant_id"] for c in shown} == {tenant}
        assert not {c["id"] for c in shown} & {c["id"] for c in other}

    human = _cli("--tenant", tb, "--status", "")
    assert human.stdout == table(b_all, COLUMNS) + "\n"
    assert human.stdout.split()[:len(COLUMNS)] == [c.upper() for c in COLUMNS]
    assert _cli("--status", "nonsense").stdout == "(none)\n"

    bad = _cli("--tenant", "zz", "--json")
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr == "error: Invalid value for '--tenant': not an id: 'zz'\n"


def test_conflicts_list_stops_at_the_limit(monkeypatch, any_db_url):
    with session_scope(any_db_url) as s:
        a, b = make_config(s, make_tenant(s)), make_config(s, make_tenant(s))
        for i in range(CONFLICT_LIST_LIMIT + 2):
            make_conflict(s, a, created_at=T0 + timedelta(seconds=i))
        for i in range(3):
            make_conflict(s, b, created_at=T0 + timedelta(seconds=i, milliseconds=500))
    _use(monkeypatch, any_db_url)
    expected = _orm_view(any_db_url)
    assert len(expected) == CONFLICT_LIST_LIMIT and expected[0]["created_at"] == T0 + timedelta(seconds=201)
    assert _cli("--json").stdout == to_json(expected) + "\n"
    assert _cli("--tenant", b.tenant_id, "--json").stdout == to_json(_orm_view(any_db_url, tenant_id=b.tenant_id)) + "\n"
    assert len(json.loads(_cli("--tenant", b.tenant_id, "--json").stdout)) == 3


def test_the_view_reads_the_same_columns():
    assert set(CONFLICT_COLUMNS) == set(ConflictRecord.__table__.columns.keys())

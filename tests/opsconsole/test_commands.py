"""`crmsync console users create` and the queue's paging, as the library reads them."""
import json
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import select

from crmsync.cli import main
from crmsync.db import session_scope
from crmsync.db.models import ConflictRecord, ConsoleUser, Contact
from crmsync.db.types import utcnow
from crmsync.opsconsole import queries
from crmsync.opsconsole.users import authenticate
from tests.fixtures.factories import make_config, make_tenant


def cli(*args, **kw):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, **kw)


def test_users_create_reads_the_password_from_stdin_or_env(crmsync_env, db_url, monkeypatch):
    with session_scope(db_url) as s:
        tenant_id = make_tenant(s).id
    made = cli("console", "users", "create", "--tenant", tenant_id, "--email", "Ada@Example.org", "--json",
               input="a long password\n")
    assert made.exit_code == 0, made.output
    out = json.loads(made.stdout)
    assert out["email"] == "ada@example.org" and out["tenant_id"] == tenant_id and out["operator"] is False
    monkeypatch.setenv("OPS_PASSWORD", "another long one")
    op = cli("console", "users", "create", "--operator", "--email", "ops@example.org", "--from-env", "OPS_PASSWORD",
             "--json")
    assert op.exit_code == 0 and json.loads(op.stdout)["tenant_id"] is None
    with session_scope(db_url) as s:
        hashes = s.scalars(select(ConsoleUser.password_hash)).all()
        assert all(h.startswith("scrypt:") and "long" not in h for h in hashes)
        assert authenticate(s, "ada@example.org", "a long password").tenant_id == tenant_id
        assert authenticate(s, "ops@example.org", "another long one").is_operator
        assert authenticate(s, "ada@example.org", "another long one") is None


def test_users_create_bad_input_exits_2(crmsync_env, db_url):
    with session_scope(db_url) as s:
        tenant_id = make_tenant(s).id
    cases = [
        (("--email", "a@example.org"), "x" * 12),                                  # neither --tenant nor --operator
        (("--tenant", tenant_id, "--operator", "--email", "a@example.org"), "x" * 12),
        (("--tenant", "not-an-id", "--email", "a@example.org"), "x" * 12),
        (("--tenant", tenant_id, "--email", "not-an-email"), "x" * 12),
        (("--tenant", tenant_id, "--email", "a@example.org"), "short"),
        (("--operator", "--email", "a@example.org", "--from-env", "UNSET_VARIABLE_X"), ""),
    ]
    for args, password in cases:
        result = cli("console", "users", "create", *args, input=password + "\n")
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.output
    assert cli("console", "users", "create", "--operator", "--email", "a@example.org", input="x" * 12).exit_code == 0
    assert cli("console", "users", "create", "--operator", "--email", "A@example.org", input="x" * 12).exit_code == 2
    with session_scope(db_url) as s:
        assert len(s.scalars(select(ConsoleUser)).all()) == 1


def test_queue_pages_by_key_without_gaps_or_repeats(db_url):
    now = utcnow()
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        config = make_config(s, tenant, conflict_strategy="manual_review")
        other = make_config(s, make_tenant(s), conflict_strategy="timestamp_based")
        contact = Contact(tenant_id=tenant.id)
        s.add(contact)
        s.flush()
        for n in range(23):
            # three share a timestamp: the id breaks the tie
            s.add(ConflictRecord(tenant_id=tenant.id, config_id=config.id, platform="hubspot", entity_type="contact",
                                 entity_id=contact.id, local_snapshot={}, remote_snapshot={},
                                 conflicting_fields=["phone"] if n % 2 else ["first_name"],
                                 created_at=now - timedelta(hours=min(n, 20))))
        s.add(ConflictRecord(tenant_id=other.tenant_id, config_id=other.id, platform="hubspot", entity_type="deal",
                             entity_id=contact.id, local_snapshot={}, remote_snapshot={}, conflicting_fields=["name"],
                             created_at=now))
    with session_scope(db_url) as s:
        seen, after = [], None
        while True:
            page = queries.queue_page(s, tenant.id, queries.QueueFilters(), after, limit=5)
            seen += [r.id for r in page.rows]
            assert page.total == 23 and page.by_entity == {"contact": 23}
            if page.next_key is None:
                break
            after = queries.parse_page_key(page.next_key)
        assert len(seen) == len(set(seen)) == 23
        everything = queries.queue_page(s, None, queries.QueueFilters(), limit=100)
        assert everything.total == 24 and everything.by_entity == {"contact": 23, "deal": 1}

        def total(**filters):
            return queries.queue_page(s, None, queries.QueueFilters(**filters)).total
        assert total(field="phone") == 11 and total(field="name") == 1
        assert total(strategy="manual_review") == 23 and total(strategy="timestamp_based") == 1
        assert total(age="gt7d") == 0 and total(age="lt1h") == 2 and total(age="gt1d") == 0
        assert total(config_id=config.id, entity="contact") == 23 and total(tenant_id=tenant.id, entity="deal") == 0
        # a tenant's scope wins over any tenant named in the filters
        assert queries.queue_page(s, tenant.id, queries.QueueFilters(tenant_id=other.tenant_id)).total == 0


def test_bad_filters_are_refused_by_name():
    import pytest
    for args in ({"entity": "lead"}, {"tenant": "x"}, {"age": "forever"}, {"strategy": "coin"},
                 {"field": "phone'; --"}):
        with pytest.raises(queries.BadFilter):
            queries.parse_filters(args)
    for key in ("yesterday~x", "2026-01-01T00:00:00~00000000-0000-0000-0000-000000000000", "nonsense"):
        with pytest.raises(queries.BadFilter):
            queries.parse_page_key(key)


def test_console_serve_answers_and_compose_runs_it(crmsync_env):
    """`crmsync console serve` starts the app (templates and htmx shipped with the package), and
    the compose file and Procfile run the same app under gunicorn."""
    import socket
    import subprocess
    import sys

    import requests

    from tests.fixtures.workers import wait_until
    from tests.workers.test_deploy import ROOT, compose
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "crmsync.cli", "console", "serve", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/login"), timeout=20)
        assert "Sign in" in requests.get(f"http://127.0.0.1:{port}/login").text
        assert requests.get(f"http://127.0.0.1:{port}/static/htmx.min.js").text.startswith("var htmx=")
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert "crmsync.opsconsole:create_app()" in compose()["services"]["console"]["command"]
    assert "console: gunicorn" in (ROOT / "deploy" / "Procfile").read_text()


def _answers(url: str) -> bool:
    import requests
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False

"""The console on a real port (a WSGI server thread) over the test PostgreSQL, with conflicts made
the real way: a HubSpot sandbox config under manual_review, contacts edited on both sides, a sync.
Pushes run inline (no broker), so a resolution reaches the sandbox before the request answers.

`browser` is one headless Debian chromium per test session (Playwright drives it); each test gets
a fresh context (cookies) from `page_for`.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from crmsync.db import session_scope
from crmsync.db.models import ConflictRecord, Contact
from crmsync.opsconsole.users import create_user
from tests.fixtures.factories import make_config, make_tenant
from tests.sync.conftest import make_world

PASSWORD = "correct horse battery"
CHROMIUM = os.environ.get("CRMSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


class ConsoleServer:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="console-test-server", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture
def console(crmsync_env):
    from crmsync.opsconsole import create_app
    with ConsoleServer(create_app()) as server:
        yield server


def make_conflicts(world, count: int, fields=("first_name", "phone")) -> list[str]:
    """`count` contacts held under manual_review, each on `fields` (ours "Ours <n>", theirs
    "Theirs <n>"; phones likewise). Returns their external ids, in the order edited."""
    world.hs.seed(contacts=count, seed=7)
    world.sync()
    externals = sorted(world.links(), key=int)[:count]
    links = world.links()
    remote_names = {"first_name": "firstname", "phone": "phone"}
    for n, ext in enumerate(externals):
        ours = {"first_name": f"Ours {n}", "phone": f"+1 555 0{n:03d}"}
        theirs = {"first_name": f"Theirs {n}", "phone": f"+44 20 0{n:03d}"}
        world.local_edit("contact", links[ext], **{f: ours[f] for f in fields})
        world.hs.edit("contacts", ext, {remote_names[f]: theirs[f] for f in fields})
    job = world.sync()
    assert job["status"] == "succeeded" and job["conflicts"] == count, job
    return externals


@pytest.fixture
def two_tenants(crmsync_env, db_url, hubspot_sandbox):
    """Tenant A: a HubSpot sandbox config under manual_review with 3 conflicts on first_name and
    phone. Tenant B: its own config and one conflict row. A user for each, and an operator."""
    a = make_world(db_url, hubspot_sandbox, conflict_strategy="manual_review")
    externals = make_conflicts(a, 3)
    with session_scope(db_url) as s:
        tenant_b = make_tenant(s, "Tenant B")
        config_b = make_config(s, tenant_b, conflict_strategy="manual_review")
        contact_b = Contact(tenant_id=tenant_b.id, first_name="B ours", email="b@example.org")
        s.add(contact_b)
        s.flush()
        conflict_b = ConflictRecord(tenant_id=tenant_b.id, config_id=config_b.id, platform="hubspot",
                                    entity_type="contact", entity_id=contact_b.id, external_id="999",
                                    local_snapshot={"first_name": "B ours"}, remote_snapshot={"first_name": "B theirs"},
                                    base_snapshot={"first_name": "B base"}, conflicting_fields=["first_name"])
        s.add(conflict_b)
        users = {
            "a": create_user(s, email="ada@tenant-a.example", password=PASSWORD, tenant_id=a.tenant_id, operator=False),
            "b": create_user(s, email="bob@tenant-b.example", password=PASSWORD, tenant_id=tenant_b.id, operator=False),
            "op": create_user(s, email="ops@crmsync.example", password=PASSWORD, tenant_id=None, operator=True),
        }
        emails = {k: u.email for k, u in users.items()}
        b = SimpleNamespace(tenant_id=tenant_b.id, config_id=config_b.id, conflict_id=conflict_b.id,
                            contact_id=contact_b.id)
        a_conflicts = {c.entity_id: c.id for c in s.scalars(select(ConflictRecord).where(
            ConflictRecord.tenant_id == a.tenant_id))}
    links = a.links()
    a.conflict_ids = [a_conflicts[links[ext]] for ext in externals]
    a.externals = externals
    return SimpleNamespace(a=a, b=b, emails=emails)


def signed_in_http(console, email: str) -> requests.Session:
    """A requests session signed in through the login form (with its CSRF token)."""
    http = requests.Session()
    http.trust_env = False
    page = http.get(console.url + "/login")
    token = csrf_of(page.text)
    answer = http.post(console.url + "/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 200 and "Sign out" in answer.text, answer.text[:500]
    return http


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium not found at {CHROMIUM}: `make test` installs it (apt-get install chromium)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_for(browser, console):
    contexts = []

    def open_page(email: str):
        context = browser.new_context(base_url=console.url, viewport={"width": 1360, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto("/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/conflicts.*"))
        return page
    yield open_page
    for context in contexts:
        context.close()

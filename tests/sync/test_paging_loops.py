"""A CRM whose paging does not move on (the same cursor answered again and again, or going round
A -> B -> A: a broken proxy, a CRM bug) must fail the job with a typed error at once, not read the
same pages for ever.

The CRM here is a sandbox behind a WSGI layer that rewrites one list endpoint's answers: for its
first `times` answers the next cursor is the constant "loop" (and the page the first one), or an
earlier cursor of the listing; then the real answers go through (so the old code ends instead of
hanging the test)."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import SyncCheckpoint
from crmsync.sandbox.server import SandboxServer
from tests.sync.conftest import add_pipedrive_config

TIMES = 30


def _hubspot_loop(doc: dict) -> None:
    doc["paging"] = {"next": {"after": "loop"}}


def _pipedrive_loop(doc: dict) -> None:
    doc["additional_data"] = {"next_cursor": "loop"}


class LoopingList:
    """`app` with the answers of GET `path` stuck on one cursor for `times` answers; `empty` also
    drops the page's records (an empty page that still says there is more)."""

    def __init__(self, app, path: str, param: str, stick, *, times: int = TIMES, empty: bool = False):
        self.app, self.path, self.param, self.stick = app, path, param, stick
        self.left, self.empty, self.calls = times, empty, 0

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != "GET" or environ["PATH_INFO"] != self.path:
            return self.app(environ, start_response)
        stuck = self.left > 0
        if stuck:   # every stuck answer is the first page again: the sandbox knows no "loop"
            environ = {**environ, "QUERY_STRING": "&".join(
                p for p in environ.get("QUERY_STRING", "").split("&") if not p.startswith(self.param + "="))}
        seen = {}

        def keep(status, headers, exc_info=None):
            seen.update(status=status, headers=headers)

        body = b"".join(self.app(environ, keep))
        self.calls += 1
        if stuck and seen["status"].startswith("200"):
            self.left -= 1
            doc = json.loads(body)
            if self.empty:
                doc["results" if "results" in doc else "data"] = []
            self.stick(doc)
            body = json.dumps(doc).encode()
        start_response(seen["status"], [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
                       + [("Content-Length", str(len(body)))])
        return [body]


class CyclingList:
    """`app` with GET `path` answering two records a page, HubSpot's way (`after`), and for
    `times` answers the page read with the listing's cursor number `cycle_from` naming its
    number `to` again; by default A -> B -> A -> B ..."""

    def __init__(self, app, path: str, *, times: int = TIMES, cycle_from: int = 1, to: int = 0):
        self.app, self.path, self.left, self.calls = app, path, times, 0
        self.cycle_from, self.to = cycle_from, to
        self.cursors: list[str] = []        # the next cursors the sandbox answered, in order

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != "GET" or environ["PATH_INFO"] != self.path:
            return self.app(environ, start_response)
        pairs = [(k, "2" if k == "limit" else v)
                 for k, v in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)]
        asked = dict(pairs).get("after")
        seen = {}

        def keep(status, headers, exc_info=None):
            seen.update(status=status, headers=headers)

        body = b"".join(self.app({**environ, "QUERY_STRING": urlencode(pairs)}, keep))
        self.calls += 1
        if seen["status"].startswith("200"):
            doc = json.loads(body)
            after = ((doc.get("paging") or {}).get("next") or {}).get("after")
            if after is not None and after not in self.cursors:
                self.cursors.append(after)
            if self.left > 0 and len(self.cursors) > self.cycle_from and asked == self.cursors[self.cycle_from]:
                self.left -= 1
                doc["paging"] = {"next": {"after": self.cursors[self.to]}}
                body = json.dumps(doc).encode()
        start_response(seen["status"], [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
                       + [("Content-Length", str(len(body)))])
        return [body]


def _hubspot_run(make, hubspot_sandbox, *, empty: bool):
    hubspot_sandbox.seed(contacts=5, companies=0, deals=0, tasks=0, notes=0, calls=0, meetings=0, emails=0)
    proxy = LoopingList(hubspot_sandbox.app, "/crm/v3/objects/contacts", "after", _hubspot_loop, empty=empty)
    with SandboxServer(proxy) as base_url:
        world = make(api_base_url=base_url, entities=["contacts"])
        job = world.sync()
    return world, job, proxy


def _never_synced(world, config_id) -> None:
    with session_scope(world.db_url) as s:
        cp = s.scalar(select(SyncCheckpoint).where(SyncCheckpoint.config_id == config_id))
        assert cp is None or cp.synced_until is None     # never marked as synced to the end


def test_a_hubspot_list_page_whose_cursor_repeats_fails_the_job(make, hubspot_sandbox):
    world, job, proxy = _hubspot_run(make, hubspot_sandbox, empty=False)
    # The first answer is taken; the second names the same cursor again and stops the job.
    assert proxy.calls == 2, proxy.calls
    assert job["status"] == "failed", job
    assert "cursor" in job["error"] and "loop" in job["error"], job["error"]
    _never_synced(world, world.config_id)


def test_an_empty_hubspot_list_page_whose_cursor_repeats_fails_the_job(make, hubspot_sandbox):
    world, job, proxy = _hubspot_run(make, hubspot_sandbox, empty=True)
    assert proxy.calls == 2, proxy.calls
    assert job["status"] == "failed", job
    assert "cursor" in job["error"] and "loop" in job["error"], job["error"]
    assert world.rows("contact") == []


def test_a_pipedrive_page_whose_cursor_repeats_fails_the_job(world):
    from types import SimpleNamespace

    from crmsync.sandbox.pipedrive import create_app
    app = create_app(persons=5, organizations=0, deals=0, activities=0, rate_limit=0, daily_budget=0)
    proxy = LoopingList(app, "/api/v2/persons", "cursor", _pipedrive_loop)
    with SandboxServer(proxy) as base_url:
        crm = SimpleNamespace(app=app, base_url=base_url, token=app.options.token)
        config_id = add_pipedrive_config(world, crm, entities=["contacts"])
        job = world.sync(config_id)
    assert proxy.calls == 2, proxy.calls
    assert job["status"] == "failed", job
    assert "cursor" in job["error"] and "loop" in job["error"], job["error"]
    _never_synced(world, config_id)


def _hubspot_cycle(make, hubspot_sandbox, *, contacts: int = 6, cycle_from: int = 1, to: int = 0, **kw):
    hubspot_sandbox.seed(contacts=contacts, companies=0, deals=0, tasks=0, notes=0, calls=0, meetings=0, emails=0)
    proxy = CyclingList(hubspot_sandbox.app, "/crm/v3/objects/contacts", cycle_from=cycle_from, to=to)
    with SandboxServer(proxy) as base_url:
        world = make(api_base_url=base_url, entities=["contacts"])
        job = world.sync(**kw)
    return world, job, proxy


def test_a_hubspot_listing_going_round_fails_the_job(make, hubspot_sandbox):
    world, job, proxy = _hubspot_cycle(make, hubspot_sandbox)
    # Pages 1 and 2 are taken; the third names the first page's cursor again and stops the job.
    assert proxy.calls == 3, proxy.calls
    assert job["status"] == "failed", job
    assert "read before" in job["error"] and proxy.cursors[0] in job["error"], job["error"]
    _never_synced(world, world.config_id)


def test_a_hubspot_sweep_listing_going_round_fails_the_sweep(make, hubspot_sandbox):
    world, job, proxy = _hubspot_cycle(make, hubspot_sandbox, trigger="sweep")
    assert proxy.calls == 3, proxy.calls
    assert job["status"] == "failed", job
    assert "read before" in job["error"] and proxy.cursors[0] in job["error"], job["error"]
    assert world.rows("contact") == []


def test_a_hubspot_listing_going_round_over_several_units_fails_the_job(make, hubspot_sandbox, monkeypatch):
    """Pages of two records; the page read with the listing's fourth cursor names its second one
    again (B -> C -> D -> B ...). Each unit reads one page (units of two records), so no unit
    sees a cursor twice; the checkpoint's unit starts do, within the second round."""
    from crmsync.settings import get_settings
    monkeypatch.setenv("CRMSYNC_PAGE_SIZE", "2")
    get_settings.cache_clear()
    try:
        world, job, proxy = _hubspot_cycle(make, hubspot_sandbox, contacts=12, cycle_from=3, to=1)
    finally:
        get_settings.cache_clear()
    assert job["status"] == "failed", job
    assert "earlier unit" in job["error"] and proxy.cursors[1] in job["error"], job["error"]
    # Caught in the second round: the pages read ahead of the units (5 a unit, 2 units ahead) are
    # the most read in between, far from the proxy's TIMES rounds after which the listing would end.
    assert proxy.calls <= 3 + 2 * 3 + 2 * 5, proxy.calls
    _never_synced(world, world.config_id)

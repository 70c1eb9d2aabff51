"""Fixtures for the Pipedrive sandbox's own tests: a running sandbox whose every response is checked
against the official OpenAPI schema of its operation, and a small webhook receiver."""
from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from crmsync.sandbox.pipedrive import PipedriveApp, create_app
from crmsync.sandbox.server import SandboxServer

from .spec import cached_validator, check_response


@pytest.fixture(scope="session")
def pipedrive_spec():
    return cached_validator()


class SpecCheckingApp:
    """WSGI middleware: validates every API response against the spec and keeps the violations."""

    def __init__(self, app: PipedriveApp, validator):
        self.app, self.validator = app, validator
        self.checked = 0
        self.violations: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info)

        body = b"".join(self.app(environ, capture))
        status = int(captured["status"].split()[0])
        ctype = {k.lower(): v for k, v in captured["headers"]}.get("content-type", "")
        problems = check_response(self.validator, environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/"),
                                  status, body, ctype)
        with self._lock:
            self.checked += 1
            self.violations.extend(problems)
        return [body]


@dataclass
class Sandbox:
    app: PipedriveApp
    url: str
    checker: SpecCheckingApp
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def token(self) -> str:
        return self.app.options.token

    def api(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"x-api-token": self.token, **kw.pop("headers", {})}
        return self.session.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        r = self.session.request(method, f"{self.url}/_sandbox/{path.lstrip('/')}", json=body, timeout=30)
        assert r.status_code < 300, r.text
        return r.json()

    def list_all(self, resource: str, **params) -> list[dict]:
        out, cursor = [], None
        while True:
            query = dict(params, **({"cursor": cursor} if cursor else {}))
            r = self.api("GET", f"/api/v2/{resource}", params=query)
            assert r.status_code == 200, r.text
            body = r.json()
            out.extend(body["data"])
            cursor = body["additional_data"]["next_cursor"]
            if cursor is None:
                return out


@pytest.fixture
def make_pipedrive(pipedrive_spec):
    """``make_pipedrive(**PipedriveOptions)`` -> a started ``Sandbox``; every response it sends is
    validated against the official spec when the test ends."""
    started: list[tuple[SandboxServer, Sandbox]] = []

    def make(**options) -> Sandbox:
        options = {"persons": 40, "organizations": 8, "deals": 20, "activities": 30, "rate_limit": 0, **options}
        app = create_app(**options)
        checker = SpecCheckingApp(app, pipedrive_spec)
        server = SandboxServer(checker)
        sandbox = Sandbox(app, server.start(), checker)
        started.append((server, sandbox))
        return sandbox

    yield make
    problems = []
    for server, sandbox in started:
        server.stop()
        sandbox.app.close()
        sandbox.session.close()
        problems.extend(sandbox.checker.violations)
    assert not problems, "responses that do not match the official spec:\n" + "\n".join(problems[:20])


@pytest.fixture
def pd(make_pipedrive) -> Sandbox:
    return make_pipedrive()


class WebhookReceiver:
    """A real HTTP server on a free port that records webhook POSTs; ``fail_first`` makes the first
    N deliveries answer 500 (to exercise retries)."""

    def __init__(self, fail_first: int = 0):
        self.received: list[dict] = []
        self.fail_first = fail_first
        self._calls = 0
        self._cond = threading.Condition()
        self.server = SandboxServer(self._app)
        self.url = self.server.start() + "/hooks/pipedrive"

    def _app(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        auth = environ.get("HTTP_AUTHORIZATION", "")
        creds = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else None
        with self._cond:
            self._calls += 1
            failing = self._calls <= self.fail_first
            self.received.append({"json": json.loads(body), "basic": creds, "status": 500 if failing else 200})
            self._cond.notify_all()
        status = "500 Internal Server Error" if failing else "200 OK"
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    def wait_for(self, predicate, timeout: float = 5.0) -> list[dict]:
        """Poll until ``predicate(received)`` is true; returns the received list."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                assert left > 0, f"webhook condition not met; received {len(self.received)}"
                self._cond.wait(left)
            return list(self.received)

    def ok(self) -> list[dict]:
        return [r for r in self.received if r["status"] == 200]


@pytest.fixture
def webhook_receiver():
    receivers = []

    def make(**kw) -> WebhookReceiver:
        r = WebhookReceiver(**kw)
        receivers.append(r)
        return r

    yield make
    for r in receivers:
        r.server.stop()

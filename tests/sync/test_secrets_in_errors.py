"""A CRM (or a proxy in front of it) that echoes the caller's token in an error answer must not get
that token into the job's error, the database or the log: every place a job's error goes.

The CRMs here are sandboxes behind a WSGI layer that answers one endpoint with an error whose
message repeats the request's Authorization header."""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import SyncJob, SyncJobStep
from crmsync.sandbox.server import SandboxServer
from tests.sync.conftest import add_pipedrive_config


class Echoing:
    """`app`, but GET `path` answers `status` with `body_of(authorization header)`."""

    def __init__(self, app, path: str, status: str, body_of):
        self.app, self.path, self.status, self.body_of = app, path, status, body_of

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != "GET" or environ["PATH_INFO"] != self.path:
            return self.app(environ, start_response)
        body = json.dumps(self.body_of(environ.get("HTTP_AUTHORIZATION", ""))).encode()
        start_response(self.status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _stored_errors(db_url, config_id) -> str:
    with session_scope(db_url) as s:
        jobs = s.scalars(select(SyncJob).where(SyncJob.sync_config_id == config_id)).all()
        steps = s.scalars(select(SyncJobStep).where(SyncJobStep.job_id.in_([j.id for j in jobs]))).all()
        return json.dumps([[j.error, j.counts] for j in jobs] + [[st.error] for st in steps], default=str)


def _assert_hidden(token: str, job: dict, stored: str, caplog) -> None:
    assert job["status"] == "failed", job
    assert token not in json.dumps(job, default=str), job["error"]
    assert token not in stored
    assert not [r for r in caplog.records if token in r.getMessage()]


def test_a_hubspot_401_echoing_the_token_keeps_it_out_of_the_job(make, hubspot_sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    token = hubspot_sandbox.token
    crm = Echoing(hubspot_sandbox.app, "/crm/v3/objects/contacts", "401 Unauthorized",
                  lambda auth: {"status": "error", "category": "INVALID_AUTHENTICATION",
                                "message": f"Authentication failed for header {auth!r}",
                                "correlationId": "0f3c0d36-0000-4000-8000-000000000000"})
    server = SandboxServer(crm)
    try:
        world = make(api_base_url=server.start(), entities=["contacts"])
        job = world.sync()
    finally:
        server.stop()
    assert "Authentication failed" in job["error"]      # the CRM's words are kept, its echo is not
    _assert_hidden(token, job, _stored_errors(world.db_url, world.config_id), caplog)


def test_a_pipedrive_500_echoing_the_token_keeps_it_out_of_the_job(world, caplog):
    from crmsync.sandbox.pipedrive import create_app
    caplog.set_level(logging.DEBUG)
    app = create_app(persons=1, organizations=0, deals=0, activities=0, rate_limit=0, daily_budget=0)
    token = app.options.token
    crm = Echoing(app, "/api/v2/persons", "500 Internal Server Error",
                  lambda auth: {"success": False, "error": "upstream failed",
                                "error_info": f"request headers: x-api-token={token}; authorization={auth}"})
    server = SandboxServer(crm)
    try:
        config_id = add_pipedrive_config(world, SimpleNamespace(app=app, base_url=server.start(), token=token),
                                         entities=["contacts"])
        job = world.sync(config_id)
    finally:
        server.stop()
    assert "upstream failed" in job["error"]
    _assert_hidden(token, job, _stored_errors(world.db_url, config_id), caplog)

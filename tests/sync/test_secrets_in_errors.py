"""A CRM (or a proxy in front of it) that echoes the caller's token in an error answer must not get
that token into the job's error, the database or the log: every place a job's error goes.

The CRMs here are sandboxes behind a WSGI layer that answers one endpoint with an error whose
message repeats the request's Authorization header."""
from __future__ import annotations

import json
import logging
import re
from types import SimpleNamespace
from urllib.parse import parse_qs, quote

import pytest
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
    with SandboxServer(crm) as base_url:
        world = make(api_base_url=base_url, entities=["contacts"])
        job = world.sync()
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
    with SandboxServer(crm) as base_url:
        config_id = add_pipedrive_config(world, SimpleNamespace(app=app, base_url=base_url, token=token),
                                         entities=["contacts"])
        job = world.sync(config_id)
    assert "upstream failed" in job["error"]
    _assert_hidden(token, job, _stored_errors(world.db_url, config_id), caplog)


class Answering:
    """`app`, but a request for which `matches(method, path)` holds is answered by
    `answer(authorization header, request body)` -> (status line, JSON document): a CRM, or a proxy
    in front of it, that puts the caller's token in a per-record error of a 2xx answer."""

    def __init__(self, app, matches, answer):
        self.app, self.matches, self.answer = app, matches, answer
        self.seen: list[str] = []

    def __call__(self, environ, start_response):
        if not self.matches(environ["REQUEST_METHOD"], environ["PATH_INFO"]):
            return self.app(environ, start_response)
        auth = environ.get("HTTP_AUTHORIZATION", "")
        self.seen.append(auth)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        status, doc = self.answer(auth, environ["wsgi.input"].read(length) if length else b"")
        body = json.dumps(doc).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def test_a_hubspot_batch_create_echoing_the_token_per_record_keeps_it_out_of_the_job(make, hubspot_sandbox,
                                                                                   caplog):
    """A 207 is a 2xx answer: the request loop hands it back whole, and each errors[] entry becomes
    that record's error, reported in the job's counts["errors"]."""
    from crmsync.db.models import Contact
    caplog.set_level(logging.DEBUG)
    token = hubspot_sandbox.token

    def refuse_each(auth, body):
        inputs = json.loads(body)["inputs"]
        return "207 Multi-Status", {
            "status": "COMPLETE", "results": [], "numErrors": len(inputs),
            "errors": [{"status": "error", "category": "VALIDATION_ERROR",
                        "message": f"Property values were not valid: request authorized by {auth!r}",
                        "context": {"objectWriteTraceId": [i["objectWriteTraceId"]]}} for i in inputs],
            "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:01Z"}

    crm = Answering(hubspot_sandbox.app, lambda method, path: method == "POST" and path.endswith("/batch/create"),
                    refuse_each)
    with SandboxServer(crm) as base_url:
        world = make(api_base_url=base_url, entities=["contacts"], sync_direction="push")
        with session_scope(world.db_url) as s:
            s.add(Contact(tenant_id=world.tenant_id, email="new@example.org", first_name="New"))
        job = world.sync()
    assert crm.seen and token in crm.seen[0]
    assert job["status"] == "succeeded", job["error"]
    [error] = job["counts"]["errors"]
    assert "Property values were not valid" in error and "***" in error, error
    stored = _stored_errors(world.db_url, world.config_id)
    assert token not in json.dumps(job, default=str) and token not in stored
    assert not [r for r in caplog.records if token in r.getMessage()]


def _salesforce_adapter(app, base_url: str):
    """An adapter of the Salesforce sandbox `app`'s connected app, talking to `base_url`."""
    from crmsync.cache import MetadataCache
    from crmsync.platforms.salesforce import SalesforceAdapter
    return SalesforceAdapter(credentials={"client_id": app.options.client_id, "client_secret": app.options.client_secret,
                                          "refresh_token": app.options.refresh_token},
                             base_url=base_url, cache=MetadataCache())


def test_a_salesforce_record_error_echoing_the_session_is_masked_before_it_is_cut(salesforce_sandbox, caplog):
    """sObject Collections answer 200 with one result per record; a failed one's message is the
    record's error, cut at 200 characters: a session id there is masked whole, not cut in two."""
    from crmsync.platforms.base import OutboundRecord
    caplog.set_level(logging.DEBUG)
    app = salesforce_sandbox.app

    def refuse_each(auth, body):
        padding = "x" * (163 - len("Validation rule failed: "))   # the secret part straddles character 200
        return "200 OK", [{"success": False, "errors": [{
            "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "fields": [],
            "message": f"Validation rule failed: {padding}{auth}"}]} for _ in json.loads(body)["records"]]

    crm = Answering(app, lambda method, path: method in ("POST", "PATCH") and "/composite/sobjects" in path,
                    refuse_each)
    with SandboxServer(crm) as base_url:
        adapter = _salesforce_adapter(app, base_url)
        [result] = adapter.create_many("contact", [OutboundRecord("L1", {"last_name": "Lovelace",
                                                                         "email": "ada@example.org"})])
    session = crm.seen[0].partition(" ")[2]
    secret = session.partition("!")[2][:12]         # before the "!": the org id, no secret
    message = str(result.error)
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION: Validation rule failed" in message
    assert len(secret) == 12 and secret not in message and message.endswith("***"), message
    assert not [r for r in caplog.records if secret in r.getMessage()]



def _salesforce_query_refused(app, refuse):
    """A Salesforce query refused by `refuse(auth, body)` through a proxy in front of the sandbox:
    (the proxy, which saw the requests; the PlatformError raised)."""
    from crmsync.platforms.errors import PlatformError
    crm = Answering(app, lambda method, path: method == "GET" and path.endswith("/query"), refuse)
    with SandboxServer(crm) as base_url:
        adapter = _salesforce_adapter(app, base_url)
        with pytest.raises(PlatformError) as raised:
            adapter.list_changed("contact", adapter.start_cursor("contact", None))
    return crm, raised

def test_a_salesforce_error_answer_echoing_the_session_across_its_cut_is_masked_whole(salesforce_sandbox):
    """A non-2xx answer's message is cut at 200 characters by Salesforce's error builder; the
    session it echoes across that cut is masked in the body first, so no prefix of it is left."""
    app = salesforce_sandbox.app

    def refuse(auth, body):
        padding = "x" * (163 - len("Query refused: "))     # the session straddles character 200
        return "400 Bad Request", [{"errorCode": "MALFORMED_QUERY", "message": f"Query refused: {padding}{auth}"}]

    crm, raised = _salesforce_query_refused(app, refuse)
    session = crm.seen[0].partition(" ")[2]
    secret = session.partition("!")[2][:12]         # before the "!": the org id, no secret
    message = str(raised.value)
    assert "MALFORMED_QUERY: Query refused" in message
    assert len(secret) == 12 and secret not in message, message
    assert raised.value.message.endswith("x***"), message        # masked whole, then cut


def test_a_salesforce_error_answer_echoing_the_session_url_encoded_is_masked(salesforce_sandbox):
    """A proxy that echoes the request's headers as a query string: the session's "!" (and a real
    one's "." and "/"...) sits percent-encoded there, where the plain session is not found."""
    app = salesforce_sandbox.app

    def refuse(auth, body):
        return "400 Bad Request", [{"errorCode": "MALFORMED_QUERY",
                                    "message": f"Query refused: authorization={quote(auth, safe='')}"}]

    crm, raised = _salesforce_query_refused(app, refuse)
    session = crm.seen[0].partition(" ")[2]
    secret = session.partition("!")[2][:12]         # before the "!": the org id, no secret
    message = str(raised.value)
    assert "%21" in quote(session, safe="") and "MALFORMED_QUERY: Query refused: authorization=" in message
    assert len(secret) == 12 and secret not in message and raised.value.message.endswith("=***"), message


def _hubspot_refresh_refused(app, creds, refuse) -> str:
    """The error of a HubSpot OAuth refresh that `refuse(auth, body)` answers, through a proxy in
    front of the sandbox."""
    from crmsync.platforms.errors import AuthenticationError
    from crmsync.platforms.hubspot import HubSpotClient
    crm = Answering(app, lambda method, path: path == "/oauth/v1/token", refuse)
    with SandboxServer(crm) as base_url, pytest.raises(AuthenticationError) as info:
        HubSpotClient(creds, base_url).get_account_details()
    return str(info.value)


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


@pytest.mark.parametrize("echo", [str, _lower_escapes], ids=["as-sent", "lower-case-escapes"])
def test_a_hubspot_oauth_refusal_echoing_the_form_as_sent_is_masked(hubspot_sandbox, echo):
    """The refresh's form goes out percent-encoded (requests: quote_plus, "/" "+" "=" as %2F %2B
    %3D); a token endpoint or proxy echoing its fields as they came shows the tokens that way,
    and some servers write the escapes' hex in lower case."""
    creds = {"client_id": "app-client", "client_secret": "top/secret+client=value",
             "refresh_token": "na1-refresh/0123+4567=89abcdef"}

    def refuse(auth, body):
        form = dict(pair.split("=", 1) for pair in body.decode().split("&"))    # still encoded
        return "400 Bad Request", {"status": echo(f"BAD_REFRESH_TOKEN {form['refresh_token']} "
                                                  f"{form['client_secret']}"), "message": "refresh token is invalid"}

    message = _hubspot_refresh_refused(hubspot_sandbox.app, creds, refuse)
    assert "OAuth token refresh refused: BAD_REFRESH_TOKEN *** ***" in message, message
    assert "%2" not in message.lower() and "0123" not in message and "client" not in message, message


def test_a_hubspot_oauth_refusal_echoing_the_refresh_token_is_short_and_masked(hubspot_sandbox):
    """The token endpoint's (or a proxy's) status word goes into the error: masked, and cut short."""
    creds = {"client_id": "app-client", "client_secret": "top-secret-client-value",
             "refresh_token": "na1-refresh-0123456789abcdef"}

    def refuse(auth, body):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        return "400 Bad Request", {"status": f"BAD_REFRESH_TOKEN {form['refresh_token']} {form['client_secret']} "
                                             + "y" * 500, "message": "refresh token is invalid"}

    message = _hubspot_refresh_refused(hubspot_sandbox.app, creds, refuse)
    assert "OAuth token refresh refused: BAD_REFRESH_TOKEN *** ***" in message, message
    assert creds["client_secret"][:12] not in message and creds["refresh_token"][:12] not in message
    assert len(message) < 120, message


def test_a_salesforce_oauth_refusal_echoing_the_refresh_token_is_masked_before_it_is_cut(salesforce_sandbox):
    from crmsync.platforms.errors import AuthenticationError
    from crmsync.platforms.salesforce.client import SalesforceClient
    creds = {"client_id": "app-client", "client_secret": "top-secret-client-value",
             "refresh_token": "5Aep861-refresh-0123456789abcdef"}

    def refuse(auth, body):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        return "400 Bad Request", {"error": f"invalid_grant {form['refresh_token']}",
                                   "error_description": "expired access/refresh token"}

    crm = Answering(salesforce_sandbox.app, lambda method, path: path == "/services/oauth2/token", refuse)
    with SandboxServer(crm) as base_url, pytest.raises(AuthenticationError) as info:
        SalesforceClient(creds, base_url=base_url).org_id()
    message = str(info.value)
    assert "OAuth token call refused: invalid_grant ***" in message, message
    assert creds["refresh_token"][:12] not in message

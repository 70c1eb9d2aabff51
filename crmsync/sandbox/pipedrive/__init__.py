"""Pipedrive sandbox: a local, in-memory fake of Pipedrive's API v2 (persons, organizations, deals,
activities; search of the first three) and the v1 endpoints v2 lacks (webhooks, users, *Fields,
activityTypes, stages, pipelines), written from the official OpenAPI specs and
docs/pipedrive.md.

>>> from crmsync.sandbox.pipedrive import create_app
>>> from crmsync.sandbox.server import SandboxServer
>>> app = create_app(persons=500, organizations=50, seed=7, rate_limit=0)
>>> base_url = SandboxServer(app).start()   # e.g. GET {base_url}/api/v2/persons, x-api-token: app.options.token

Admin API (no auth) under ``/_sandbox/``; see ``admin.py``. The account itself is
``app.state`` (a ``PipedriveState``), usable without HTTP.
"""
from .app import PipedriveApp, PipedriveOptions, create_app
from .errors import ApiError, PipedriveSandboxError
from .generator import GeneratorOptions, generate
from .state import DEFAULT_API_TOKEN, ChangeEvent, ListQuery, PipedriveState

__all__ = ["DEFAULT_API_TOKEN", "ApiError", "ChangeEvent", "GeneratorOptions", "ListQuery", "PipedriveApp",
           "PipedriveOptions", "PipedriveSandboxError", "PipedriveState", "create_app", "generate"]

"""Salesforce sandbox: a local, in-memory fake of the Salesforce REST API (sObjects, SOQL query and
queryAll, replication, sObject Collections, Bulk API 2.0 query jobs, limits), its OAuth 2.0 token
endpoint, and Outbound Messages, written from Salesforce's REST API Developer Guide and Bulk API
2.0 guide (Salesforce publishes no OpenAPI document for it). Each module's docstring names the
documented behaviour it follows.

>>> from crmsync.sandbox.salesforce import create_app
>>> from crmsync.sandbox.server import SandboxServer
>>> app = create_app(contacts=500, seed=7)
>>> base_url = SandboxServer(app).start()
>>> # GET {base_url}/services/data/v62.0/query?q=SELECT+Id+FROM+Contact, Authorization: Bearer app.options.token

Admin API (no auth) under ``/_sandbox/``; see ``admin.py``. The org's data is ``app.state``.
"""
from .app import SalesforceApp, SalesforceOptions, create_app
from .errors import ApiError
from .generator import SeedOptions, generate
from .store import OrgState

__all__ = ["ApiError", "OrgState", "SalesforceApp", "SalesforceOptions", "SeedOptions", "create_app", "generate"]

"""HubSpot sandbox: a local, in-memory fake of HubSpot's CRM API written from the official OpenAPI specs
and /work/shared/reference/hubspot.md.

>>> from crmsync.sandbox.hubspot import create_app
>>> from crmsync.sandbox.server import SandboxServer
>>> app = create_app(contacts=500, companies=50, seed=7)
>>> base_url = SandboxServer(app).start()   # API at the CRM's own paths, token app.options.token

Admin API (no auth) under ``/_sandbox/``; see ``app.HubSpotApp._admin``.
"""
from .app import HubSpotApp, HubSpotOptions, create_app
from .errors import ApiError

__all__ = ["ApiError", "HubSpotApp", "HubSpotOptions", "create_app"]

"""HubSpot sandbox: a local, in-memory fake of HubSpot's CRM API written from the official OpenAPI specs
and docs/hubspot.md.

>>> from crmsync.sandbox.hubspot import create_app
>>> from crmsync.sandbox.server import SandboxServer
>>> app = create_app(contacts=500, companies=50, seed=7)
>>> base_url = SandboxServer(app).start()   # API at the CRM's own paths, token app.options.token

Admin API (no auth; JSON bodies) under ``/_sandbox/``:

    GET    /_sandbox/                              platform, portalId, record counts
    POST   /_sandbox/reset      {"reseed": true}   back to the creation options (records, limits, faults, hooks)
    POST   /_sandbox/seed       {"reset": true, "seed": 0, "contacts": N, "companies": N, "deals": N, "tasks": N,
                                 "notes": N, "calls": N, "meetings": N, "emails": N, "same_modified": N,
                                 "same_modified_at": epoch_ms}
    GET    /_sandbox/config ;   POST /_sandbox/config {any HubSpotOptions field, "faults": {FaultConfig fields}}
           e.g. {"rate_limit": 100, "rate_window_ms": 10000, "daily_limit": 250000, "search_rate_limit": 5,
                 "retry_after": false, "index_lag_ms": 2000, "search_cap_mode": "after+limit"|"after",
                 "empty_properties": "omit"|"null", "webhook_url": URL, "webhook_secret": S,
                 "signature_version": "v3"|"v2"|"v1", "webhook_subscriptions": [...],
                 "webhook_retry_delay": 0.05, "webhook_max_retries": 10, "webhook_duplicate_rate": 0.0,
                 "webhook_out_of_order": false, "webhook_batch_size": 100,
                 "schema_write": false (property creates get 403 MISSING_SCOPES),
                 "faults": {"error_rate": 0.1, "error_statuses": [500, 502, 503], "latency_ms": 0,
                            "latency_jitter_ms": 0, "drop_rate": 0, "rate_limit_rate": 0, "storm_seconds": 0,
                            "seed": 0}}
    GET    /_sandbox/requests?entries=N            total, by_endpoint, by_status, rate_limited (429s served),
                                                   faults, peaks {ten_secondly, search_secondly, daily},
                                                   rejected, webhooks counters, last N entries
    GET    /_sandbox/webhooks                      settings, counters, last deliveries
    POST   /_sandbox/webhooks/flush {"timeout": 10}  wait until queued deliveries are done -> {"drained": bool}
    POST   /_sandbox/records/{type}  {"properties": {...}, "associations": [...]}   create as a UI user
    GET    /_sandbox/records/{type}[/{id}]         records as stored (all properties, associations)
    PATCH  /_sandbox/records/{type}/{id} {"properties": {...}, "at_ms": optional}  edit as a UI user
                                                   (bumps lastmodifieddate, fires propertyChange with CRM_UI)
    DELETE /_sandbox/records/{type}/{id}           archive as a UI user (fires deletion)
    POST   /_sandbox/merge/{type} {"primaryObjectId": "1", "objectIdToMerge": "2"}
    POST   /_sandbox/oauth/expire {"seconds_ago": 1}   expire every OAuth access token issued so far
"""
from .app import HubSpotApp, HubSpotOptions, create_app
from .errors import ApiError

__all__ = ["ApiError", "HubSpotApp", "HubSpotOptions", "create_app"]

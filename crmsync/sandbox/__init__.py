"""Local stand-ins for the CRMs crmsync talks to, for tests, demos and benchmarks.

Each platform lives in its own subpackage (``hubspot/``, ``pipedrive/``) and exposes
``create_app(**options)`` returning a WSGI app object with ``.state`` and admin endpoints under
``/_sandbox/``. The shared plumbing they both use:

- ``server.SandboxServer(app).start() -> base_url`` / ``.stop()``: threaded HTTP/1.1 runner.
- ``limits.RollingWindow`` / ``limits.DailyQuota``: rate-limit bookkeeping with peaks.
- ``faults.FaultInjector``: seeded 5xx / latency / dropped connections / 429 storms.
- ``requestlog.RequestLog``: per-endpoint counters and the last requests.
- ``webhooks.WebhookDispatcher``: background batched delivery with retries.
- ``wsgi``: request parsing and JSON responses without a framework.
- ``spec_check.SpecValidator``: validate responses against the official OpenAPI documents (tests).

This package imports nothing from ``crmsync.platforms`` or the rest of crmsync: the fakes are
written from the public specs so they cannot share a mistake with our clients.
"""

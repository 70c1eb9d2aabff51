"""Ten-secondly window, daily quota, headers, and fault injection."""
from __future__ import annotations

import pytest
import requests


def test_ten_secondly_window_headers_and_429(hubspot_sandbox):
    sb = hubspot_sandbox
    sb.configure(rate_limit=5, daily_limit=1000)
    first = sb.api("GET", "/crm/v3/objects/contacts")
    h = first.headers
    assert h["X-HubSpot-RateLimit-Max"] == "5" and h["X-HubSpot-RateLimit-Remaining"] == "4"
    assert h["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert h["X-HubSpot-RateLimit-Daily"] == "1000" and h["X-HubSpot-RateLimit-Daily-Remaining"] == "999"
    assert "X-HubSpot-Correlation-Id" in h
    statuses = [sb.api("GET", "/crm/v3/objects/contacts").status_code for _ in range(6)]
    assert statuses == [200] * 4 + [429] * 2
    r = sb.api("GET", "/crm/v3/objects/contacts")
    body = r.json()
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    log = sb.requests_log()
    assert log["rate_limited"] == 3 and log["peaks"]["ten_secondly"] == 5


def test_window_rolls(hubspot_sandbox):
    sb = hubspot_sandbox
    sb.configure(rate_limit=3, rate_window_ms=200)
    assert [sb.api("GET", "/crm/v3/objects/contacts").status_code for _ in range(4)] == [200, 200, 200, 429]
    import time

    deadline = time.monotonic() + 3
    while sb.api("GET", "/crm/v3/objects/contacts").status_code == 429:
        assert time.monotonic() < deadline


def test_daily_quota(hubspot_sandbox):
    sb = hubspot_sandbox
    sb.configure(daily_limit=2, retry_after=True)
    assert [sb.api("GET", "/crm/v3/objects/contacts").status_code for _ in range(3)] == [200, 200, 429]
    r = sb.api("GET", "/crm/v3/objects/contacts")
    assert r.json()["policyName"] == "DAILY" and int(r.headers["Retry-After"]) >= 1


def test_error_rate_is_seeded(hubspot_sandbox):
    sb = hubspot_sandbox

    def run():
        sb.configure(faults={"error_rate": 0.5, "seed": 11})
        return [sb.api("GET", "/crm/v3/objects/contacts").status_code for _ in range(30)]

    first = run()
    assert set(first) <= {200, 500, 502, 503} and 200 in first and len(set(first)) > 1
    assert run() == first  # same seed, same sequence
    errors = [s for s in first if s != 200]
    r = None
    sb.configure(faults={"error_rate": 1.0, "error_statuses": [503]})
    r = sb.api("GET", "/crm/v3/objects/contacts")
    assert r.status_code == 503 and r.json()["category"] == "SERVICE_UNAVAILABLE"
    assert sb.requests_log()["faults"] >= len(errors)


def test_latency_drop_and_storm(hubspot_sandbox):
    sb = hubspot_sandbox
    sb.configure(faults={"latency_ms": 60})
    import time

    t = time.perf_counter()
    sb.api("GET", "/crm/v3/objects/contacts")
    assert time.perf_counter() - t >= 0.06
    sb.configure(faults={"latency_ms": 0, "drop_rate": 1.0})
    with pytest.raises(requests.ConnectionError):
        sb.api("GET", "/crm/v3/objects/contacts")
    sb.configure(faults={"drop_rate": 0.0, "storm_seconds": 30})
    r = sb.api("GET", "/crm/v3/objects/contacts")
    assert r.status_code == 429 and r.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert sb.api("POST", "/crm/v3/objects/contacts/search", json={}).status_code == 429

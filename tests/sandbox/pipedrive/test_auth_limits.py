"""Auth variants, the 2-second burst limit, the daily token budget, and fault injection."""
from __future__ import annotations

import pytest
import requests

OBSERVED_401 = {"success": False, "error": "unauthorized access", "errorCode": 401,
                "error_info": "Please check developers.pipedrive.com"}


def test_api_token_in_header_or_query(pd):
    assert pd.api("GET", "/api/v2/persons/1").status_code == 200
    r = pd.session.get(f"{pd.url}/api/v2/persons/1", params={"api_token": pd.token})
    assert r.status_code == 200
    r = pd.session.get(f"{pd.url}/v1/users/me", params={"api_token": pd.token})  # old /v1 host form
    assert r.status_code == 200 and r.json()["data"]["company_id"] == 7788


@pytest.mark.parametrize("headers,params", [({}, {}), ({"x-api-token": "wrong"}, {}), ({}, {"api_token": "wrong"})])
def test_missing_or_wrong_token_is_401_with_pipedrive_body(pd, headers, params):
    r = pd.session.get(f"{pd.url}/api/v2/persons", headers=headers, params=params)
    assert r.status_code == 401
    assert r.json() == OBSERVED_401


def test_oauth_bearer_refresh_and_expiry(pd):
    tokens = pd.admin("POST", "oauth/tokens", {"user_id": 2, "expires_in": 3600})
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = pd.session.get(f"{pd.url}/api/v1/users/me", headers=bearer).json()["data"]
    assert me["id"] == 2 and me["is_you"] is True
    refreshed = pd.session.post(f"{pd.url}/oauth/token", auth=("sandbox-client", "sandbox-secret"),
                                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["refresh_token"] == tokens["refresh_token"] and new["access_token"] != tokens["access_token"]
    assert new["api_domain"].startswith("https://")
    bad = pd.session.post(f"{pd.url}/oauth/token", auth=("sandbox-client", "sandbox-secret"),
                          data={"grant_type": "refresh_token", "refresh_token": "nope"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    assert pd.session.post(f"{pd.url}/oauth/token", auth=("x", "y"),
                           data={"grant_type": "refresh_token"}).status_code == 401
    pd.admin("POST", "clock", {"advance_seconds": 3601})  # access tokens live one hour
    expired = pd.session.get(f"{pd.url}/api/v2/persons/1", headers=bearer)
    assert expired.status_code == 401 and expired.json()["error"] == "Invalid token: access_token is invalid"


def test_burst_limit_429_and_headers(make_pipedrive):
    sandbox = make_pipedrive(rate_limit=5)
    answers = [sandbox.api("GET", "/api/v2/persons/1") for _ in range(7)]
    assert [r.status_code for r in answers] == [200] * 5 + [429] * 2
    first = answers[0].headers
    assert first["x-ratelimit-limit"] == "5" and first["x-ratelimit-remaining"] == "4"
    assert int(first["x-ratelimit-reset"]) in (1, 2)
    assert first["x-daily-ratelimit-token-limit"] == "180000"  # 30,000 x Growth (2) x 3 seats
    limited = answers[-1]
    assert limited.headers["x-ratelimit-remaining"] == "0" and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["success"] is False and limited.json()["errorCode"] == 429
    # another token has its own window; OAuth tokens get the OAuth limit (4x on every plan)
    tokens = sandbox.admin("POST", "oauth/tokens", {})
    r = sandbox.session.get(f"{sandbox.url}/api/v2/persons/1",
                            headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert r.status_code == 200 and r.headers["x-ratelimit-limit"] == "160"
    counters = sandbox.admin("GET", "requests")
    assert counters["rate_limited"] == 2 and counters["peaks"]["burst_2s"] == 5
    assert counters["by_endpoint"]["GET /api/v2/persons/{id}"] == 8
    assert counters["rejected"]["burst_2s"] == 2


def test_daily_budget_charges_each_operation_its_token_cost(make_pipedrive):
    sandbox = make_pipedrive(daily_budget=30)
    assert sandbox.api("GET", "/api/v2/persons").headers["x-daily-ratelimit-token-remaining"] == "20"  # list: 10
    assert sandbox.api("GET", "/api/v2/persons/1").headers["x-daily-ratelimit-token-remaining"] == "19"  # get: 1
    r = sandbox.api("GET", "/api/v1/users")  # costs 20 > 19 left
    assert r.status_code == 429
    assert r.json()["error"] == "daily request budget exceeded"
    assert r.headers["x-daily-ratelimit-token-remaining"] == "0"
    assert 0 < int(r.headers["retry-after"]) <= 86400  # until midnight, server time
    cheap = sandbox.api("GET", "/api/v2/persons/1")  # a 1-token call still fits
    assert cheap.status_code == 200 and cheap.headers["x-daily-ratelimit-token-remaining"] == "18"
    assert sandbox.admin("GET", "requests")["rejected"]["daily_budget"] == 1
    sandbox.admin("POST", "clock", {"advance_seconds": 86400})  # next day: budget is back
    assert sandbox.api("GET", "/api/v2/persons").status_code == 200


def test_token_costs_match_the_official_spec():
    from crmsync.sandbox.pipedrive.app import COSTS

    from .spec import token_costs

    spec = token_costs()
    for endpoint, cost in COSTS.items():
        method, path = endpoint.split(" ", 1)
        if "{entity}" in path:
            for res in ("persons", "organizations", "deals", "activities"):
                assert spec[(method, path.replace("{entity}", res))] == cost, endpoint
        elif "{fields}" in path:
            for res in ("personFields", "organizationFields", "dealFields", "activityFields"):
                assert spec[(method, path.replace("{fields}", res))] == cost, endpoint
        else:
            assert spec[(method, path)] == cost, endpoint


def test_fault_injection_errors_drops_and_storms(pd):
    pd.admin("POST", "config", {"faults": {"error_rate": 1.0}})
    statuses = {pd.api("GET", "/api/v2/persons/1").status_code for _ in range(12)}
    assert statuses <= {500, 502, 503} and len(statuses) > 1
    pd.admin("POST", "config", {"faults": {"error_rate": 0.0, "drop_rate": 1.0}})
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{pd.url}/api/v2/persons/1", headers={"x-api-token": pd.token}, timeout=5)
    pd.admin("POST", "config", {"faults": {"drop_rate": 0.0, "storm_seconds": 30}})
    r = pd.api("GET", "/api/v2/persons/1")
    assert r.status_code == 429 and r.headers["retry-after"]
    pd.admin("POST", "reset", {"reseed": False})
    assert pd.api("GET", "/api/v2/persons").json()["data"] == []
    counters = pd.admin("GET", "requests")
    assert counters["total"] == 1 and counters["faults_injected"]["error"] == 0


def test_latency_fault_delays_answers(pd):
    import time

    pd.admin("POST", "config", {"faults": {"latency_ms": 120}})
    started = time.perf_counter()
    assert pd.api("GET", "/api/v2/persons/1").status_code == 200
    assert time.perf_counter() - started >= 0.12

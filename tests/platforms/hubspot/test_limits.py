"""HubSpot's limits and rate headers, and how its 429s are read (which bucket, how long)."""
from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import pytest

from crmsync.platforms.errors import RateLimited
from crmsync.platforms.hubspot.errors import error_for
from crmsync.platforms.hubspot.limits import account_limits, default_limits, observations
from crmsync.ratelimit import DAILY, SEARCH, STANDARD, Limit, Observation


def test_private_app_and_oauth_limits():
    private = default_limits(time_zone="Europe/Paris")
    assert private[STANDARD] == Limit(100, 10.0) and private[SEARCH] == Limit(5, 1.0)
    assert private[DAILY] == Limit.daily(250_000, "Europe/Paris")
    oauth = account_limits({"refresh_token": "r", "client_id": "c", "client_secret": "s"})
    assert oauth[STANDARD] == Limit(110, 10.0) and DAILY not in oauth
    raised = account_limits({"token": "t", "rate_limits": {"standard": {"capacity": 190, "interval_seconds": 10}}})
    assert raised[STANDARD] == Limit(190, 10.0)


def test_rate_headers_describe_the_calls_bucket_and_the_day():
    found = observations({"X-HubSpot-RateLimit-Remaining": "3", "X-HubSpot-RateLimit-Max": "10",
                          "X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "0",
                          "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, STANDARD)
    assert found == {STANDARD: Observation(remaining=3, maximum=10), DAILY: Observation(remaining=0, maximum=250000)}
    assert observations({"X-HubSpot-RateLimit-Remaining": "soon"}, STANDARD) == {}
    # search answers carry no rate headers of their own bucket
    assert observations({"X-HubSpot-RateLimit-Remaining": "3"}, SEARCH) == {}


@pytest.mark.parametrize(("headers", "body", "search", "expected"), [
    ({}, {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
          "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}, False, ("standard", 10.0)),
    ({"X-HubSpot-RateLimit-Interval-Milliseconds": "1000"}, {"policyName": "TEN_SECONDLY_ROLLING"}, False,
     ("standard", 1.0)),
    ({}, {"status": "error", "message": "You have reached your secondly limit.", "category": "RATE_LIMITS"},
     True, ("search", 1.0)),
    ({"Retry-After": "7"}, {}, False, ("standard", 7.0)),
])
def test_a_429_names_its_bucket_and_wait(headers, body, search, expected):
    err = error_for(429, json.dumps(body), headers, search=search)
    assert isinstance(err, RateLimited) and (err.policy, err.retry_after) == expected


def test_a_daily_429_waits_for_midnight_in_the_accounts_zone():
    err = error_for(429, '{"policyName":"DAILY","message":"You have reached your daily limit."}', {},
                    time_zone="Asia/Kolkata")
    assert err.policy == "daily" and err.resume_at is not None
    local = err.resume_at.astimezone(ZoneInfo("Asia/Kolkata"))
    assert (local.hour, local.minute) == (0, 0)

"""Pipedrive's plan limits and rate headers, and how its 429s are read (which bucket, how long)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmsync.platforms.errors import RateLimited
from crmsync.platforms.http import retry_after_seconds
from crmsync.platforms.pipedrive.errors import error_for
from crmsync.platforms.pipedrive.limits import DAILY_WRITES, account_limits, default_limits, observations
from crmsync.ratelimit import DAILY, SEARCH, STANDARD, Limit, Observation


def test_plan_limits():
    limits = default_limits(plan="Premium", seats=10)
    assert limits[STANDARD].capacity == 100 and limits[DAILY].capacity == 30_000 * 5 * 10
    assert default_limits(plan="growth", oauth=True)[STANDARD].capacity == 160
    # no plan, or one we do not know: Lite, the lowest, never no budget at all
    assert default_limits() == default_limits(plan="gold") == {
        STANDARD: Limit(20, 2.0), SEARCH: Limit(10, 2.0), DAILY: Limit.daily(30_000)}
    assert account_limits({"api_token": "t", "rate_limits": "none"}) == {}
    assert account_limits({"access_token": "a", "refresh_token": "r"})[STANDARD].capacity == 80


def test_rate_headers_describe_the_burst_window_and_the_days_tokens():
    found = observations({"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "0.4",
                          "x-daily-ratelimit-token-remaining": "29990", "x-daily-ratelimit-token-limit": "30000",
                          "x-daily-requests-left": "9000"}, SEARCH)
    assert found == {SEARCH: Observation(remaining=0, maximum=10, reset_in=0.4),
                     DAILY: Observation(remaining=29990, maximum=30000), DAILY_WRITES: Observation(remaining=9000)}


@pytest.mark.parametrize(("headers", "body", "expected"), [
    ({"retry-after": "3939", "x-daily-ratelimit-token-remaining": "0"}, None, ("daily", 3939.0)),
    ({}, {"success": False, "error": "daily request budget exceeded", "errorCode": 429}, ("daily", None)),
    ({"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"}, {"success": False},
     ("standard", 2.0)),
    ({"Retry-After": "7"}, None, ("standard", 7.0)),
])
def test_a_429_names_its_bucket_and_wait(headers, body, expected):
    err = error_for(429, body, headers, where="GET /api/v2/persons")
    assert isinstance(err, RateLimited) and err.policy == expected[0]
    if expected[1] is not None:
        assert err.retry_after == expected[1]
    assert (err.resume_at is not None) == (expected[0] == "daily")


def test_a_cloudflare_block_is_a_long_wait_not_an_auth_error():
    err = error_for(403, None, {}, where="GET /api/v2/persons")
    assert isinstance(err, RateLimited) and err.policy == "abuse" and err.retry_after == 60.0


def test_retry_after_may_be_an_http_date():
    now = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Mon, 05 Jan 2026 12:00:30 GMT", now=now) == 30
    assert retry_after_seconds("12") == 12 and retry_after_seconds("whenever") is None

"""Salesforce's allocation and Sforce-Limit-Info, and how its refusals are read: a spent allocation
parks the org until the bucket re-opens (within the hour: Salesforce's window is a rolling 24
hours); the concurrent long-request limit is a short wait that parks nothing."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.cache import MetadataCache
from crmsync.platforms.errors import AuthenticationError, Conflict, RateLimited, TransientError
from crmsync.platforms.salesforce import SalesforceAdapter
from crmsync.platforms.salesforce.errors import CONCURRENT, error_for, record_error
from crmsync.platforms.salesforce.limits import account_limits, default_limits, observations
from crmsync.ratelimit import DAILY, Limit, Observation, RateBudget

from .conftest import oauth_credentials


def test_the_allocation_is_one_bucket_re_opened_every_hour():
    hourly = Limit(100_000, 3600.0, calendar=True)
    assert default_limits() == {DAILY: hourly}
    assert account_limits({"api_allocation": 15_000}) == {DAILY: Limit(15_000, 3600.0, calendar=True)}
    assert account_limits({"rate_limits": "none"}) == {}


def test_a_spent_allocation_is_tried_again_within_the_hour_not_at_midnight():
    # Salesforce frees calls as they age out of its rolling 24 hours: a budget the header emptied
    # waits for the next full hour, where a UTC day would have waited until midnight.
    budget = RateBudget(None)
    [limit] = default_limits().values()
    before = datetime.now(UTC)
    assert budget.try_acquire("salesforce", "00D1", DAILY, limit).granted
    budget.observe("salesforce", "00D1", {DAILY: Observation(remaining=0, maximum=100_000)})
    grant = budget.try_acquire("salesforce", "00D1", DAILY, limit)
    after = datetime.now(UTC)
    assert not grant.granted and grant.daily_exhausted
    next_hours = {t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1) for t in (before, after)}
    assert grant.resume_at in next_hours


def test_sforce_limit_info_is_what_is_left_of_the_allocation():
    assert observations({"Sforce-Limit-Info": "api-usage=10018/100000"}, "standard") == {
        DAILY: Observation(remaining=89_982, maximum=100_000)}
    assert observations({"sforce-limit-info": "api-usage=16/15"}, "standard") == {
        DAILY: Observation(remaining=0, maximum=15)}
    assert observations({"Sforce-Limit-Info": "per-app-api-usage=1/2"}, "standard") == {}
    assert observations({"Sforce-Limit-Info": "api-usage=25/5000; per-app-api-usage=17/250(appName=x)"},
                        "standard") == {DAILY: Observation(remaining=4975, maximum=5000)}
    assert observations({}, "standard") == {}


def test_refusals_become_typed_errors():
    spent = error_for(403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                      where="GET /query")
    assert isinstance(spent, RateLimited) and spent.policy == DAILY
    assert datetime.now(UTC) < spent.resume_at <= datetime.now(UTC) + timedelta(hours=1)
    busy = error_for(403, [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                            "errorCode": "REQUEST_LIMIT_EXCEEDED"}], where="GET /query")
    assert isinstance(busy, RateLimited) and busy.policy == CONCURRENT and busy.resume_at is None
    assert isinstance(error_for(403, [{"errorCode": "INSUFFICIENT_ACCESS"}], where="GET /x"), AuthenticationError)
    assert isinstance(error_for(300, [], where="PATCH /sobjects/Contact/Email/x"), Conflict)
    assert isinstance(error_for(503, None, where="GET /x", reason="Service Unavailable"), TransientError)
    dup = record_error({"success": False, "errors": [{"statusCode": "DUPLICATE_VALUE", "message": "dup"}]})
    assert isinstance(dup, Conflict) and "DUPLICATE_VALUE" in str(dup)


def test_a_concurrent_limit_refusal_parks_nothing(salesforce_sandbox):
    sf = salesforce_sandbox
    budget = RateBudget(None)
    adapter = SalesforceAdapter(credentials=oauth_credentials(sf.app), base_url=sf.base_url, cache=MetadataCache(),
                                budget=budget, wait=False, account_id=sf.app.options.org_id)
    sf.configure(faults={"rate_limit_rate": 1.0})
    with pytest.raises(RateLimited) as busy:
        adapter.client.query_records("SELECT Id FROM Account LIMIT 1")
    assert busy.value.policy == CONCURRENT and busy.value.resume_at is None
    sf.configure(faults={"rate_limit_rate": 0.0})
    assert len(adapter.client.query_records("SELECT Id FROM Account LIMIT 1")) == 1

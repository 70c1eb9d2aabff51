"""Salesforce's rate limits: the org's default allocation and what `Sforce-Limit-Info` says.

"API Request Limits and Allocations"
(https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm):
an org's API requests are counted over a rolling 24 hours, org-wide, shared with every other
integration; Enterprise and Professional-with-API orgs start at 100,000 plus per-licence additions
(Developer Edition: 15,000). There is no burst window to budget: concurrency is limited instead
(ConcurrentPerOrgLongTxn, see errors.py). Our budget models the allocation as one bucket (kind
`daily`) holding what the last answer reported, re-opened every hour: the rolling window names no
reset, calls free up as they age out, so a spent org is probed again within the hour rather than
parked until a midnight Salesforce does not have. It learns the real numbers from every answer's
header ("API Usage",
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm):
``Sforce-Limit-Info: api-usage=10018/100000`` (used/max). A vault entry may name
"api_allocation" (the org's known maximum) and "rate_limits" overrides
(`crmsync.ratelimit.apply_limit_overrides`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from crmsync.platforms.http import lower_keys
from crmsync.ratelimit import DAILY, Limit, Observation, apply_limit_overrides, seconds_to_reset

DEFAULT_DAILY_ALLOCATION = 100_000
LIMIT_INFO_HEADER = "sforce-limit-info"
# The header may carry more parts ("api-usage=25/5000; per-app-api-usage=17/250(appName=x)"): only
# the org-wide one is the allocation.
_API_USAGE = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")


def api_usage(value: str | None) -> tuple[int, int] | None:
    """(used, max) of ``Sforce-Limit-Info: api-usage=10018/100000`` (other parts ignored)."""
    found = _API_USAGE.search(value or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


# How long a spent allocation is left alone before one call asks again (see the module's doc).
RECHECK_SECONDS = 3600.0


def allocation_limit(capacity: int) -> Limit:
    """The org's allocation as our budget keeps it: `capacity` calls in a window re-opened every
    RECHECK_SECONDS, its count set by each answer's `Sforce-Limit-Info`."""
    return Limit(int(capacity), RECHECK_SECONDS, calendar=True)


def seconds_to_recheck(now: float | None = None) -> float:
    """Until the allocation's window re-opens (a spent org's next try), as the budget reckons it."""
    return seconds_to_reset(allocation_limit(1), now)


def default_limits(allocation: int | None = None) -> dict[str, Limit]:
    return {DAILY: allocation_limit(int(allocation or DEFAULT_DAILY_ALLOCATION))}


def account_limits(credentials: Mapping[str, Any]) -> dict[str, Limit]:
    """The limits of the org a vault entry reaches: its "api_allocation" if known, and the entry's
    own "rate_limits" overrides."""
    return apply_limit_overrides(default_limits(credentials.get("api_allocation")), credentials.get("rate_limits"))


def observations(headers: Mapping[str, Any], kind: str) -> dict[str, Observation]:
    """Every answer (errors too) carries the org's usage: what is left of the allocation and its
    size. It says nothing of the call's own bucket (`kind`): Salesforce has no burst window."""
    usage = api_usage(lower_keys(headers).get(LIMIT_INFO_HEADER))
    if usage is None:
        return {}
    used, maximum = usage
    return {DAILY: Observation(remaining=max(0, maximum - used), maximum=maximum)} if maximum >= 1 else {}

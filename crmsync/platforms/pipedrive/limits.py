"""Pipedrive's rate limits: the account's default limits, each call's token cost, and what its
answers' rate headers say.

Two limits apply. A burst limit per token in a rolling 2 s window, by plan (API token / OAuth):
Lite 20/80, Growth 40/160, Premium 100/400, Ultimate 120/480, and a search limit of 10 per 2 s.
And a daily token budget per company: 30,000 tokens × the plan's multiplier (Lite 1, Growth 2,
Premium 5, Ultimate 7) × seats, reset at midnight; every endpoint costs a number of tokens (its
`x-token-cost` in the official OpenAPI documents). Ignoring 429s gets the token blocked by
Cloudflare (a 403 page). A vault entry may name "plan" and "seats", and "rate_limits" overrides
(`crmsync.ratelimit.apply_limit_overrides`); the budget learns lower numbers from the headers.
https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crmsync.platforms.http import read_rate_headers
from crmsync.ratelimit import DAILY, SEARCH, STANDARD, Limit, Observation, apply_limit_overrides

# Daily token cost per call (x-token-cost of the official specs).
COST_V2_LIST = 10
COST_V2_GET = 1
COST_V2_WRITE = 5
COST_V2_DELETE = 3
COST_V2_SEARCH = 20
COST_V2_PIPELINES = 5
COST_V1_FIELDS = 20
COST_V1_FIELD_CREATE = 10
COST_V1_USERS_ME = 2
COST_V1_ACTIVITY_TYPES = 20

# Burst requests per 2 s by plan (API token, OAuth) and the daily token multiplier.
PLANS = {"lite": (20, 80, 1), "growth": (40, 160, 2), "premium": (100, 400, 5), "ultimate": (120, 480, 7)}
DAILY_TOKENS_PER_SEAT = 30_000
# Bucket of the legacy per-day count of POST/PUT requests (x-daily-requests-left).
DAILY_WRITES = "daily_writes"


def default_limits(*, oauth: bool = False, plan: str | None = None, seats: int | None = None) -> dict[str, Limit]:
    """The limits of a plan; an unknown or absent plan is Lite, the lowest."""
    token_burst, oauth_burst, multiplier = PLANS.get(str(plan or "lite").lower(), PLANS["lite"])
    seats = max(1, int(seats or 1))
    return {STANDARD: Limit(oauth_burst if oauth else token_burst, 2.0), SEARCH: Limit(10, 2.0),
            DAILY: Limit.daily(DAILY_TOKENS_PER_SEAT * multiplier * seats)}


def is_oauth(credentials: Mapping[str, Any]) -> bool:
    return not (credentials.get("api_token") or credentials.get("token"))


def account_limits(credentials: Mapping[str, Any]) -> dict[str, Limit]:
    """The limits of the company a vault entry reaches: its plan and seats, token or OAuth, and the
    entry's own "rate_limits" overrides."""
    return apply_limit_overrides(
        default_limits(oauth=is_oauth(credentials), plan=credentials.get("plan"), seats=credentials.get("seats")),
        credentials.get("rate_limits"))


def observations(headers: Mapping[str, Any], kind: str) -> dict[str, Observation]:
    """x-ratelimit-remaining / -limit / -reset describe the 2 s window of the bucket the call was
    counted in; x-daily-ratelimit-token-remaining / -limit the day's tokens;
    x-daily-requests-left the legacy count of the day's writes."""
    return read_rate_headers(headers, ((kind, "remaining", "x-ratelimit-remaining"),
                                       (kind, "maximum", "x-ratelimit-limit"),
                                       (kind, "reset_in", "x-ratelimit-reset"),
                                       (DAILY, "remaining", "x-daily-ratelimit-token-remaining"),
                                       (DAILY, "maximum", "x-daily-ratelimit-token-limit"),
                                       (DAILY_WRITES, "remaining", "x-daily-requests-left")))

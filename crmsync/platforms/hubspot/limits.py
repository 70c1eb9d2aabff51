"""HubSpot's rate limits: the account's default limits and what its answers' rate headers say.

Private apps on Free/Starter get 100 requests per rolling 10 s and 250,000 per day (the day ends
at midnight in the account's time zone); a public OAuth app gets 110 per 10 s per installed
account and no daily cap; the CRM search endpoints allow 5 requests per second and answer without
rate headers. Higher tiers and API add-ons raise these: a vault entry's "rate_limits" says so
(`crmsync.ratelimit.apply_limit_overrides`). The budget also learns lower numbers from the headers.
https://developers.hubspot.com/docs/guides/apps/api-usage/usage-details
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crmsync.platforms.http import read_rate_headers
from crmsync.ratelimit import DAILY, SEARCH, STANDARD, Limit, Observation, apply_limit_overrides


def default_limits(*, oauth: bool = False, time_zone: str = "UTC") -> dict[str, Limit]:
    limits = {STANDARD: Limit(110 if oauth else 100, 10.0), SEARCH: Limit(5, 1.0)}
    if not oauth:
        limits[DAILY] = Limit.daily(250_000, time_zone or "UTC")
    return limits


def account_limits(credentials: Mapping[str, Any], *, time_zone: str | None = None) -> dict[str, Limit]:
    """The limits of the account a vault entry reaches: OAuth or private app, its time zone, and
    the entry's own "rate_limits" overrides."""
    oauth = bool(credentials.get("refresh_token"))
    zone = time_zone or credentials.get("time_zone") or "UTC"
    return apply_limit_overrides(default_limits(oauth=oauth, time_zone=zone), credentials.get("rate_limits"))


def observations(headers: Mapping[str, Any], kind: str) -> dict[str, Observation]:
    """X-HubSpot-RateLimit-Remaining / -Max describe the burst bucket the call was counted in,
    -Daily / -Daily-Remaining the day (absent for OAuth apps). Search answers carry none, so a
    search call's reading is empty (the burst headers there would describe another bucket)."""
    if kind == SEARCH:
        return {}
    return read_rate_headers(headers, ((kind, "remaining", "x-hubspot-ratelimit-remaining"),
                                       (kind, "maximum", "x-hubspot-ratelimit-max"),
                                       (DAILY, "remaining", "x-hubspot-ratelimit-daily-remaining"),
                                       (DAILY, "maximum", "x-hubspot-ratelimit-daily")))

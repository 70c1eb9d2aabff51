"""Pipedrive's two limits (docs/pipedrive.md §7): a per-company daily token budget where each operation costs
its ``x-token-cost`` from the official spec, and a per-token burst limit over a rolling 2-second
window (API tokens and OAuth tokens have different limits). Built on ``sandbox.limits``.
"""
from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass

from ..limits import DailyQuota, LimitState, RollingWindow
from .errors import RateLimited

PLANS = {  # plan -> (budget multiplier, API-token burst per 2 s, OAuth burst per 2 s)
    "lite": (1, 20, 80), "growth": (2, 40, 160), "premium": (5, 100, 400), "ultimate": (7, 120, 480)}
BUDGET_PER_SEAT = 30_000
DAILY_WRITES_PER_USER = 10_000  # the old fair-use POST/PUT limit behind x-daily-requests-left


@dataclass
class RateLimitSettings:
    plan: str = "growth"
    seats: int = 3
    burst_limit: int | None = None        # API token requests per window; None = the plan's; 0 = none
    oauth_burst_limit: int | None = None  # OAuth token requests per window; None = the plan's; 0 = none
    window_seconds: float = 2.0
    daily_budget: int | None = None       # tokens per company per day; None = 30,000 x plan x seats; 0 = none

    def effective(self) -> dict:
        mult, api_burst, oauth_burst = PLANS[self.plan]
        return {"burst_limit": api_burst if self.burst_limit is None else self.burst_limit,
                "oauth_burst_limit": oauth_burst if self.oauth_burst_limit is None else self.oauth_burst_limit,
                "daily_budget": BUDGET_PER_SEAT * mult * self.seats if self.daily_budget is None
                else self.daily_budget, "window_seconds": self.window_seconds}


class PipedriveLimits:
    def __init__(self, settings: RateLimitSettings | None = None, clock=None):
        self.settings = settings or RateLimitSettings()
        self._lock = threading.Lock()
        self._windows: dict[str, RollingWindow] = {}
        self._writes: dict[str, DailyQuota] = {}
        self._clock = clock
        eff = self.settings.effective()
        self.daily = DailyQuota(eff["daily_budget"], clock=clock) if clock else DailyQuota(eff["daily_budget"])
        self.burst_rejected = 0
        self.daily_rejected = 0

    def configure(self, **changes) -> dict:
        if "plan" in changes and changes["plan"] not in PLANS:
            raise ValueError(f"unknown plan {changes['plan']!r}; one of {sorted(PLANS)}")
        for key, value in changes.items():
            if not hasattr(self.settings, key):
                raise ValueError(f"unknown rate-limit setting {key!r}")
            setattr(self.settings, key, value)
        eff = self.settings.effective()
        self.daily.configure(eff["daily_budget"])
        with self._lock:
            for name, window in self._windows.items():
                window.configure(self._burst_for(name.split(":", 1)[0]), eff["window_seconds"])
        return self.snapshot()

    def _burst_for(self, kind: str) -> int:
        eff = self.settings.effective()
        return eff["oauth_burst_limit"] if kind == "oauth" else eff["burst_limit"]

    def _window(self, kind: str, token: str) -> RollingWindow:
        key = f"{kind}:{token}"
        with self._lock:
            w = self._windows.get(key)
            if w is None:
                w = self._windows[key] = RollingWindow(self._burst_for(kind), self.settings.window_seconds)
            return w

    def charge(self, kind: str, token: str, cost: int, is_write: bool, storm: bool = False) -> dict:
        """Count one request; return the headers for the response or raise ``RateLimited``."""
        window = self._window(kind, token)
        burst = window.peek() if storm else window.hit()
        headers = self._burst_headers(burst)
        if storm or not burst.allowed:
            self.burst_rejected += 1
            headers["retry-after"] = str(max(1, math.ceil(burst.reset_in)))
            headers["x-ratelimit-remaining"] = "0"
            raise RateLimited("Request over limit", headers)
        day = self.daily.hit(cost)
        headers.update(self._daily_headers(day))
        if not day.allowed:
            self.daily_rejected += 1
            headers["retry-after"] = str(max(1, math.ceil(day.reset_in)))  # until midnight, server time
            headers["x-daily-ratelimit-token-remaining"] = "0"
            raise RateLimited("daily request budget exceeded", headers)
        if kind == "api_token":
            writes = self._write_quota(token)
            used = writes.hit(1).used if is_write else writes.used
            headers["x-daily-requests-left"] = str(max(0, DAILY_WRITES_PER_USER - used))
        return headers

    def _write_quota(self, token: str) -> DailyQuota:
        with self._lock:
            q = self._writes.get(token)
            if q is None:
                q = self._writes[token] = (DailyQuota(0, clock=self._clock) if self._clock else DailyQuota(0))
            return q

    @staticmethod
    def _burst_headers(s: LimitState) -> dict:
        if not s.limit:
            return {}
        return {"x-ratelimit-limit": str(s.limit), "x-ratelimit-remaining": str(s.remaining),
                "x-ratelimit-reset": str(max(1, math.ceil(s.reset_in)))}

    @staticmethod
    def _daily_headers(s: LimitState) -> dict:
        if not s.limit:
            return {}
        return {"x-daily-ratelimit-token-limit": str(s.limit), "x-daily-ratelimit-token-remaining": str(s.remaining)}

    def peaks(self) -> dict:
        with self._lock:
            windows = list(self._windows.values())
        return {"burst_window_peak": max((w.peak for w in windows), default=0),
                "daily_tokens_used": self.daily.used, "daily_tokens_peak": self.daily.peak}

    def snapshot(self) -> dict:
        return {"settings": asdict(self.settings), "effective": self.settings.effective(), **self.peaks(),
                "burst_rejected": self.burst_rejected, "daily_rejected": self.daily_rejected}

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._writes.clear()
        self.daily.reset()
        self.burst_rejected = self.daily_rejected = 0

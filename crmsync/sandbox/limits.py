"""Rate-limit bookkeeping for the sandbox CRMs: a rolling window and a daily quota.

How a platform plugs in: keep one ``RollingWindow`` per limit the real CRM applies (HubSpot: 10 s
per app and 1 s for search; Pipedrive: 2 s burst) and one ``DailyQuota`` per account; call
``.hit()`` (or ``.hit(cost)``) once per request and answer 429 with the CRM's own body when
``allowed`` is false. Both record the highest count ever seen in one window / day (``peak``), which
the admin endpoints report as "highest number of requests seen in any rate window".
A limit of 0 means unlimited (still counted). Thread-safe.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


@dataclass(frozen=True)
class LimitState:
    allowed: bool
    limit: int          # 0 = unlimited
    remaining: int      # what is left in the current window/day after this hit
    used: int           # requests (or cost units) counted in the current window/day
    reset_in: float     # seconds until the oldest counted hit leaves the window (or the day ends)


class RollingWindow:
    """At most ``limit`` hits in any ``window`` seconds, counted over a sliding window."""

    def __init__(self, limit: int, window: float, clock=time.monotonic):
        self.limit = int(limit)
        self.window = float(window)
        self._clock = clock
        self._hits: deque = deque()  # (time, cost)
        self._used = 0
        self._lock = threading.Lock()
        self.peak = 0
        self.rejected = 0

    def configure(self, limit: int | None = None, window: float | None = None) -> None:
        with self._lock:
            if limit is not None:
                self.limit = int(limit)
            if window is not None:
                self.window = float(window)

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        hits = self._hits
        while hits and hits[0][0] <= cutoff:
            self._used -= hits.popleft()[1]

    def hit(self, cost: int = 1) -> LimitState:
        with self._lock:
            now = self._clock()
            self._prune(now)
            reset_in = (self._hits[0][0] + self.window - now) if self._hits else self.window
            if self.limit and self._used + cost > self.limit:
                self.rejected += 1
                return LimitState(False, self.limit, max(0, self.limit - self._used), self._used, reset_in)
            self._hits.append((now, cost))
            self._used += cost
            self.peak = max(self.peak, self._used)
            remaining = max(0, self.limit - self._used) if self.limit else 0
            return LimitState(True, self.limit, remaining, self._used, reset_in)

    def peek(self) -> LimitState:
        with self._lock:
            now = self._clock()
            self._prune(now)
            remaining = max(0, self.limit - self._used) if self.limit else 0
            reset_in = (self._hits[0][0] + self.window - now) if self._hits else 0.0
            return LimitState(True, self.limit, remaining, self._used, reset_in)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
            self._used = 0
            self.peak = 0
            self.rejected = 0


class DailyQuota:
    """At most ``limit`` units per calendar day in a fixed UTC offset (HubSpot: the account's zone)."""

    def __init__(self, limit: int, utc_offset_minutes: int = 0, clock=time.time):
        self.limit = int(limit)
        self.tz = timezone(timedelta(minutes=utc_offset_minutes))
        self._clock = clock
        self._day = None
        self._used = 0
        self._lock = threading.Lock()
        self.peak = 0
        self.rejected = 0

    def configure(self, limit: int | None = None) -> None:
        with self._lock:
            if limit is not None:
                self.limit = int(limit)

    def hit(self, cost: int = 1) -> LimitState:
        with self._lock:
            now = datetime.fromtimestamp(self._clock(), self.tz)
            if now.date() != self._day:
                self._day, self._used = now.date(), 0
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), self.tz)
            reset_in = (midnight - now).total_seconds()
            if self.limit and self._used + cost > self.limit:
                self.rejected += 1
                return LimitState(False, self.limit, max(0, self.limit - self._used), self._used, reset_in)
            self._used += cost
            self.peak = max(self.peak, self._used)
            remaining = max(0, self.limit - self._used) if self.limit else 0
            return LimitState(True, self.limit, remaining, self._used, reset_in)

    @property
    def used(self) -> int:
        return self._used

    def reset(self) -> None:
        with self._lock:
            self._day, self._used, self.peak, self.rejected = None, 0, 0, 0

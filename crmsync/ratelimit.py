"""One rate budget per remote CRM account, shared by every worker process on every host.

Celery's own ``rate_limit`` counts per worker instance and per task type, so it cannot express
"100 calls per 10 s for CRM account 123" across a fleet. This module keeps that budget in Redis
(or in-process when no Redis is configured) and answers, without blocking, "may I call now, and if
not, how long until I may" -- so a task can ``self.retry(countdown=grant.wait_seconds)`` instead of
holding a worker slot.

A budget is a set of buckets keyed by (platform, account, kind), kind being ``"standard"``,
``"search"``, ``"daily"`` or anything a platform needs. Each bucket is described by a
:class:`Limit` the caller passes on every call. This module knows no CRM: each platform's
``limits.py`` holds its default limits and reads its rate headers into :class:`Observation`
values, and the one request loop of the CRM clients (``crmsync.platforms.http``) calls the budget:

* rolling windows (burst limits) are an exact sliding log: in any window of
  ``interval_seconds + margin_seconds`` the granted cost never exceeds ``capacity``. A token
  bucket would allow up to twice the capacity inside one rolling window, which is exactly what
  a CRM's rolling-window limit rejects. The margin absorbs the jitter between our
  grant and the request's arrival at the CRM.
* calendar windows (daily quotas) are a counter that resets at midnight in the quota's time zone;
  a spent quota answers ``resume_at`` (the reset) instead of failing.

The Redis backend decides everything in one Lua script (loaded once, called by EVALSHA) that takes
the time from Redis ``TIME``, so host clocks never matter and no two processes can both take the
last slot. Responses correct the budget (:meth:`RateBudget.observe`), and a 429 stops every worker
of that account (:meth:`RateBudget.penalize`).

Typical use (what ``CRMClient.request`` does)::

    grant = budget.try_acquire_many(platform, account, [Demand(STANDARD, limits[STANDARD]),
                                                        Demand(DAILY, limits[DAILY])])
    if not grant.granted:
        raise RateLimited(..., retry_after=grant.wait_seconds, resume_at=grant.resume_at)
    response = session.get(...)
    budget.observe(platform, account, observations_of(response), grant=grant)
    if response.status_code == 429:
        budget.penalize(platform, account, retry_after, kind=rejected_kind, limit=limits[rejected_kind])
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmsync.errors import CrmsyncError, Fatal, Retryable

__all__ = [
    "DAILY",
    "SEARCH",
    "STANDARD",
    "DailyQuotaExhausted",
    "Demand",
    "Grant",
    "InvalidLimit",
    "Limit",
    "Observation",
    "RateBudget",
    "RateBudgetError",
    "RateBudgetUnavailable",
    "RateLimitWait",
    "budget_for_url",
    "budget_from_settings",
]

STANDARD = "standard"
SEARCH = "search"
DAILY = "daily"

# A rolling bucket is an exact log of its grants; beyond this many the caller wants a calendar window.
MAX_ROLLING_CAPACITY = 10_000
# How long a capacity learned from a response header (lower than the configured one) is trusted.
LEARNED_CAPACITY_SECONDS = 3600
# Penalty when a 429 names neither Retry-After nor a bucket we know the window of.
FALLBACK_PENALTY_SECONDS = 10.0


# --------------------------------------------------------------------------------------------- errors


class RateBudgetError(CrmsyncError):
    """Base of every error this module raises."""


class InvalidLimit(RateBudgetError, Fatal, ValueError):
    """A limit, cost or key part that cannot describe a budget (a programming or config error)."""


class RateBudgetUnavailable(RateBudgetError, Retryable):
    """The shared store (Redis) did not answer. We fail closed: calling the CRM blind risks 429 storms
    and, with some CRMs, an abuse block. A blip: the work is retried with backoff, whichever client
    it went through."""


class RateLimitWait(RateBudgetError, Retryable):
    """The budget has no room now; try again after ``wait_seconds`` (at ``resume_at``). A wait, not
    a failure: it does not use up the retries."""
    counts_as_attempt = False

    def __init__(self, platform: str, account: str, kind: str | None, wait_seconds: float,
                 resume_at: datetime | None) -> None:
        self.platform = platform
        self.account = account
        self.kind = kind
        self.wait_seconds = self.retry_after = wait_seconds
        self.resume_at = resume_at
        super().__init__(self._describe())

    def _describe(self) -> str:
        return (f"{self.platform} account {self.account}: {self.kind or 'rate'} budget spent, "
                f"retry in {self.wait_seconds:.3f} s")


class DailyQuotaExhausted(RateLimitWait):
    """The account's daily quota is spent until ``resume_at``. Callers should park the work (e.g. a
    ``paused_until`` on the config) rather than schedule a retry hours away."""

    def _describe(self) -> str:
        when = self.resume_at.isoformat() if self.resume_at else "unknown"
        return f"{self.platform} account {self.account}: daily quota spent until {when}"


# ---------------------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class Limit:
    """``capacity`` units of cost per ``interval_seconds``.

    Rolling (default): no window of ``interval_seconds + margin_seconds`` ever holds more than
    ``capacity``. ``margin_seconds`` defaults to 2 % of the interval: enough for the jitter between our
    grant and the CRM's clock, at most 2 % of throughput.

    Calendar (``calendar=True``, see :meth:`daily`): windows aligned to midnight in ``timezone``;
    the count resets at each boundary.
    """

    capacity: int
    interval_seconds: float
    calendar: bool = False
    timezone: str = "UTC"
    margin_seconds: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity < 1:
            raise InvalidLimit(f"capacity must be a positive integer, not {self.capacity!r}")
        if not self.interval_seconds > 0:
            raise InvalidLimit(f"interval_seconds must be positive, not {self.interval_seconds!r}")
        if not self.calendar and self.capacity > MAX_ROLLING_CAPACITY:
            raise InvalidLimit(f"a rolling window keeps one entry per call; use calendar=True above "
                               f"{MAX_ROLLING_CAPACITY} (capacity {self.capacity})")
        if self.margin_seconds is not None and self.margin_seconds < 0:
            raise InvalidLimit(f"margin_seconds must not be negative, not {self.margin_seconds!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidLimit(f"unknown time zone {self.timezone!r}") from exc

    @classmethod
    def daily(cls, capacity: int, timezone: str = "UTC") -> Limit:
        """A quota that resets at midnight in ``timezone`` (the CRM account's zone, or the CRM server's)."""
        return cls(capacity, 86400.0, calendar=True, timezone=timezone)

    @property
    def margin(self) -> float:
        if self.calendar:
            return 0.0
        return self.interval_seconds * 0.02 if self.margin_seconds is None else self.margin_seconds

    @property
    def span(self) -> float:
        """Length of the window we enforce (rolling: interval plus margin)."""
        return self.interval_seconds + self.margin

    def utc_offset(self) -> float:
        """Seconds east of UTC of this limit's zone right now (DST moves it)."""
        offset = datetime.now(ZoneInfo(self.timezone)).utcoffset()
        return offset.total_seconds() if offset else 0.0


@dataclass(frozen=True)
class Demand:
    """One bucket a call draws from, and how much: e.g. 1 from ``standard`` (the burst window) and the
    endpoint's token cost from ``daily``."""

    kind: str
    limit: Limit
    cost: int = 1


@dataclass(frozen=True)
class Grant:
    """The answer to "may I call now?".

    ``granted`` -- the cost was taken from every bucket; hand the grant back to
    :meth:`RateBudget.complete` (or ``observe(..., grant=)``) when the response arrives. Otherwise
    nothing was taken and ``wait_seconds`` says how long until the call would fit, ``resume_at`` when
    that is (the quota reset if ``daily_exhausted``), ``limited_by`` which kind said no. ``at`` is the
    decision time on the budget's clock (Redis TIME for the shared backend), in epoch seconds.
    """

    granted: bool
    wait_seconds: float = 0.0
    resume_at: datetime | None = None
    daily_exhausted: bool = False
    limited_by: str | None = None
    at: float = 0.0
    platform: str = ""
    account: str = ""
    receipts: tuple[tuple[str, str], ...] = ()  # (kind, log entry) of each rolling bucket taken from


@dataclass
class Observation:
    """What a CRM's answer says of one bucket (its rate headers, parsed by the platform's
    ``limits.py``): calls left in the window, the window's capacity, seconds until it frees."""

    remaining: int | None = None
    maximum: int | None = None
    reset_in: float | None = None


# ------------------------------------------------------------------------------------------ backends

# One script (acquire, peek, level, complete, observe, penalize), so the bucket arithmetic exists once on the
# Redis side and every decision is one atomic step on Redis's clock.
#   KEYS[1]          account hash: blocked_until, daily (a spent daily quota stops every kind)
#   KEYS[2i], [2i+1] bucket i: sorted-set log ("seq:cost" scored by grant time), state hash (limit,
#                    calendar count, penalty, learned capacity)
#   ARGV[1] op, ARGV[2] n buckets, then 9 per bucket:
#     calendar(0/1|'' = use stored), capacity, interval, margin, utc offset,
#     cost, observed remaining, observed max, observed reset-in   ('' = none)
#   "penalize" adds seconds ('' = the window), account-wide (0/1), fallback seconds (bucket unknown)
#   "complete" takes instead one log entry per bucket: ARGV[2 + i]
_LUA = r"""
local op = ARGV[1]
local n = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local STATE_TTL = 172800

local function num(v)
  if v == false or v == nil or v == '' then return nil end
  return tonumber(v)
end

local function cost_of(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

local function load(i)
  local a = 3 + (i - 1) * 9
  local b = {log = KEYS[2 * i], st = KEYS[2 * i + 1]}
  local cal, cap, int, mar, off = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  if cal == '' then
    local s = redis.call('HMGET', b.st, 'cal', 'cap', 'int', 'mar', 'off')
    if not s[2] then return nil end
    cal, cap, int, mar, off = s[1], s[2], s[3], s[4], s[5]
  else
    redis.call('HSET', b.st, 'cal', cal, 'cap', cap, 'int', int, 'mar', mar, 'off', off)
  end
  b.cal = (cal == '1')
  b.cap = tonumber(cap); b.int = tonumber(int); b.mar = tonumber(mar); b.off = tonumber(off)
  b.cost = num(ARGV[a + 5]) or 0
  b.obs_rem = num(ARGV[a + 6]); b.obs_max = num(ARGV[a + 7]); b.obs_reset = num(ARGV[a + 8])
  local s = redis.call('HMGET', b.st, 'cap_low', 'cap_low_until', 'blocked_until', 'win', 'used')
  if num(s[1]) and (num(s[2]) or 0) > now then b.cap = math.min(b.cap, num(s[1])) end
  b.blocked = num(s[3]) or 0
  if b.cal then
    b.win = math.floor((now + b.off) / b.int)
    b.reset = (b.win + 1) * b.int - b.off
    if num(s[4]) == b.win then b.used = num(s[5]) or 0 else b.used = 0 end
  else
    b.span = b.int + b.mar
    redis.call('ZREMRANGEBYSCORE', b.log, '-inf', now - b.span)
    b.entries = redis.call('ZRANGE', b.log, 0, -1, 'WITHSCORES')
    b.used = 0
    for j = 1, #b.entries, 2 do b.used = b.used + cost_of(b.entries[j]) end
  end
  return b
end

local function keep(b)
  redis.call('EXPIRE', b.st, math.max(STATE_TTL, math.ceil(b.int * 2)))
end

local function log_cost(b, score, cost)
  local seq = redis.call('HINCRBY', b.st, 'seq', 1)
  local member = seq .. ':' .. cost
  -- scores as text: Lua would pass a number with 14 digits, 100 us at today's epoch
  redis.call('ZADD', b.log, string.format('%.6f', score), member)
  redis.call('PEXPIRE', b.log, math.ceil(b.span * 1000) + 1000)
  return member
end

local function fmt(x) return string.format('%.6f', x) end

if op == 'acquire' or op == 'peek' then
  -- the refusal answers the latest of all reasons: the time every bucket has room again
  local resume, daily, limited = now, 0, 0
  local function consider(till, is_daily, who)
    if till > resume then resume = till; limited = who end
    if till > now and is_daily == 1 then daily = 1 end
  end
  local acc = redis.call('HMGET', KEYS[1], 'blocked_until', 'daily')
  local acc_until = num(acc[1]) or 0
  if acc_until > now then consider(acc_until, (acc[2] == '1') and 1 or 0, -1) end
  local buckets = {}
  local remaining = {}
  for i = 1, n do
    local b = load(i)
    buckets[i] = b
    remaining[i] = math.max(0, b.cap - b.used)
    if b.blocked > now then
      consider(b.blocked, b.cal and 1 or 0, i); remaining[i] = 0
    end
    if b.used + b.cost > b.cap then
      if b.cal then
        consider(b.reset, 1, i)
      else
        local need, freed = b.used + b.cost - b.cap, 0
        for j = 1, #b.entries, 2 do
          freed = freed + cost_of(b.entries[j])
          if freed >= need then
            consider(tonumber(b.entries[j + 1]) + b.span, 0, i)
            break
          end
        end
      end
    end
  end
  if op == 'peek' then
    local out = {fmt(now)}
    for i = 1, n do out[#out + 1] = tostring(remaining[i]) end
    return out
  end
  if resume > now then
    return {'0', fmt(resume), tostring(daily), tostring(limited), fmt(now)}
  end
  local out = {'1', '0', '0', '0', fmt(now)}
  for i = 1, n do
    local b = buckets[i]
    if b.cal then
      redis.call('HSET', b.st, 'win', b.win, 'used', b.used + b.cost)
      out[#out + 1] = ''
    else
      out[#out + 1] = log_cost(b, now, b.cost)
    end
    keep(b)
  end
  return out
end

if op == 'level' then
  -- what each bucket has left now, under the limit it was last used with (-1: never used here),
  -- and that limit; a penalty or a spent daily quota of the account leaves nothing
  local acc = redis.call('HMGET', KEYS[1], 'blocked_until')
  local account_blocked = (num(acc[1]) or 0) > now
  local out = {}
  for i = 1, n do
    local b = load(i)
    if b then
      local left = math.max(0, b.cap - b.used)
      if account_blocked or b.blocked > now then left = 0 end
      out[#out + 1] = tostring(left); out[#out + 1] = tostring(b.cap)
    else
      out[#out + 1] = '-1'; out[#out + 1] = '0'
    end
  end
  return out
end

if op == 'complete' then
  -- the call got its response, so it reached the CRM no later than now: its slot counts from now.
  -- Re-added if it already left the log: the CRM may have counted it just now.
  for i = 1, n do
    local member = ARGV[2 + i]
    local s = redis.call('HMGET', KEYS[2 * i + 1], 'int', 'mar')
    if member ~= '' and s[1] then
      redis.call('ZADD', KEYS[2 * i], fmt(now), member)
      redis.call('PEXPIRE', KEYS[2 * i], math.ceil((tonumber(s[1]) + tonumber(s[2])) * 1000) + 1000)
    end
  end
  return fmt(now)
end

if op == 'observe' then
  local lowered = {}
  for i = 1, n do
    local b = load(i)
    if b then
      if b.obs_max and b.obs_max >= 1 and b.obs_max < b.cap then
        redis.call('HSET', b.st, 'cap_low', b.obs_max, 'cap_low_until', fmt(now + 3600))
        b.cap = b.obs_max
      end
      if b.obs_rem and b.obs_rem < b.cap - b.used then
        local deficit = b.cap - b.used - b.obs_rem
        if b.cal then
          redis.call('HSET', b.st, 'win', b.win, 'used', b.used + deficit)
        else
          -- the server's calls we did not make: log them so they free when its window frees them
          local score = now
          if b.obs_reset then score = now + math.min(b.obs_reset, b.span) - b.span end
          log_cost(b, score, deficit)
        end
        keep(b)
        lowered[#lowered + 1] = tostring(i)
      end
    end
  end
  return lowered
end

if op == 'penalize' then
  local secs = num(ARGV[3 + n * 9])
  local account_wide = ARGV[4 + n * 9] == '1'
  local b = nil
  if n > 0 then b = load(1) end
  local till
  if secs then
    till = now + secs
  elseif b and b.cal then
    till = b.reset
  elseif b then
    till = now + b.span
  else
    till = now + tonumber(ARGV[5 + n * 9])
  end
  if b and b.cal and not secs then
    redis.call('HSET', b.st, 'win', b.win, 'used', math.max(b.used, b.cap))
  end
  if account_wide then
    local cur = num(redis.call('HGET', KEYS[1], 'blocked_until')) or 0
    if till > cur then
      redis.call('HSET', KEYS[1], 'blocked_until', fmt(till), 'daily', '1')
    end
    redis.call('EXPIRE', KEYS[1], math.max(60, math.ceil(till - now) + 60))
  else
    -- a bucket never acquired here still keeps the block, for the workers that will acquire it
    local st = KEYS[3]
    local cur = num(redis.call('HGET', st, 'blocked_until')) or 0
    if till > cur then redis.call('HSET', st, 'blocked_until', fmt(till)) end
    redis.call('EXPIRE', st, math.max(STATE_TTL, math.ceil(till - now) + 60))
  end
  return fmt(till)
end

return redis.error_reply('unknown op ' .. tostring(op))
"""


def _limit_args(limit: Limit | None) -> list[str]:
    if limit is None:
        return ["", "", "", "", ""]
    return ["1" if limit.calendar else "0", str(limit.capacity), repr(float(limit.interval_seconds)),
            repr(float(limit.margin)), repr(limit.utc_offset())]


class _RedisBuckets:
    """Buckets in Redis, decided by one Lua script; the state of one account shares a hash tag so a
    Redis Cluster keeps it in one slot."""

    def __init__(self, client: Any, key_prefix: str) -> None:
        import redis

        self._client = client
        self._prefix = key_prefix
        self._script = client.register_script(_LUA)  # EVALSHA, reloaded by redis-py on NOSCRIPT
        self._redis_error = redis.RedisError

    def _keys(self, platform: str, account: str, kinds: Sequence[str]) -> list[str]:
        base = f"{self._prefix}:{{{platform}:{account}}}"
        keys = [f"{base}:account"]
        for kind in kinds:
            keys += [f"{base}:{kind}:log", f"{base}:{kind}:state"]
        return keys

    def _run(self, keys: list[str], args: list[str]) -> Any:
        try:
            return self._script(keys=keys, args=args)
        except self._redis_error as exc:
            raise RateBudgetUnavailable(f"rate budget store unavailable: {type(exc).__name__}") from exc

    def acquire(self, platform: str, account: str, demands: Sequence[Demand], peek: bool = False) -> list:
        # answer: granted, resume at, daily, limiting bucket, now, then the log entry of each bucket
        args = ["peek" if peek else "acquire", str(len(demands))]
        for d in demands:
            args += _limit_args(d.limit) + [str(d.cost), "", "", ""]
        return [_text(v) for v in self._run(self._keys(platform, account, [d.kind for d in demands]), args)]

    def level(self, platform: str, account: str, kinds: Sequence[str]) -> list[tuple[int, int]]:
        args = ["level", str(len(kinds))]
        for _ in kinds:
            args += _limit_args(None) + ["", "", "", ""]
        out = [int(float(_text(v))) for v in self._run(self._keys(platform, account, kinds), args)]
        return list(zip(out[::2], out[1::2], strict=True))

    def complete(self, platform: str, account: str, receipts: Sequence[tuple[str, str]]) -> None:
        self._run(self._keys(platform, account, [k for k, _ in receipts]),
                  ["complete", str(len(receipts)), *[entry for _, entry in receipts]])

    def observe(self, platform: str, account: str, found: dict[str, Observation]) -> list[str]:
        kinds = list(found)
        args = ["observe", str(len(kinds))]
        for kind in kinds:
            o = found[kind]
            args += _limit_args(None) + ["0", _opt(o.remaining), _opt(o.maximum), _opt(o.reset_in)]
        lowered = self._run(self._keys(platform, account, kinds), args)
        return [kinds[int(_text(i)) - 1] for i in lowered]

    def penalize(self, platform: str, account: str, kind: str, limit: Limit | None,
                 seconds: float | None, account_wide: bool, fallback_seconds: float) -> float:
        args = ["penalize", "1", *_limit_args(limit), "0", "", "", "",
                _opt(seconds), "1" if account_wide else "0", repr(float(fallback_seconds))]
        return float(_text(self._run(self._keys(platform, account, [kind]), args)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt(value: float | None) -> str:
    return "" if value is None else repr(float(value))


@dataclass
class _LocalBucket:
    entries: deque = field(default_factory=deque)  # [at, cost, entry id], oldest first
    used: int = 0  # calendar: cost taken in window `win`
    win: int | None = None
    blocked_until: float = 0.0
    cap_low: int | None = None
    cap_low_until: float = 0.0
    limit: Limit | None = None
    seq: int = 0

    def log(self, at: float, cost: int) -> str:
        self.seq += 1
        entry = [at, cost, f"{self.seq}:{cost}"]
        if self.entries and self.entries[-1][0] > at:
            # keep the log ordered by time: the wait arithmetic walks it oldest first
            self.entries = deque(sorted([*self.entries, entry], key=lambda e: e[0]))
        else:
            self.entries.append(entry)
        return entry[2]


class _LocalBuckets:
    """The same arithmetic as the Lua script, for one process (threads share it under a lock)."""

    def __init__(self, clock: Any = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._buckets: dict[tuple[str, str, str], _LocalBucket] = {}
        self._accounts: dict[tuple[str, str], tuple[float, bool]] = {}

    def _load(self, key: tuple[str, str, str], limit: Limit | None, now: float) -> dict | None:
        b = self._buckets.get(key)
        if b is None:
            if limit is None:
                return None
            b = self._buckets[key] = _LocalBucket()
        if limit is not None:
            b.limit = limit
        limit = b.limit
        if limit is None:
            return None  # only a penalty is known of this bucket
        cap = limit.capacity
        if b.cap_low is not None and b.cap_low_until > now:
            cap = min(cap, b.cap_low)
        view = {"b": b, "limit": limit, "cap": cap}
        if limit.calendar:
            offset = limit.utc_offset()
            win = math.floor((now + offset) / limit.interval_seconds)
            view["win"] = win
            view["reset"] = (win + 1) * limit.interval_seconds - offset
            view["used"] = b.used if b.win == win else 0
        else:
            while b.entries and b.entries[0][0] <= now - limit.span:
                b.entries.popleft()
            view["used"] = sum(e[1] for e in b.entries)
        return view

    def acquire(self, platform: str, account: str, demands: Sequence[Demand], peek: bool = False) -> list:
        with self._lock:
            now = self._clock()
            resume, daily, limited = now, False, 0

            def consider(till: float, is_daily: bool, who: int) -> None:
                nonlocal resume, daily, limited
                if till > resume:
                    resume, limited = till, who
                if till > now and is_daily:
                    daily = True

            acc_until, acc_daily = self._accounts.get((platform, account), (0.0, False))
            if acc_until > now:
                consider(acc_until, acc_daily, -1)
            views, remaining = [], []
            for i, d in enumerate(demands, start=1):
                v = self._load((platform, account, d.kind), d.limit, now)
                views.append(v)
                remaining.append(max(0, v["cap"] - v["used"]))
                if v["b"].blocked_until > now:
                    consider(v["b"].blocked_until, d.limit.calendar, i)
                    remaining[-1] = 0
                if v["used"] + d.cost > v["cap"]:
                    if d.limit.calendar:
                        consider(v["reset"], True, i)
                    else:
                        need, freed = v["used"] + d.cost - v["cap"], 0
                        for at, cost, _ in v["b"].entries:
                            freed += cost
                            if freed >= need:
                                consider(at + d.limit.span, False, i)
                                break
            if peek:
                return [repr(now), *map(str, remaining)]
            if resume > now:
                return ["0", repr(resume), "1" if daily else "0", str(limited), repr(now)]
            out = ["1", "0", "0", "0", repr(now)]
            for d, v in zip(demands, views, strict=True):
                b = v["b"]
                if d.limit.calendar:
                    b.win, b.used = v["win"], v["used"] + d.cost
                    out.append("")
                else:
                    out.append(b.log(now, d.cost))
            return out

    def level(self, platform: str, account: str, kinds: Sequence[str]) -> list[tuple[int, int]]:
        with self._lock:
            now = self._clock()
            account_blocked = self._accounts.get((platform, account), (0.0, False))[0] > now
            out = []
            for kind in kinds:
                v = self._load((platform, account, kind), None, now)
                if v is None:
                    out.append((-1, 0))
                    continue
                left = 0 if account_blocked or v["b"].blocked_until > now else max(0, v["cap"] - v["used"])
                out.append((left, v["cap"]))
            return out

    def complete(self, platform: str, account: str, receipts: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            now = self._clock()
            for kind, entry_id in receipts:
                b = self._buckets.get((platform, account, kind))
                if b is None or not entry_id:
                    continue
                # re-added if it already left the log, as in the Lua script
                kept = [e for e in b.entries if e[2] != entry_id]
                b.entries = deque([*kept, [now, int(entry_id.rsplit(":", 1)[1]), entry_id]])

    def observe(self, platform: str, account: str, found: dict[str, Observation]) -> list[str]:
        lowered = []
        with self._lock:
            now = self._clock()
            for kind, o in found.items():
                v = self._load((platform, account, kind), None, now)
                if v is None:
                    continue
                b, limit = v["b"], v["limit"]
                if o.maximum is not None and 1 <= o.maximum < v["cap"]:
                    b.cap_low, b.cap_low_until = o.maximum, now + LEARNED_CAPACITY_SECONDS
                    v["cap"] = o.maximum
                if o.remaining is not None and o.remaining < v["cap"] - v["used"]:
                    deficit = v["cap"] - v["used"] - o.remaining
                    if limit.calendar:
                        b.win, b.used = v["win"], v["used"] + deficit
                    else:
                        at = now
                        if o.reset_in is not None:
                            at = now + min(o.reset_in, limit.span) - limit.span
                        b.log(at, deficit)
                    lowered.append(kind)
        return lowered

    def penalize(self, platform: str, account: str, kind: str, limit: Limit | None,
                 seconds: float | None, account_wide: bool, fallback_seconds: float) -> float:
        with self._lock:
            now = self._clock()
            v = self._load((platform, account, kind), limit, now)
            if seconds is not None:
                until = now + seconds
            elif v is not None and v["limit"].calendar:
                until = v["reset"]
            elif v is not None:
                until = now + v["limit"].span
            else:
                until = now + fallback_seconds
            if v is not None and v["limit"].calendar and seconds is None:
                v["b"].win, v["b"].used = v["win"], max(v["used"], v["cap"])
            if account_wide:
                cur, _ = self._accounts.get((platform, account), (0.0, False))
                if until > cur:
                    self._accounts[(platform, account)] = (until, True)
            else:
                b = self._buckets.setdefault((platform, account, kind), _LocalBucket())
                b.blocked_until = max(b.blocked_until, until)
            return until


# ---------------------------------------------------------------------------------------- the budget


def _check_part(name: str, value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in "{}:") or len(text) > 200:
        raise InvalidLimit(f"{name} must be a non-empty string without braces or colons, not {text!r}")
    return text


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def seconds_to_reset(limit: Limit, now: float | None = None) -> float:
    """Until a calendar limit's window re-opens."""
    now = time.time() if now is None else now
    offset = limit.utc_offset()
    return (math.floor((now + offset) / limit.interval_seconds) + 1) * limit.interval_seconds - offset - now


class RateBudget:
    """The rate budget of every CRM account we call.

    ``RateBudget(redis_client)`` shares it across processes and hosts; ``RateBudget(None)`` keeps it in
    this process (threads share it) for development and single-process runs.
    """

    def __init__(self, redis_client: Any | None, key_prefix: str = "crmsync:rl") -> None:
        self.shared = redis_client is not None
        self._buckets: _RedisBuckets | _LocalBuckets = (
            _RedisBuckets(redis_client, key_prefix) if redis_client is not None else _LocalBuckets()
        )

    # -- asking

    def try_acquire(self, platform: str, account: str, kind: str, limit: Limit, cost: int = 1) -> Grant:
        """Take ``cost`` from the (platform, account, kind) bucket if it fits now; never blocks."""
        return self.try_acquire_many(platform, account, [Demand(kind, limit, cost)])

    def try_acquire_many(self, platform: str, account: str, demands: Sequence[Demand]) -> Grant:
        """Take from several buckets at once, all or nothing (burst and daily for one call), so a
        refusal by one never spends another."""
        platform, account = _check_part("platform", platform), _check_part("account", account)
        if not demands:
            raise InvalidLimit("at least one demand is needed")
        kinds = [_check_part("kind", d.kind) for d in demands]
        if len(set(kinds)) != len(kinds):
            raise InvalidLimit(f"each kind at most once per call, got {kinds}")
        for d in demands:
            if isinstance(d.cost, bool) or not isinstance(d.cost, int) or not 1 <= d.cost <= d.limit.capacity:
                raise InvalidLimit(f"cost of a {d.kind} call must be 1..{d.limit.capacity}, not {d.cost!r}")
        granted, resume, daily, limited, at, *entries = self._buckets.acquire(platform, account, demands)
        if granted == "1":
            receipts = tuple((d.kind, e) for d, e in zip(demands, entries, strict=True) if e)
            return Grant(True, at=float(at), platform=platform, account=account, receipts=receipts)
        who = int(limited)
        # microsecond ceiling: waking a hair early would only earn a second refusal
        wait = math.ceil((float(resume) - float(at)) * 1e6) / 1e6
        return Grant(
            granted=False,
            wait_seconds=wait,
            resume_at=_when(float(resume)),
            daily_exhausted=daily == "1",
            limited_by=DAILY if who == -1 else demands[who - 1].kind,
            at=float(at),
            platform=platform,
            account=account,
        )

    def acquire(self, platform: str, account: str, kind: str, limit: Limit, cost: int = 1, *,
                max_wait: float = 5.0) -> Grant:
        """Blocking convenience: sleep (at most ``max_wait`` in total) until the call fits.

        Raises :class:`DailyQuotaExhausted` at once when the daily quota is spent, and
        :class:`RateLimitWait` at once when the wait would pass ``max_wait`` -- sleeping out a wait we
        know is too long would only hold the worker slot.
        """
        return self.acquire_many(platform, account, [Demand(kind, limit, cost)], max_wait=max_wait)

    def acquire_many(self, platform: str, account: str, demands: Sequence[Demand], *,
                     max_wait: float = 5.0) -> Grant:
        deadline = time.monotonic() + max_wait
        while True:
            grant = self.try_acquire_many(platform, account, demands)
            if grant.granted:
                return grant
            error = DailyQuotaExhausted if grant.daily_exhausted else RateLimitWait
            left = deadline - time.monotonic()
            if grant.daily_exhausted or grant.wait_seconds > left:
                raise error(platform, account, grant.limited_by, grant.wait_seconds, grant.resume_at)
            time.sleep(grant.wait_seconds)

    def remaining(self, platform: str, account: str, kind: str, limit: Limit) -> int:
        """Cost that would be granted now (0 while penalized); for dispatchers shaping load."""
        platform, account = _check_part("platform", platform), _check_part("account", account)
        out = self._buckets.acquire(platform, account, [Demand(_check_part("kind", kind), limit, 1)], peek=True)
        return int(out[1])

    def levels(self, platform: str, account: str, kinds: Sequence[str] = (STANDARD, SEARCH, DAILY)
               ) -> dict[str, tuple[int, int]]:
        """{kind: (cost left now, capacity)} under the limits the account's calls last used (0 left
        while the account is penalized or its daily quota is spent); kinds never used are left out.
        Changes nothing; for the metrics collector, which knows the accounts but not their limits."""
        platform, account = _check_part("platform", platform), _check_part("account", account)
        kinds = [_check_part("kind", k) for k in kinds]
        found = self._buckets.level(platform, account, kinds)
        return {k: (left, cap) for k, (left, cap) in zip(kinds, found, strict=True) if left >= 0}

    # -- learning from the CRM

    def complete(self, grant: Grant) -> None:
        """The call this grant paid for got its response: count its slot in the rolling windows from now.

        The CRM counts a call when it arrives, somewhere between our grant and the response. Queueing
        (a burst of calls through one connection pool, a busy event loop) can make that tens to
        hundreds of milliseconds after the grant; counting the slot from the response is the one time
        the CRM's count can never be later than, so the CRM never sees more than the capacity in its
        window however late calls arrive. It costs each slot the call's latency. Without this call the
        slot counts from the grant, protected only by ``Limit.margin_seconds``.
        """
        if grant.granted and grant.receipts:
            self._buckets.complete(grant.platform, grant.account, grant.receipts)

    def observe(self, platform: str, account: str, observations: Mapping[str, Observation], *,
                grant: Grant | None = None) -> list[str]:
        """Lower our remaining budget when a response says less is left (other apps or integrations
        share the account's quota; the server's window is the truth). Never raises it.

        ``observations`` is {bucket kind: what the response's rate headers say of it}, read by the
        platform (``platforms/<crm>/limits.py``). Buckets never acquired are left alone (we know no
        window for them). With ``grant`` (the grant of the call this response answers) it also does
        :meth:`complete`. Returns the kinds lowered.
        """
        platform, account = _check_part("platform", platform), _check_part("account", account)
        if grant is not None:
            self.complete(grant)
        found = {_check_part("kind", kind): o for kind, o in observations.items()}
        lowered = self._buckets.observe(platform, account, found) if found else []
        if found.get(DAILY) and found[DAILY].remaining == 0:
            # the day's quota is gone for every kind of call, not only those that draw on `daily`
            self.penalize(platform, account, kind=DAILY)
            lowered = lowered if DAILY in lowered else [*lowered, DAILY]
        return lowered

    def penalize(self, platform: str, account: str, retry_after_seconds: float | None = None, *,
                 kind: str = STANDARD, limit: Limit | None = None) -> datetime:
        """After a 429: every worker of this account waits until the returned time.

        The wait is ``retry_after_seconds`` or, without it, the bucket's window (a daily bucket: until
        its reset). A spent ``daily`` quota stops every kind of call of the account. ``limit`` defaults
        to what the bucket was last used with; a bucket never used waits FALLBACK_PENALTY_SECONDS, or
        until midnight UTC for ``daily``.
        """
        platform, account = _check_part("platform", platform), _check_part("account", account)
        kind = _check_part("kind", kind)
        if retry_after_seconds is not None and not retry_after_seconds >= 0:
            raise InvalidLimit(f"retry_after_seconds must not be negative, not {retry_after_seconds!r}")
        # used only when the bucket was never acquired here, so its window is unknown
        fallback = limit or (Limit.daily(1) if kind == DAILY else None)
        fallback_seconds = FALLBACK_PENALTY_SECONDS
        if fallback is not None:
            fallback_seconds = seconds_to_reset(fallback) if fallback.calendar else fallback.span
        until = self._buckets.penalize(platform, account, kind, limit, retry_after_seconds,
                                       account_wide=(kind == DAILY), fallback_seconds=fallback_seconds)
        return _when(until)


def budget_for_url(redis_url: str | None, key_prefix: str = "crmsync:rl") -> RateBudget:
    """A shared budget on the Redis at ``redis_url``, or an in-process one when it is None."""
    if not redis_url:
        return RateBudget(None, key_prefix)
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5,
                                  health_check_interval=30)
    return RateBudget(client, key_prefix)


def budget_from_settings(settings: Any | None = None) -> RateBudget:
    """The budget the configuration asks for: ``settings.redis_url`` (CRMSYNC_REDIS_URL) or in-process."""
    if settings is None:
        from crmsync.settings import get_settings

        settings = get_settings()
    return budget_for_url(getattr(settings, "redis_url", None))


def apply_limit_overrides(defaults: Mapping[str, Limit], overrides: Any) -> dict[str, Limit]:
    """A CRM account's own limits, from its vault entry's "rate_limits": the string "none" turns
    our budget off for the account (a sandbox, a dedicated test portal); a mapping sets or removes
    (null) single kinds: {"standard": {"capacity": 190, "interval_seconds": 10}, "search": null}.
    A CRM plan's higher tiers are the usual reason."""
    if overrides is None:
        return dict(defaults)
    if overrides == "none":
        return {}
    if not isinstance(overrides, Mapping):
        raise InvalidLimit('rate_limits must be "none" or a mapping of kind -> limit')
    out = dict(defaults)
    for kind, spec in overrides.items():
        if spec is None:
            out.pop(kind, None)
        elif isinstance(spec, Mapping):
            try:
                out[kind] = Limit(int(spec["capacity"]), float(spec["interval_seconds"]))
            except (KeyError, TypeError, ValueError) as err:
                raise InvalidLimit(f"rate_limits.{kind}: needs capacity and interval_seconds ({err})") from None
        else:
            raise InvalidLimit(f"rate_limits.{kind}: expected a mapping or null")
    return out

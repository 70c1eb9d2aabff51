"""Seeded fault injection for the sandbox CRMs: server errors, latency, dropped connections, 429 storms.

How a platform plugs in: keep one ``FaultInjector`` per app; at the top of each API request call
``fault = serve_fault(injector, log, req, endpoint)``, which sleeps the added latency and drops the
connection itself; then ``fault.kind`` is one of ``None`` (serve normally), ``"error"`` (answer
``fault.status`` with the CRM's error body) or ``"rate_limited"`` (answer the CRM's own refusal).
Admin/_sandbox requests skip the injector. Same seed + same request order -> same
faults. Thread-safe; ``configure(**fields)`` changes knobs at run time.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .server import DropConnection


@dataclass
class FaultConfig:
    error_rate: float = 0.0            # share of requests answered with a 5xx
    error_statuses: tuple = (500, 502, 503)
    latency_ms: float = 0.0            # added to every request
    latency_jitter_ms: float = 0.0     # plus uniform [0, jitter)
    drop_rate: float = 0.0             # share of requests whose connection is closed without an answer
    rate_limit_rate: float = 0.0       # share of requests answered 429 regardless of the real limits
    storm_seconds: float = 0.0         # when set via configure(): every request is a 429 for this long
    seed: int = 0


@dataclass(frozen=True)
class Fault:
    kind: str | None = None   # None | "error" | "drop" | "rate_limited"
    status: int = 200
    delay: float = 0.0


NO_FAULT = Fault()


class FaultInjector:
    def __init__(self, config: FaultConfig | None = None, clock=time.monotonic):
        self.config = config or FaultConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._storm_until = 0.0
        self.injected = {"error": 0, "drop": 0, "rate_limited": 0, "delayed": 0}

    def configure(self, **changes) -> FaultConfig:
        known = {f.name for f in fields(FaultConfig)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            for key, value in changes.items():
                if key == "error_statuses":
                    value = tuple(int(v) for v in value)
                setattr(self.config, key, value)
            if "seed" in changes:
                self._rng = random.Random(self.config.seed)
            if changes.get("storm_seconds"):
                self._storm_until = self._clock() + float(changes["storm_seconds"])
            return self.config

    def configure_saved(self, saved: Mapping[str, Any], changes: Mapping[str, Any]) -> dict:
        """Apply `changes` now and return an app's saved fault settings (`saved`, what its reset
        restores) with them."""
        if changes:
            self.configure(**changes)
        return {**saved, **changes}

    def reset(self, settings: Mapping[str, Any] | None = None) -> None:
        """No faults (the seed kept), then `settings` (``FaultConfig`` fields) when given."""
        with self._lock:
            self.config = FaultConfig(seed=self.config.seed)
            self._rng = random.Random(self.config.seed)
            self._storm_until = 0.0
            self.injected = dict.fromkeys(self.injected, 0)
        if settings:
            self.configure(**settings)

    @property
    def active(self) -> bool:
        c = self.config
        return bool(c.error_rate or c.latency_ms or c.latency_jitter_ms or c.drop_rate
                    or c.rate_limit_rate or self._storm_until)

    def draw(self) -> Fault:
        if not self.active:  # the common case costs one attribute check
            return NO_FAULT
        with self._lock:
            c = self.config
            rng = self._rng
            delay = (c.latency_ms + (rng.random() * c.latency_jitter_ms if c.latency_jitter_ms else 0.0)) / 1000
            if delay:
                self.injected["delayed"] += 1
            if self._storm_until:
                if self._clock() < self._storm_until:
                    self.injected["rate_limited"] += 1
                    return Fault("rate_limited", 429, delay)
                self._storm_until = 0.0
            roll = rng.random()
            if roll < c.drop_rate:
                self.injected["drop"] += 1
                return Fault("drop", 0, delay)
            roll -= c.drop_rate
            if roll < c.error_rate:
                self.injected["error"] += 1
                return Fault("error", rng.choice(c.error_statuses), delay)
            roll -= c.error_rate
            if roll < c.rate_limit_rate:
                self.injected["rate_limited"] += 1
                return Fault("rate_limited", 429, delay)
            return Fault(None, 200, delay)

    def snapshot(self) -> dict:
        with self._lock:
            data = asdict(self.config)
            data["error_statuses"] = list(data["error_statuses"])
            data["storm_active"] = bool(self._storm_until and self._clock() < self._storm_until)
            data["injected"] = dict(self.injected)
            return data


def serve_fault(injector: FaultInjector, log: Any, req: Any = None, endpoint: str | None = None) -> Fault:
    """Draw this request's fault and do what every sandbox does with it alike: sleep the added
    latency, count an error or a drop in the request log (``log.faults``), and drop the connection
    (``DropConnection``), logged as status 0 when the request (``req``, its ``endpoint`` template)
    is given. The caller answers an ``"error"`` or ``"rate_limited"`` fault in its CRM's own shape."""
    fault = injector.draw()
    if fault.delay:
        time.sleep(fault.delay)
    if fault.kind in ("drop", "error"):
        log.faults += 1
    if fault.kind == "drop":
        if req is not None:
            log.record(req.method, endpoint or req.path, 0, req.path, req.query_string)
        raise DropConnection()
    return fault

"""Request log and counters for the sandbox CRMs, read back through ``GET /_sandbox/requests``.

How a platform plugs in: call ``log.record(method, endpoint, status, path=..., query=...)`` once per
API request, where ``endpoint`` is the route template (``"GET /crm/v3/objects/{type}"``) so
counts group by operation, not by id. ``snapshot()`` returns a JSON-ready dict. Thread-safe.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque


class RequestLog:
    def __init__(self, keep: int = 5000):
        self._lock = threading.Lock()
        self._entries: deque = deque(maxlen=keep)
        self.by_endpoint: Counter = Counter()
        self.by_status: Counter = Counter()
        self.total = 0
        self.rate_limited = 0   # 429s served, whatever the reason (real limit or injected storm)
        self.faults = 0         # injected 5xx/drops
        self.peaks: dict[str, int] = {}  # filled by the platform from its RollingWindow.peak values

    def record(self, method: str, endpoint: str, status: int, path: str = "", query: str = "",
               duration_ms: float = 0.0) -> None:
        with self._lock:
            self.total += 1
            self.by_endpoint[f"{method} {endpoint}" if not endpoint.startswith(method) else endpoint] += 1
            self.by_status[status] += 1
            if status == 429:
                self.rate_limited += 1
            self._entries.append({"t": time.time(), "method": method, "path": path, "query": query,
                                  "endpoint": endpoint, "status": status,
                                  "duration_ms": round(duration_ms, 3)})

    def entries(self, limit: int | None = None) -> list[dict]:
        with self._lock:
            items = list(self._entries)
        return items[-limit:] if limit else items

    def snapshot(self, entries: int = 100) -> dict:
        with self._lock:
            return {
                "total": self.total,
                "by_endpoint": dict(self.by_endpoint),
                "by_status": {str(k): v for k, v in self.by_status.items()},
                "rate_limited": self.rate_limited,
                "faults": self.faults,
                "peaks": dict(self.peaks),
                "entries": list(self._entries)[-entries:] if entries else [],
            }

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
            self.by_endpoint.clear()
            self.by_status.clear()
            self.total = self.rate_limited = self.faults = 0
            self.peaks = {}

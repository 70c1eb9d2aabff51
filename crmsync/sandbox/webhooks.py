"""Background webhook delivery for the sandbox CRMs: batching, retries on a short clock, duplicates
and out-of-order delivery on request. Never runs in the request path.

How a platform plugs in: build ``WebhookDispatcher(prepare)`` where
``prepare(url, events, attempt) -> (body_bytes, headers_dict)`` renders one POST for a batch of
events (HubSpot: a JSON array with ``attemptNumber`` and signature headers; Pipedrive: one event,
Basic auth, ``batch_size=1``). Then ``configure(url=..., batch_size=..., ...)``, ``enqueue(events)``
from request handlers, ``flush(timeout)`` in tests to wait until everything is delivered or given
up, ``deliveries()`` to read what was sent, ``stop()`` at shutdown. A delivery "fails" on a
connection error, a timeout or any non-2xx answer, and is retried up to ``max_retries`` times after
``retry_delay * 2**n`` seconds (+ seeded jitter). ``accept(response) -> bool`` replaces the 2xx test
when a CRM wants more of an answer (Salesforce Outbound Messages: an ``<Ack>true</Ack>``). Thread-safe.
A CRM with several senders keeps them in a ``DispatcherPool`` (one flush, log and counters for all).
"""
from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, fields

import requests


@dataclass
class WebhookSettings:
    url: str | None = None
    batch_size: int = 100           # HubSpot: up to 100 events per POST
    max_retries: int = 10           # HubSpot: 10 retries (over 24 h in real life)
    retry_delay: float = 0.05       # first retry after this many seconds, doubling each time
    max_retry_delay: float = 2.0
    timeout: float = 5.0            # HubSpot: an answer slower than 5 s counts as failed
    concurrency: int = 2
    duplicate_rate: float = 0.0     # share of successful batches that are sent a second time
    out_of_order: bool = False      # shuffle events inside a batch and hold some batches back
    batch_window: float = 0.01      # wait this long for more events before sending a batch
    seed: int = 0


@dataclass
class _Batch:
    events: list
    attempt: int = 0
    duplicate: bool = False


class WebhookDispatcher:
    def __init__(self, prepare: Callable[[str, list, int], tuple[bytes, dict]],
                 settings: WebhookSettings | None = None, keep: int = 2000,
                 accept: Callable[[requests.Response], bool] | None = None):
        self.prepare = prepare
        self.accept = accept or (lambda response: 200 <= response.status_code < 300)
        self.settings = settings or WebhookSettings()
        self._rng = random.Random(self.settings.seed)
        self._cond = threading.Condition()
        self._pending: list = []         # events not yet batched
        self._pending_since = 0.0
        self._heap: list = []            # (due, seq, _Batch)
        self._seq = itertools.count()
        self._in_flight = 0
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._log: list[dict] = []
        self._keep = keep
        self.counters = {"events": 0, "posts": 0, "succeeded": 0, "failed_attempts": 0, "given_up": 0,
                         "duplicates": 0}
        self._local = threading.local()

    # ----- control -------------------------------------------------------------------------
    def configure(self, **changes) -> WebhookSettings:
        known = {f.name for f in fields(WebhookSettings)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown webhook settings: {sorted(unknown)}")
        with self._cond:
            for key, value in changes.items():
                setattr(self.settings, key, value)
            if "seed" in changes:
                self._rng = random.Random(self.settings.seed)
            self._cond.notify_all()
        return self.settings

    def snapshot(self) -> dict:
        with self._cond:
            data = asdict(self.settings)
            data["counters"] = dict(self.counters)
            data["queued_events"] = len(self._pending) + sum(len(b.events) for _, _, b in self._heap)
            return data

    def _ensure_threads(self) -> None:
        alive = [t for t in self._threads if t.is_alive()]
        while len(alive) < max(1, self.settings.concurrency):
            t = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
            t.start()
            alive.append(t)
        self._threads = alive

    def enqueue(self, events: list[dict]) -> None:
        """Queue events for delivery; no-op (events dropped) when no URL is configured."""
        if not events:
            return
        with self._cond:
            if not self.settings.url or self._stopped:
                return
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.extend(events)
            self.counters["events"] += len(events)
            self._ensure_threads()
            self._cond.notify_all()

    def clear(self) -> None:
        """Drop queued work and the delivery log (sandbox reset)."""
        with self._cond:
            self._pending.clear()
            self._heap.clear()
            self._log.clear()
            self.counters = dict.fromkeys(self.counters, 0)
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued, waiting or in flight. True if drained in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._heap or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(2)
        self._threads = []

    def deliveries(self, limit: int | None = None) -> list[dict]:
        with self._cond:
            items = list(self._log)
        return items[-limit:] if limit else items

    # ----- worker --------------------------------------------------------------------------
    def _next_batch(self):
        """Called with the lock held: the next due batch, or the seconds to wait."""
        s = self.settings
        now = time.monotonic()
        if self._pending and (len(self._pending) >= s.batch_size
                              or now - self._pending_since >= s.batch_window):
            events = self._pending[: s.batch_size]
            del self._pending[: s.batch_size]
            self._pending_since = now
            if s.out_of_order:
                self._rng.shuffle(events)
                if self._rng.random() < 0.5:  # hold this batch back so a later one overtakes it
                    heapq.heappush(self._heap, (now + s.batch_window * 5, next(self._seq), _Batch(events)))
                    return None, 0.0
            return _Batch(events), 0.0
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2], 0.0
        waits = [0.5]
        if self._pending:
            waits.append(self._pending_since + s.batch_window - now)
        if self._heap:
            waits.append(self._heap[0][0] - now)
        return None, max(0.001, min(waits))

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    batch, wait = self._next_batch()
                    if batch is not None:
                        self._in_flight += 1
                        break
                    if wait:
                        self._cond.wait(wait)
                url = self.settings.url
            try:
                ok, status, error = self._post(url, batch)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._after(batch, url, ok, status, error)
                    self._cond.notify_all()

    def _post(self, url: str | None, batch: _Batch):
        if not url:
            return False, None, "no webhook url"
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        try:
            body, headers = self.prepare(url, batch.events, batch.attempt)
            headers = {"Content-Type": "application/json", **headers}
            resp = session.post(url, data=body, headers=headers, timeout=self.settings.timeout)
            return self.accept(resp), resp.status_code, None
        except requests.RequestException as exc:
            session.close()
            self._local.session = None
            return False, None, type(exc).__name__

    def _after(self, batch: _Batch, url, ok: bool, status, error) -> None:
        s = self.settings
        self.counters["posts"] += 1
        self._log.append({"t": time.time(), "url": url, "events": len(batch.events), "attempt": batch.attempt,
                          "status": status, "ok": ok, "error": error, "duplicate": batch.duplicate})
        if len(self._log) > self._keep:
            del self._log[: len(self._log) - self._keep]
        now = time.monotonic()
        if ok:
            self.counters["succeeded"] += 1
            if not batch.duplicate and s.duplicate_rate and self._rng.random() < s.duplicate_rate:
                self.counters["duplicates"] += 1
                heapq.heappush(self._heap, (now + s.batch_window, next(self._seq),
                                            _Batch(batch.events, batch.attempt, duplicate=True)))
            return
        self.counters["failed_attempts"] += 1
        if batch.attempt >= s.max_retries or self._stopped:
            self.counters["given_up"] += 1
            return
        delay = min(s.max_retry_delay, s.retry_delay * (2 ** batch.attempt)) * (0.5 + self._rng.random())
        heapq.heappush(self._heap, (now + delay, next(self._seq),
                                    _Batch(batch.events, batch.attempt + 1, batch.duplicate)))


class DispatcherPool:
    """Dispatchers by key, observed and reset together: Pipedrive keeps one per registered webhook,
    Salesforce one per outbound message (one sObject type each). Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_key: dict[Hashable, WebhookDispatcher] = {}

    def get(self, key: Hashable, create: Callable[[], WebhookDispatcher], *,
            stale: Callable[[WebhookDispatcher], bool] | None = None) -> WebhookDispatcher:
        """The key's dispatcher; made by `create` when there is none, or when `stale` says the one
        there no longer fits (it is stopped)."""
        with self._lock:
            d = self._by_key.get(key)
            if d is None or (stale is not None and stale(d)):
                if d is not None:
                    d.stop()
                d = self._by_key[key] = create()
            return d

    def find(self, key: Hashable) -> WebhookDispatcher | None:
        with self._lock:
            return self._by_key.get(key)

    def _all(self) -> list[tuple[Hashable, WebhookDispatcher]]:
        with self._lock:
            return list(self._by_key.items())

    def configure(self, **changes) -> None:
        for _, d in self._all():
            d.configure(**changes)

    def discard(self, key: Hashable) -> None:
        """Stop the key's dispatcher; what it still held is dropped."""
        with self._lock:
            d = self._by_key.pop(key, None)
        if d is not None:
            d.clear()
            d.stop()

    def reset(self) -> None:
        """Stop every dispatcher and drop what they held (sandbox reset)."""
        with self._lock:
            dispatchers, self._by_key = list(self._by_key.values()), {}
        for d in dispatchers:
            d.clear()
            d.stop()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every dispatcher has delivered or given up; True if all drained in time."""
        deadline = time.monotonic() + timeout
        return all(d.flush(max(0.0, deadline - time.monotonic())) for _, d in self._all())

    def deliveries(self, key_name: str) -> list[dict]:
        """Every dispatcher's delivery log, oldest first, each entry naming its key as `key_name`."""
        return sorted(({**e, key_name: key} for key, d in self._all() for e in d.deliveries()), key=lambda e: e["t"])

    def counters(self) -> dict[str, int]:
        """The dispatchers' counters, summed."""
        total: dict[str, int] = {}
        for _, d in self._all():
            for k, v in d.snapshot()["counters"].items():
                total[k] = total.get(k, 0) + v
        return total

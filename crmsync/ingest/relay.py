"""The ingest app's outbox relay: one thread per process that publishes what requests committed.

A request commits its rows, hands their ids here and answers: it never waits on the broker, whose
publish (with Flower's task-sent event) cost more than the rest of a webhook request. The relay
lingers up to 50 ms after the first hand-off and sends what arrived meanwhile together, so under
load one `crmsync.events.split` message carries many deliveries (the events then wait the
coalescing delay, CRMSYNC_INGEST_COALESCE_SECONDS, anyway). Without a broker the relay runs the
tasks itself (the inline runner), so CRM fetches never run inside a request either.

A hand-off lost with its process (killed between commit and publish; a clean exit flushes first)
loses no work: the rows are committed, and the outbox sweeper re-enqueues whatever is still pending
after CRMSYNC_OUTBOX_AFTER_SECONDS.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time

from crmsync.ingest.store import enqueue_each, enqueue_together

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, *, together: frozenset[str] = frozenset(), max_batch: int = 500, linger: float = 0.05):
        self.together = together        # tasks that take any number of ids in one message
        self.max_batch = max_batch
        self.linger = linger
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def put(self, task: str, ids: list[str]) -> None:
        if not ids:
            return
        with self._idle:
            self._pending += 1
            # Started lazily, and again in a forked child (gunicorn --preload forks after create_app).
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="ingest-outbox-relay", daemon=True)
                self._thread.start()
                # A worker told to stop (gunicorn exits through sys.exit) hands over what it holds first.
                atexit.register(self.flush, 5.0)
        self._queue.put((task, list(ids)))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed over has been published (or run, inline). False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Sleep rather than wait on the queue: hand-offs made meanwhile do not wake this thread
            # one by one (each wake-up takes the GIL from a request being served).
            time.sleep(self.linger)
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._publish(batch)
            except Exception:  # the thread must live on; the sweeper covers these rows
                log.exception("the outbox relay could not publish %d hand-off(s)", len(batch))
            finally:
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()

    def _publish(self, batch: list[tuple[str, list[str]]]) -> None:
        by_task: dict[str, list[str]] = {}
        for task, ids in batch:
            by_task.setdefault(task, []).extend(ids)
        for task, ids in by_task.items():
            if task in self.together:
                enqueue_together(task, ids)
            else:
                enqueue_each(task, ids)

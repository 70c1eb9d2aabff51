"""The inline runner: tasks run in the calling process when no broker is configured (`make demo`,
`crmsync sync run --inline`).

Tasks run in this thread, in FIFO order among those due: `submit` appends and only the outermost
call drains, so a task enqueueing its successor (a chain of pages) never recurses. Errors are
classified as under Celery (`crmsync.tasks.retry`); a countdown is a bounded sleep here.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from crmsync.tasks.execution import describe, execute, fail_permanently
from crmsync.tasks.retry import classify

log = logging.getLogger("crmsync.tasks")

# Inline, a countdown is a sleep in the caller's process: bounded.
INLINE_MAX_WAIT_SECONDS = 120.0


class InlineRunner:
    """Runs tasks in this thread, in FIFO order among those due. `submit` appends; only the
    outermost call drains, so a task enqueueing its successor never recurses."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self._local = threading.local()
        self.sleep = sleep
        self.clock = clock

    def _state(self):
        st = self._local
        if not hasattr(st, "queue"):
            st.queue = deque()
            st.draining = False
        return st

    @property
    def pending(self) -> int:
        return len(self._state().queue)

    def submit(self, name: str, ids: tuple[str, ...], countdown: float | None = None, attempt: int = 0) -> None:
        st = self._state()
        if countdown is not None and countdown > INLINE_MAX_WAIT_SECONDS:
            # Hours away (a spent daily quota): the state is in PostgreSQL (paused_until); the
            # sweeper or the next run picks it up. Sleeping that long would hang the caller.
            log.warning("inline: %s deferred %.0f s; not waiting for it", describe(name, ids), countdown)
            return
        st.queue.append((self.clock() + (countdown or 0.0), name, ids, attempt))
        if not st.draining:
            self.drain()

    def drain(self) -> None:
        st = self._state()
        st.draining = True
        outer = getattr(_draining, "runner", None)
        _draining.runner = self  # what the running tasks enqueue comes back to this runner
        try:
            while st.queue:
                item = self._next_due(st.queue)
                if item is None:
                    wait = min(due for due, *_ in st.queue) - self.clock()
                    self.sleep(min(max(wait, 0.0), INLINE_MAX_WAIT_SECONDS))
                    continue
                self._run(*item)
        finally:
            st.draining = False
            _draining.runner = outer

    def _next_due(self, queue: deque):
        now = self.clock()
        for index, item in enumerate(queue):
            if item[0] <= now:
                del queue[index]
                return item
        return None

    def _run(self, _due: float, name: str, ids: tuple[str, ...], attempt: int) -> None:
        try:
            execute(name, ids)
        except Exception as exc:  # noqa: BLE001  every error is classified: retry or fail for good
            decision = classify(exc, attempt)
            if decision.action == "retry":
                log.info("inline: retrying %s in %.1f s (%s)", describe(name, ids), decision.delay, decision.reason)
                # a backoff is bounded here (the caller is waiting); a rate wait beyond the bound is
                # left to the job's own state in PostgreSQL (see submit)
                delay = min(decision.delay, INLINE_MAX_WAIT_SECONDS) if decision.counts else decision.delay
                self.submit(name, ids, delay, attempt + (1 if decision.counts else 0))
            else:
                fail_permanently(name, ids, decision.reason)


_inline = InlineRunner()
_draining = threading.local()


def inline_runner() -> InlineRunner:
    """The runner `enqueue` submits to: the one draining in this thread, else the process's."""
    return getattr(_draining, "runner", None) or _inline

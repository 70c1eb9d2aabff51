"""One OAuth refresh at a time per CRM account, across every worker.

A Redis lock when a Redis client is given (every process on every host), else a process-wide
threading lock per name. The platforms that refresh OAuth tokens (HubSpot, Salesforce, Pipedrive)
take it around their token call, and re-check the token once inside: whoever waited finds it fresh."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crmsync.platforms.errors import TransientError

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 30.0           # a refresh that takes longer than this has failed
_local_locks: dict[str, threading.Lock] = {}
_local_locks_guard = threading.Lock()


@contextmanager
def one_at_a_time(name: str, redis_client: Any = None, *, platform: str,
                  timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    if redis_client is not None:
        lock = redis_client.lock(name, timeout=timeout, blocking_timeout=timeout)
        acquired = lock.acquire()
    else:
        with _local_locks_guard:
            lock = _local_locks.setdefault(name, threading.Lock())
        acquired = lock.acquire(timeout=timeout)
    if not acquired:
        raise TransientError("timed out waiting for another worker's OAuth refresh", platform=platform)
    try:
        yield
    finally:
        try:
            lock.release()
        except Exception:  # a Redis lock that expired mid-refresh: nothing left to release
            log.warning("lock %s expired before release", name, exc_info=True)

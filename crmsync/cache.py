"""A small TTL cache for CRM metadata that rarely changes (properties, pipelines and stages,
Pipedrive field definitions, owners) — the original design's caching section. Redis when configured, so
every worker shares one copy; a process-local dict otherwise. A Redis that does not answer is a
miss (the metadata is loaded from the CRM, through its rate budget), never a failed sync."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class MetadataCache:
    def __init__(self, redis_client=None, *, prefix: str = "crmsync:cache", default_ttl: float = 300.0):
        self.redis = redis_client
        self.prefix = prefix
        self.default_ttl = default_ttl
        self._local: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def get(self, key: str) -> Any | None:
        if self.redis is not None:
            from redis import RedisError  # here, not at the top: a process without Redis never loads it
            try:
                raw = self.redis.get(self._key(key))
            except RedisError as err:
                log.warning("metadata cache unavailable (%s): loading %s", type(err).__name__, key)
                return None
            return None if raw is None else json.loads(raw)
        with self._lock:
            hit = self._local.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._local.pop(key, None)
                return None
            return hit[1]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        ttl = self.default_ttl if ttl is None else ttl
        if self.redis is not None:
            from redis import RedisError
            try:
                self.redis.set(self._key(key), json.dumps(value), px=int(ttl * 1000))
            except RedisError as err:
                log.warning("metadata cache unavailable (%s): %s not kept", type(err).__name__, key)
            return
        with self._lock:
            self._local[key] = (time.monotonic() + ttl, value)

    def get_or_load(self, key: str, load: Callable[[], Any], ttl: float | None = None) -> Any:
        value = self.get(key)
        if value is None:
            value = load()
            self.set(key, value, ttl)
        return value

    def invalidate(self, key: str) -> None:
        if self.redis is not None:
            self.redis.delete(self._key(key))
        with self._lock:
            self._local.pop(key, None)

"""All configuration, read once from CRMSYNC_* environment variables.

Unset broker: tasks run inline in the calling process. Unset Redis: the rate limiter, locks and
caches live in the process. The database defaults to a SQLite file under `.crmsync/` (the
embedded default, for `make demo`); PostgreSQL via `postgresql+psycopg://`.
A bad value stops start-up with a `SettingsError` naming the variable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from crmsync.errors import Fatal


class SettingsError(Fatal, ValueError):
    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def _url(var: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
    if not value:
        return None
    scheme = urlparse(value).scheme
    if scheme not in schemes:
        raise SettingsError(var, f"expected a URL starting with one of {', '.join(s + '://' for s in schemes)}")
    return value


def _number(var: str, value: str | None, default: float, *, minimum: float = 0, integer: bool = False):
    if value is None or value == "":
        return default
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        raise SettingsError(var, f"expected a {'whole ' if integer else ''}number, got {value!r}") from None
    if number < minimum:
        raise SettingsError(var, f"must be at least {minimum}, got {value!r}")
    return number


def _bool(var: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(var, f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str | None
    redis_url: str | None
    secret_key: str | None = None
    cron_secret: str | None = None
    home: str = ".crmsync"
    log_level: str = "INFO"
    # Sync behaviour
    # Records per unit of work: one transaction, one checkpoint, ten HubSpot list pages. Larger
    # units write faster (fewer commits and lookups per record); at this size a unit takes a
    # second or two against the real API, short enough for tenants to interleave on the workers.
    page_size: int = 1000
    max_delete_share: float = 0.5          # a run deleting more than this share of a tenant's rows stops
    search_lookback_seconds: float = 300.0  # catch records HubSpot's search index shows late
    outbox_after_seconds: float = 60.0     # the sweeper re-enqueues work unprocessed this long
    automation_max_depth: int = 3
    webhook_max_body_bytes: int = 1_048_576
    webhook_tolerance_seconds: float = 300.0
    task_time_limit: int = 300             # under the broker's visibility timeout
    visibility_timeout: int = 3600
    worker_metrics_port: int = 0           # a worker host's GET /metrics (0: none)
    # Beat
    dispatch_every_seconds: float = 5.0    # how often beat claims due configs
    sweep_every_seconds: float = 30.0      # how often the outbox sweeper runs
    # Ingest app
    ingest_proxy_hops: int = 0             # trusted X-Forwarded-* hops (0: use the request as received)
    ingest_public_url: str | None = None   # the URL the CRMs call, when a proxy rewrites it
    ingest_coalesce_seconds: float = 0.25  # delay CRM event processing so a burst shares one fetch

    @property
    def inline(self) -> bool:
        """No broker: tasks run in the calling process."""
        return self.broker_url is None

    def redacted(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("secret_key", "cron_secret") and value:
                value = "***"
            elif isinstance(value, str) and "@" in value and "://" in value:
                parsed = urlparse(value)
                if parsed.password:
                    value = value.replace(f":{parsed.password}@", ":***@")
            out[f.name] = value
        return out


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    home = env.get("CRMSYNC_HOME") or ".crmsync"
    database_url = env.get("CRMSYNC_DATABASE_URL") or f"sqlite:///{Path(home).resolve() / 'crmsync.db'}"
    _url("CRMSYNC_DATABASE_URL", database_url, ("sqlite", "postgresql+psycopg", "postgresql"))
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    level = (env.get("CRMSYNC_LOG_LEVEL") or "INFO").upper()
    if level not in LEVELS:
        raise SettingsError("CRMSYNC_LOG_LEVEL", f"expected one of {', '.join(LEVELS)}")
    share = _number("CRMSYNC_MAX_DELETE_SHARE", env.get("CRMSYNC_MAX_DELETE_SHARE"), 0.5)
    if share > 1:
        raise SettingsError("CRMSYNC_MAX_DELETE_SHARE", "is a share between 0 and 1")
    page_size = _number("CRMSYNC_PAGE_SIZE", env.get("CRMSYNC_PAGE_SIZE"), 1000, minimum=1, integer=True)
    public_url = _url("CRMSYNC_INGEST_PUBLIC_URL", env.get("CRMSYNC_INGEST_PUBLIC_URL"), ("http", "https"))
    coalesce = _number("CRMSYNC_INGEST_COALESCE_SECONDS", env.get("CRMSYNC_INGEST_COALESCE_SECONDS"), 0.25)
    if coalesce > 60:
        raise SettingsError("CRMSYNC_INGEST_COALESCE_SECONDS", "must be between 0 and 60 seconds")
    metrics_port = _number("CRMSYNC_WORKER_METRICS_PORT", env.get("CRMSYNC_WORKER_METRICS_PORT"), 0, integer=True)
    if metrics_port > 65535:
        raise SettingsError("CRMSYNC_WORKER_METRICS_PORT", f"expected a TCP port (0: none), got {metrics_port}")
    return Settings(
        dispatch_every_seconds=_number("CRMSYNC_DISPATCH_EVERY_SECONDS", env.get("CRMSYNC_DISPATCH_EVERY_SECONDS"),
                                       5.0, minimum=0.5),
        sweep_every_seconds=_number("CRMSYNC_SWEEP_EVERY_SECONDS", env.get("CRMSYNC_SWEEP_EVERY_SECONDS"), 30.0,
                                    minimum=1),
        ingest_proxy_hops=_number("CRMSYNC_INGEST_PROXY_HOPS", env.get("CRMSYNC_INGEST_PROXY_HOPS"), 0, integer=True),
        ingest_public_url=public_url,
        ingest_coalesce_seconds=coalesce,
        database_url=database_url,
        broker_url=_url("CRMSYNC_BROKER_URL", env.get("CRMSYNC_BROKER_URL"),
                        ("redis", "rediss", "amqp", "memory")),
        redis_url=_url("CRMSYNC_REDIS_URL", env.get("CRMSYNC_REDIS_URL"), ("redis", "rediss", "unix")),
        secret_key=env.get("CRMSYNC_SECRET_KEY") or None,
        cron_secret=env.get("CRMSYNC_CRON_SECRET") or None,
        home=home,
        log_level=level,
        page_size=page_size,
        max_delete_share=share,
        search_lookback_seconds=_number("CRMSYNC_SEARCH_LOOKBACK_SECONDS",
                                        env.get("CRMSYNC_SEARCH_LOOKBACK_SECONDS"), 300.0),
        outbox_after_seconds=_number("CRMSYNC_OUTBOX_AFTER_SECONDS", env.get("CRMSYNC_OUTBOX_AFTER_SECONDS"), 60.0),
        automation_max_depth=_number("CRMSYNC_AUTOMATION_MAX_DEPTH", env.get("CRMSYNC_AUTOMATION_MAX_DEPTH"),
                                     3, minimum=1, integer=True),
        webhook_max_body_bytes=_number("CRMSYNC_WEBHOOK_MAX_BODY_BYTES", env.get("CRMSYNC_WEBHOOK_MAX_BODY_BYTES"),
                                       1_048_576, minimum=1024, integer=True),
        webhook_tolerance_seconds=_number("CRMSYNC_WEBHOOK_TOLERANCE_SECONDS",
                                          env.get("CRMSYNC_WEBHOOK_TOLERANCE_SECONDS"), 300.0, minimum=1),
        task_time_limit=_number("CRMSYNC_TASK_TIME_LIMIT", env.get("CRMSYNC_TASK_TIME_LIMIT"), 300,
                                minimum=1, integer=True),
        visibility_timeout=_number("CRMSYNC_VISIBILITY_TIMEOUT", env.get("CRMSYNC_VISIBILITY_TIMEOUT"), 3600,
                                   minimum=1, integer=True),
        worker_metrics_port=metrics_port,
    )


@cache
def get_settings() -> Settings:
    settings = load_settings()
    if settings.task_time_limit >= settings.visibility_timeout:
        raise SettingsError("CRMSYNC_TASK_TIME_LIMIT", "must be below CRMSYNC_VISIBILITY_TIMEOUT, or Redis "
                            "redelivers a task that is still running")
    return settings

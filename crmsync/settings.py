"""All configuration, read once from CRMSYNC_* environment variables.

Unset broker: tasks run inline in the calling process. Unset Redis: the rate limiter, locks and
caches live in the process. The database defaults to a SQLite file under `.crmsync/` (the
embedded default, for `make demo`); PostgreSQL via `postgresql+psycopg://`.
A bad value stops start-up with a `SettingsError` naming the variable.
"""
from __future__ import annotations

import logging
import math
import os
import sys
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


def _number(env: dict[str, str], var: str, default: float, *, minimum: float = 0, maximum: float,
            integer: bool = False):
    """A finite number in [minimum, maximum]: `nan` compares false with every bound and `inf` turns
    a limit into none, so either would quietly switch off the safety the setting is for."""
    value = env.get(var)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        raise SettingsError(var, f"expected a {'whole ' if integer else ''}number, got {value[:40]!r}") from None
    if not math.isfinite(number) or not minimum <= number <= maximum:
        raise SettingsError(var, f"must be a number from {minimum:g} to {maximum:g}, got {value[:40]!r}")
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
    task_max_deaths: int = 3               # a task whose worker process died this often fails for good
    visibility_timeout: int = 3600
    worker_metrics_port: int = 0           # a worker host's GET /metrics (0: none)
    # Beat
    dispatch_every_seconds: float = 5.0    # how often beat claims due configs
    sweep_every_seconds: float = 30.0      # how often the outbox sweeper runs
    # Ingest app
    ingest_proxy_hops: int = 0             # trusted X-Forwarded-* hops (0: use the request as received)
    ingest_public_url: str | None = None   # the URL the CRMs call, when a proxy rewrites it
    ingest_coalesce_seconds: float = 0.25  # delay CRM event processing so a burst shares one fetch
    # Operations console
    console_session_minutes: float = 60.0  # a console session ends after this long without a request
    console_secure_cookies: bool = False   # the session cookie only over HTTPS (set it behind TLS)

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
    level = (env.get("CRMSYNC_LOG_LEVEL") or "INFO").strip().upper()
    if level not in LEVELS:
        raise SettingsError("CRMSYNC_LOG_LEVEL", f"expected one of {', '.join(LEVELS)}")
    public_url = _url("CRMSYNC_INGEST_PUBLIC_URL", env.get("CRMSYNC_INGEST_PUBLIC_URL"), ("http", "https"))
    day = 86_400
    return Settings(
        dispatch_every_seconds=_number(env, "CRMSYNC_DISPATCH_EVERY_SECONDS", 5.0, minimum=0.5, maximum=3600),
        sweep_every_seconds=_number(env, "CRMSYNC_SWEEP_EVERY_SECONDS", 30.0, minimum=1, maximum=3600),
        ingest_proxy_hops=_number(env, "CRMSYNC_INGEST_PROXY_HOPS", 0, maximum=10, integer=True),
        ingest_public_url=public_url,
        ingest_coalesce_seconds=_number(env, "CRMSYNC_INGEST_COALESCE_SECONDS", 0.25, maximum=60),
        console_session_minutes=_number(env, "CRMSYNC_CONSOLE_SESSION_MINUTES", 60.0, minimum=1, maximum=7 * 24 * 60),
        console_secure_cookies=_bool("CRMSYNC_CONSOLE_SECURE_COOKIES", env.get("CRMSYNC_CONSOLE_SECURE_COOKIES"), False),
        database_url=database_url,
        broker_url=_url("CRMSYNC_BROKER_URL", env.get("CRMSYNC_BROKER_URL"),
                        ("redis", "rediss", "amqp", "memory")),
        redis_url=_url("CRMSYNC_REDIS_URL", env.get("CRMSYNC_REDIS_URL"), ("redis", "rediss", "unix")),
        secret_key=env.get("CRMSYNC_SECRET_KEY") or None,
        cron_secret=env.get("CRMSYNC_CRON_SECRET") or None,
        home=home,
        log_level=level,
        page_size=_number(env, "CRMSYNC_PAGE_SIZE", 1000, minimum=1, maximum=100_000, integer=True),
        max_delete_share=_number(env, "CRMSYNC_MAX_DELETE_SHARE", 0.5, maximum=1),
        search_lookback_seconds=_number(env, "CRMSYNC_SEARCH_LOOKBACK_SECONDS", 300.0, maximum=day),
        outbox_after_seconds=_number(env, "CRMSYNC_OUTBOX_AFTER_SECONDS", 60.0, minimum=1, maximum=day),
        automation_max_depth=_number(env, "CRMSYNC_AUTOMATION_MAX_DEPTH", 3, minimum=1, maximum=20, integer=True),
        webhook_max_body_bytes=_number(env, "CRMSYNC_WEBHOOK_MAX_BODY_BYTES", 1_048_576, minimum=1024,
                                       maximum=64 * 1_048_576, integer=True),
        # HubSpot refuses v3 timestamps older than 5 minutes; this can only narrow that window.
        webhook_tolerance_seconds=_number(env, "CRMSYNC_WEBHOOK_TOLERANCE_SECONDS", 300.0, minimum=1, maximum=300),
        task_time_limit=_number(env, "CRMSYNC_TASK_TIME_LIMIT", 300, minimum=1, maximum=7 * day, integer=True),
        task_max_deaths=_number(env, "CRMSYNC_TASK_MAX_DEATHS", 3, minimum=1, maximum=100, integer=True),
        visibility_timeout=_number(env, "CRMSYNC_VISIBILITY_TIMEOUT", 3600, minimum=1, maximum=7 * day,
                                   integer=True),
        worker_metrics_port=_number(env, "CRMSYNC_WORKER_METRICS_PORT", 0, maximum=65535, integer=True),
    )


def configure_logging(settings: Settings) -> None:
    """CRMSYNC_LOG_LEVEL for crmsync's own loggers. A process that set up logging already (Celery,
    gunicorn) keeps its handlers; otherwise records go to stderr (stdout is for --json)."""
    logging.getLogger("crmsync").setLevel(settings.log_level)
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cache
def get_settings() -> Settings:
    settings = load_settings()
    if settings.task_time_limit >= settings.visibility_timeout:
        raise SettingsError("CRMSYNC_TASK_TIME_LIMIT", "must be below CRMSYNC_VISIBILITY_TIMEOUT, or Redis "
                            "redelivers a task that is still running")
    return settings

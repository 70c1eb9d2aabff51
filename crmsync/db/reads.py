"""A read path without SQLAlchemy, for the start-up of read-only commands (`crmsync jobs list`,
`crmsync conflicts list`) and for what `crmsync sync run --inline` reads before its first CRM request.

Importing SQLAlchemy and declaring the ORM models costs a command ~0.3 s before its first query,
more than a list of a few rows should take in all. So this module opens a plain DB-API connection
from the same CRMSYNC_DATABASE_URL — psycopg with the parameters SQLAlchemy's psycopg dialect
would pass, or the standard library's sqlite3 for the embedded default — runs one SELECT with
bound parameters, and decodes the values as the ORM's column types do (`crmsync.db.types`, `Uuid`):
ids as UUID strings, datetimes as aware UTC, JSON as Python values, booleans as bool.

Only reads belong here, and only what such a start needs. Every write goes through SQLAlchemy
(`crmsync.db.session_scope` and the models), with its defaults, checks and after-commit hooks.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from contextlib import closing
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from crmsync.entities import ENTITY_PLURALS

# The columns of crm_sync_jobs a job's view shows (`crmsync.sync.job_view`); each is also the
# SyncJob attribute of the same name.
SYNC_JOB_COLUMNS = ("id", "tenant_id", "sync_config_id", "status", "trigger", "full", "counts", "error",
                    "paused_until", "steps_total", "steps_done", "created_at", "started_at", "finished_at",
                    "lease_owner", "lease_expires_at")
# The columns of crm_conflict_records a conflict's view shows (`crmsync.sync.conflict_view`); each
# is also the ConflictRecord attribute of the same name.
CONFLICT_COLUMNS = ("id", "tenant_id", "config_id", "platform", "entity_type", "entity_id", "external_id",
                    "local_snapshot", "remote_snapshot", "base_snapshot", "conflicting_fields", "status",
                    "resolution", "created_at", "resolved_at")
# How many conflicts a list shows (`crmsync.sync.conflicts.list_conflicts` too).
CONFLICT_LIST_LIMIT = 200
# How a column of any statement here is decoded, by its name (a name means one thing in every table).
_IDS = frozenset({"id", "tenant_id", "sync_config_id", "credentials_vault_id", "vault_tenant_id", "config_id",
                  "entity_id"})
_TIMES = frozenset({"paused_until", "created_at", "started_at", "finished_at", "lease_expires_at", "synced_until",
                    "resolved_at"})
_JSON = frozenset({"counts", "field_mappings", "cursor", "local_snapshot", "remote_snapshot", "base_snapshot",
                   "conflicting_fields", "resolution"})
_BOOLS = frozenset({"full", "enabled", "sync_companies", "sync_contacts", "sync_deals", "sync_activities",
                    "sync_tasks"})

UPGRADE_HINT = "the database is not migrated (run `crmsync db upgrade`)"


class ReadError(Exception):
    """The database did not answer: unreachable, refused login, ... `str()` is one line."""


# SYNC_JOB_COLUMNS in order (`trigger` and `full` are keywords in SQLite and PostgreSQL); bound
# parameters only, never values in the text.
_JOBS = ('SELECT id, tenant_id, sync_config_id, status, "trigger", "full", counts, error, paused_until, '
         'steps_total, steps_done, created_at, started_at, finished_at, lease_owner, lease_expires_at '
         'FROM crm_sync_jobs ')
RECENT_JOBS = _JOBS + "ORDER BY created_at DESC LIMIT %s"
RECENT_JOBS_OF_CONFIG = _JOBS + "WHERE sync_config_id = %s ORDER BY created_at DESC LIMIT %s"
ONE_JOB = _JOBS + "WHERE id = %s"
JOB_STEPS = ("SELECT kind, entity_type, status, pages, attempts, error FROM crm_sync_job_steps "
             "WHERE job_id = %s ORDER BY position")

# CONFLICT_COLUMNS in order, newest first, as `crmsync.sync.conflicts.list_conflicts` selects them:
# one statement for each filter given (tenant, status), so the text never holds a value.
_CONFLICTS = ("SELECT id, tenant_id, config_id, platform, entity_type, entity_id, external_id, local_snapshot, "
              "remote_snapshot, base_snapshot, conflicting_fields, status, resolution, created_at, resolved_at "
              "FROM crm_conflict_records ")
_NEWEST = "ORDER BY created_at DESC LIMIT %s"
RECENT_CONFLICTS = {(False, False): _CONFLICTS + _NEWEST,
                    (True, False): _CONFLICTS + "WHERE tenant_id = %s " + _NEWEST,
                    (False, True): _CONFLICTS + "WHERE status = %s " + _NEWEST,
                    (True, True): _CONFLICTS + "WHERE tenant_id = %s AND status = %s " + _NEWEST}


# What `sync run --inline` needs to foresee its job's first pull (`crmsync.sync.read_ahead`). The
# vault entry is joined on the config's own tenant: a config never opens another tenant's secret.
CONFIG_FOR_PULL = ("SELECT c.id, c.tenant_id, c.platform, c.api_base_url, c.account_id, c.field_mappings, "
                   "c.credentials_vault_id, c.sync_direction, c.enabled, c.sync_companies, c.sync_contacts, "
                   "c.sync_deals, c.sync_activities, c.sync_tasks, v.tenant_id AS vault_tenant_id, v.ciphertext "
                   "FROM crm_sync_configs c LEFT JOIN crm_credentials_vault v "
                   "ON v.id = c.credentials_vault_id AND v.tenant_id = c.tenant_id WHERE c.id = %s")
# crmsync.db.models.JOB_ACTIVE_STATUSES, written out (that module loads SQLAlchemy); a test holds them equal.
JOB_ACTIVE_STATUSES = ("queued", "running", "waiting_quota")
ACTIVE_JOBS_OF_CONFIG = ("SELECT count(*) AS active FROM crm_sync_jobs WHERE sync_config_id = %s "
                         "AND status IN (%s, %s, %s)")
CHECKPOINTS_OF_CONFIG = "SELECT entity_type, cursor, synced_until FROM crm_sync_checkpoints WHERE config_id = %s"


def first_pull_plan(config_id: str, entity_order: tuple[str, ...], url: str | None = None) -> dict[str, Any] | None:
    """The config's adapter settings, its sealed vault entry (None unless the config's tenant
    owns it), whether a job of it is active, its first enabled entity in `entity_order` and that
    entity's checkpoint ({cursor, synced_until} or None), read on one connection. None when no
    config has the id; ValueError for an id that is not a UUID."""
    key = uuid.UUID(config_id)
    configs, active, checkpoints = _select_all(
        [(CONFIG_FOR_PULL, [key]), (ACTIVE_JOBS_OF_CONFIG, [key, *JOB_ACTIVE_STATUSES]), (CHECKPOINTS_OF_CONFIG, [key])], url)
    if not configs:
        return None
    plan = dict(configs[0])
    plan["active_job"] = bool(active[0]["active"])
    plan["sealed"] = bytes(plan.pop("ciphertext")) if plan["vault_tenant_id"] else None
    plan["entity"] = next((e for e in entity_order if plan[f"sync_{ENTITY_PLURALS[e]}"]), None)
    plan["checkpoint"] = next(({"cursor": c["cursor"], "synced_until": c["synced_until"]}
                               for c in checkpoints if c["entity_type"] == plan["entity"]), None)
    return plan


def recent_jobs(limit: int, config_id: str | None = None, url: str | None = None) -> list[dict[str, Any]]:
    """The newest `limit` jobs (of one config, if given), newest first, as {column: value}."""
    if config_id:
        return _select(RECENT_JOBS_OF_CONFIG, [uuid.UUID(config_id), limit], url)
    return _select(RECENT_JOBS, [limit], url)


def recent_conflicts(tenant_id: str | None = None, status: str | None = "pending", limit: int = CONFLICT_LIST_LIMIT,
                     url: str | None = None) -> list[dict[str, Any]]:
    """The newest `limit` conflicts (of one tenant, in one status, if given), newest first, as
    {column: value}: the rows `crmsync.sync.conflicts.list_conflicts` gives for the same arguments.
    ValueError for a tenant id that is not a UUID."""
    params = [uuid.UUID(tenant_id)] if tenant_id else []
    if status:
        params.append(status)
    return _select(RECENT_CONFLICTS[bool(tenant_id), bool(status)], [*params, limit], url)


def job_with_steps(job_id: str, url: str | None = None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """One job as {column: value} (None when no job has the id) and its steps in order, read on
    one connection."""
    job, steps = _select_all([(ONE_JOB, [uuid.UUID(job_id)]), (JOB_STEPS, [uuid.UUID(job_id)])], url)
    return (job[0], steps) if job else (None, [])


def _select(sql: str, params: list, url: str | None) -> list[dict[str, Any]]:
    return _select_all([(sql, params)], url)[0]


def _select_all(statements: list[tuple[str, list]], url: str | None) -> list[list[dict[str, Any]]]:
    """Each (sql with `%s` placeholders, params) in turn on one connection, as {column: value}
    rows; a uuid.UUID parameter is bound as the id columns store it."""
    if url is None:
        from crmsync.settings import get_settings
        url = get_settings().database_url
    if url.startswith("sqlite"):
        results = _sqlite_rows(url, [(sql.replace("%s", "?"), [p.hex if isinstance(p, uuid.UUID) else p
                                                               for p in params]) for sql, params in statements])
        return [[{c: _from_sqlite(c, v) for c, v in zip(columns, row)} for row in rows] for columns, rows in results]
    return [[{c: _from_postgres(c, v) for c, v in zip(columns, row)} for row in rows]
            for columns, rows in _postgres_rows(url, statements)]


def _postgres_rows(url: str, statements: list[tuple[str, list]]) -> list[tuple[list[str], list[tuple]]]:
    import psycopg
    try:
        with psycopg.connect(autocommit=True, **psycopg_params(url)) as conn:
            out = []
            for sql, params in statements:
                cursor = conn.execute(sql, params)
                out.append(([d.name for d in cursor.description], cursor.fetchall()))
            return out
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as err:
        raise ReadError(f"{UPGRADE_HINT}: {_first_line(err)}") from err
    except psycopg.Error as err:
        raise ReadError(_first_line(err)) from err


def _sqlite_rows(url: str, statements: list[tuple[str, list]]) -> list[tuple[list[str], list[tuple]]]:
    import sqlite3
    path = _URL.match(url)["database"] or ":memory:"
    if path != ":memory:" and not os.path.exists(path):
        # SQLite would make an empty file; a read makes nothing.
        raise ReadError(f"{UPGRADE_HINT}: no database file {path}")
    try:
        with closing(sqlite3.connect(path, timeout=30)) as conn:
            out = []
            for sql, params in statements:
                cursor = conn.execute(sql, params)
                out.append(([d[0] for d in cursor.description], cursor.fetchall()))
            return out
    except sqlite3.OperationalError as err:
        if str(err).startswith(("no such table", "no such column")):
            raise ReadError(f"{UPGRADE_HINT}: {_first_line(err)}") from err
        raise ReadError(_first_line(err)) from err
    except sqlite3.Error as err:
        raise ReadError(_first_line(err)) from err


def _from_postgres(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _IDS:
        return str(value)
    if column in _TIMES:
        return value.astimezone(UTC)
    return value


def _from_sqlite(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _IDS:
        return str(uuid.UUID(value))        # stored as 32 hex digits (SQLAlchemy's Uuid on SQLite)
    if column in _TIMES:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)   # stored as UTC without the zone
    if column in _JSON:
        return json.loads(value)
    if column in _BOOLS:
        return bool(value)
    return value


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return (text.splitlines() or [type(err).__name__])[0][:300]


# SQLAlchemy's own URL pattern (sqlalchemy.engine.url._parse_url), so both read the same parts.
_URL = re.compile(r"""
    (?P<name>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """, re.VERBOSE)


def psycopg_params(url: str) -> dict[str, Any]:
    """psycopg.connect's keyword arguments for a `postgresql+psycopg://` URL, as SQLAlchemy's
    psycopg dialect makes them: user, password, host, port, dbname, then the query's parameters
    (libpq's); several hosts as `?host=h1:p1&host=h2:p2` or `?host=h1,h2&port=p1,p2`."""
    m = _URL.match(url)
    if m is None:
        raise ReadError("CRMSYNC_DATABASE_URL is not a database URL")
    params: dict[str, Any] = {}
    for part, name in (("username", "user"), ("password", "password"), ("database", "dbname")):
        if m[part]:
            params[name] = unquote(m[part])
    if m["ipv4host"] or m["ipv6host"]:
        params["host"] = m["ipv4host"] or m["ipv6host"]
    if m["port"]:
        params["port"] = int(m["port"])
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(m["query"] or ""):
        query.setdefault(key, []).append(value)
    hosts = query.get("host")
    if hosts and "port" not in query and (len(hosts) > 1 or ":" in hosts[0]) and all(
            re.fullmatch(r"[\w.-]*(:\d*)?", h) for h in hosts):
        # host=h1:p1&host=h2:p2 is libpq's host=h1,h2 port=p1,p2
        pairs = [h.partition(":")[::2] for h in hosts]
        query["host"], ports = [h for h, _ in pairs], [p for _, p in pairs]
        if any(ports):
            query["port"] = ports
    params.update({key: ",".join(values) for key, values in query.items()})
    return params

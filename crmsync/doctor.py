"""`crmsync doctor [CONFIG_ID]`: the original design's troubleshooting section as one command.

For each config (or the one named): enabled, credentials open and accepted by the CRM, rate
headroom, the five most recent jobs, an active job whose runner is gone, another config of the same
CRM in its tenant, pending conflicts, unprocessed webhook events, and custom
fields seen in the tenant's rows that no field mapping names. Plus the services every config
needs: the database, the broker and the workers answering it.

Each check is ok, warn or fail; exit 1 when any check fails (so scripts can alert), 2 on a bad
config id. Nothing here writes, and no check prints a secret.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import click
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from crmsync.console import bad_input, emit, json_option

OK, WARN, FAIL = "ok", "warn", "fail"
MARK = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}
RECENT_JOBS = 5
CUSTOM_FIELD_SAMPLE = 20_000   # rows per entity read on SQLite (PostgreSQL asks jsonb for the keys)


@dataclass
class Check:
    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def _check(name: str, fn, *args) -> Check:
    """Run one check; an unexpected error is that check failing, not the doctor crashing."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001  reported as the check's result
        return Check(name, FAIL, f"{type(err).__name__}: {err}")


# --- services --------------------------------------------------------------------------------
def check_database(session: Session) -> Check:
    session.execute(text("SELECT 1"))
    return Check("database", OK, f"{session.get_bind().dialect.name} answers")


def check_broker() -> list[Check]:
    from crmsync.settings import get_settings
    settings = get_settings()
    if settings.inline:
        return [Check("broker", OK, "none configured: tasks run inline in the calling process")]
    from crmsync.tasks.producer import check_broker_connection, ping_workers
    try:
        check_broker_connection()
    except Exception as err:  # noqa: BLE001  any connection error is the answer
        return [Check("broker", FAIL, f"broker unreachable ({type(err).__name__})")]
    checks = [Check("broker", OK, "answers")]
    names = ping_workers(timeout=1.0)
    checks.append(Check("workers", OK if names else FAIL,
                        f"{len(names)} answering" if names else "no worker answers: start `celery -A workers worker`",
                        {"workers": names}))
    return checks


# --- per config --------------------------------------------------------------------------------
def check_enabled(config) -> Check:
    if not config.enabled:
        return Check("enabled", FAIL, "disabled: `crmsync configs enable ID`")
    if config.sync_frequency_minutes == 0:
        return Check("enabled", OK, "enabled, real-time only (webhooks; never scheduled)")
    due = config.next_sync_at.isoformat() if config.next_sync_at else "not scheduled"
    return Check("enabled", OK, f"enabled, every {config.sync_frequency_minutes} min, next {due}",
                 {"next_sync_at": config.next_sync_at, "last_sync_at": config.last_sync_at})


def check_credentials(session: Session, config) -> Check:
    from crmsync.credentials import Vault, VaultError
    from crmsync.platforms.errors import AuthenticationError, PlatformError, TransientError
    from crmsync.sync.connect import crm_account_of
    # Ask the CRM who the credentials belong to, even when the config already knows the account.
    # The lookup keeps the hook that saves a refreshed OAuth token, so a rotating refresh token
    # is not lost.
    try:
        account = crm_account_of(session, config, vault=Vault())
    except VaultError as err:
        return Check("credentials", FAIL, f"cannot open vault entry {config.credentials_vault_id}: {err}")
    except AuthenticationError as err:
        return Check("credentials", FAIL, f"the CRM refused them: {err}")
    except TransientError as err:
        # A 5xx, a timeout or a refused connection says nothing about the credentials.
        return Check("credentials", FAIL, f"not checked: {config.platform} is unavailable ({err})",
                     {"unavailable": True})
    except PlatformError as err:
        return Check("credentials", FAIL, f"not checked: {config.platform} answered the account lookup with {err}")
    detail = f"accepted by {config.platform} account {account}"
    if config.account_id and str(account) != str(config.account_id):
        return Check("credentials", FAIL, f"{detail}, but the config says account {config.account_id}",
                     {"account_id": str(account)})
    return Check("credentials", OK, detail, {"account_id": str(account)})


def check_rate_headroom(config) -> Check:
    from crmsync.platforms import limits_of
    from crmsync.ratelimit import DAILY, STANDARD
    from crmsync.sync.connect import rate_budget
    account = config.account_id
    if not account:
        return Check("rate headroom", WARN, "no account id yet (looked up on the first sync)")
    budget = rate_budget()
    data: dict[str, Any] = {"shared": budget.shared}
    parts = []
    limits = limits_of(config.platform).account_limits({})
    for kind in (STANDARD, DAILY):
        limit = limits.get(kind)
        if limit is None:
            continue
        left = budget.remaining(config.platform, account, kind, limit)
        data[kind] = {"remaining": left, "capacity": limit.capacity, "interval_seconds": limit.interval_seconds}
        parts.append(f"{kind} {left}/{limit.capacity}")
    status = OK
    if data.get(DAILY, {}).get("remaining") == 0:
        status = FAIL
    elif data.get(STANDARD, {}).get("remaining") == 0:
        status = WARN
    where = "shared in Redis" if budget.shared else "this process only (no CRMSYNC_REDIS_URL)"
    return Check("rate headroom", status, f"{', '.join(parts) or 'no known limits'} ({where})", data)


def check_recent_jobs(session: Session, config) -> Check:
    from crmsync.db.models import SyncJob
    jobs = session.scalars(select(SyncJob).where(SyncJob.sync_config_id == config.id)
                           .order_by(SyncJob.created_at.desc()).limit(RECENT_JOBS)).all()
    rows = [{"id": j.id, "status": j.status, "trigger": j.trigger, "full": j.full, "created_at": j.created_at,
             "finished_at": j.finished_at, "steps": f"{j.steps_done}/{j.steps_total}", "error": j.error,
             "paused_until": j.paused_until} for j in jobs]
    if not jobs:
        return Check("recent jobs", WARN, "no job yet: `crmsync sync run ID`", {"jobs": rows})
    last = jobs[0]
    status = {"failed": FAIL, "waiting_quota": WARN}.get(last.status, OK)
    detail = f"last {last.status} ({last.trigger}, {last.created_at:%Y-%m-%d %H:%M:%S})"
    if last.error:
        detail += f": {last.error[:200]}"
    if last.status == "waiting_quota" and last.paused_until:
        detail += f"; resumes {last.paused_until.isoformat()}"
    return Check("recent jobs", status, detail, {"jobs": rows})


def check_active_job(session: Session, config) -> Check:
    """The config's active job, and whether its runner is still there (its lease holds)."""
    from crmsync.sync.jobs import active_job, lease_expired
    job = active_job(session, config.id)
    if job is None:
        return Check("active job", OK, "none")
    data = {"id": job.id, "status": job.status, "lease_owner": job.lease_owner,
            "lease_expires_at": job.lease_expires_at}
    if lease_expired(job):
        since = job.lease_expires_at.isoformat() if job.lease_expires_at else "unknown"
        return Check("active job", FAIL,
                     f"job {job.id} is {job.status} but its runner ({job.lease_owner or 'unknown'}) is gone: "
                     f"lease expired {since}; `crmsync jobs resume {job.id}` carries it on from its checkpoints, "
                     f"`crmsync jobs cancel {job.id}` drops it", data)
    return Check("active job", OK, f"job {job.id} {job.status}, run by {job.lease_owner}", data)


def check_one_config_per_crm(session: Session, config) -> Check:
    """A tenant syncs one account per CRM: sync links are keyed by (tenant, platform, entity,
    external id), so two configs of one CRM in a tenant share them, and one account's contact 101
    overwrites the local row of the other's, which then goes back to the wrong account. Configs
    create refuses such a pair (`crmsync.configs.check_platform_free`); this finds pairs made before.
    Since migration 0009 the database holds one enabled config per CRM in a tenant, and refuses to
    upgrade while a pair is enabled: a FAIL is seen on a database not yet upgraded, a WARN after."""
    from crmsync.db.models import SyncConfig
    others = session.execute(select(SyncConfig.id, SyncConfig.enabled).where(
        SyncConfig.tenant_id == config.tenant_id, SyncConfig.platform == config.platform,
        SyncConfig.id != config.id).order_by(SyncConfig.created_at)).all()
    if not others:
        return Check("one config per CRM", OK, f"the tenant's only {config.platform} config")
    ids = [o.id for o in others]
    data = {"other_configs": ids}
    listing = ", ".join(f"{o.id}{'' if o.enabled else ' (disabled)'}" for o in others)
    detail = (f"tenant {config.tenant_id} also syncs {config.platform} through config {listing}: they share "
              f"sync links, so one account's records overwrite the other's and are pushed to the wrong account")
    if not config.enabled or not any(o.enabled for o in others):
        # Only one of them syncs: nothing mixes now, but the links they made may already be mixed.
        return Check("one config per CRM", WARN, f"{detail}; only one is enabled: leave the others disabled, "
                     "and sync another account from a tenant of its own", data)
    return Check("one config per CRM", FAIL, f"{detail}; keep one: `crmsync configs disable ID` the others, "
                 "then sync each other account from a tenant of its own (a new tenant and config)", data)


def check_conflicts(session: Session, config) -> Check:
    from crmsync.db.models import ConflictRecord
    n = session.scalar(select(func.count()).select_from(ConflictRecord).where(
        ConflictRecord.config_id == config.id, ConflictRecord.status == "pending"))
    return Check("pending conflicts", WARN if n else OK,
                 f"{n} waiting for review: `crmsync conflicts list --status pending`" if n else "none", {"count": n})


def check_webhook_events(session: Session, config) -> Check:
    from crmsync.db.models import WebhookDelivery, WebhookEvent
    from crmsync.db.types import utcnow
    from crmsync.settings import get_settings
    n, oldest = session.execute(select(func.count(), func.min(WebhookEvent.received_at)).where(
        WebhookEvent.config_id == config.id, WebhookEvent.processed.is_(False))).one()
    failed = session.scalar(select(func.count()).select_from(WebhookEvent).where(
        WebhookEvent.config_id == config.id, WebhookEvent.outcome == "failed"))
    # Requests stored whole and not yet split into events (crmsync.events.processing).
    waiting, split_failed, oldest_delivery = session.execute(select(
        func.count(), func.count(WebhookDelivery.error), func.min(WebhookDelivery.received_at)).where(
        WebhookDelivery.config_id == config.id)).one()
    data = {"unprocessed": n, "oldest_received_at": oldest, "failed": failed,
            "deliveries_waiting": waiting, "deliveries_failed": split_failed}
    if not n and not failed and not waiting:
        return Check("webhook events", OK, "all processed", data)
    oldest = min((t for t in (oldest, oldest_delivery) if t is not None), default=None)
    stale = oldest is not None and (utcnow() - oldest).total_seconds() > 2 * get_settings().outbox_after_seconds
    parts = []
    if n or waiting:
        parts.append(f"{n} unprocessed" + (f", {waiting} delivery(ies) not yet split" if waiting else "")
                     + (f", oldest since {oldest.isoformat()} (are the workers running?)" if stale else ""))
    if failed or split_failed:
        parts.append(f"{failed + split_failed} failed: `crmsync webhooks replay --failed`")
    return Check("webhook events", FAIL if stale else WARN, "; ".join(parts), data)


def _mapped_names(field_mappings: dict) -> set[str]:
    names = set()
    for local, remote in (field_mappings or {}).items():
        names.add(local.rsplit(".", 1)[-1])
        names.add(str(remote))
    return names


def custom_field_keys(session: Session, tenant_id: str) -> dict[str, set[str]]:
    """Keys of custom_fields in the tenant's rows, per entity."""
    from crmsync.db import is_postgres
    from crmsync.db.models import ENTITY_MODELS
    out: dict[str, set[str]] = {}
    for entity, model in ENTITY_MODELS.items():
        table = model.__table__
        if is_postgres(session):
            keys = session.scalars(text(
                f"SELECT DISTINCT jsonb_object_keys(custom_fields) FROM {table.name} "  # noqa: S608  table name from our model
                "WHERE tenant_id = :t AND jsonb_typeof(custom_fields) = 'object'"), {"t": tenant_id}).all()
            out[entity] = set(keys)
        else:
            keys = set()
            for value in session.scalars(select(table.c.custom_fields).where(table.c.tenant_id == tenant_id)
                                         .limit(CUSTOM_FIELD_SAMPLE)):
                if isinstance(value, dict):
                    keys |= set(value)
            out[entity] = keys
    return out


def check_unmapped_custom_fields(session: Session, config) -> Check:
    mapped = _mapped_names(config.field_mappings)
    unmapped = {entity: sorted(keys - mapped) for entity, keys in custom_field_keys(session, config.tenant_id).items()}
    unmapped = {e: keys for e, keys in unmapped.items() if keys}
    if not unmapped:
        return Check("unmapped custom fields", OK, "none", {"fields": {}})
    listing = "; ".join(f"{e}: {', '.join(keys[:8])}{' …' if len(keys) > 8 else ''}" for e, keys in unmapped.items())
    return Check("unmapped custom fields", WARN,
                 f"{listing} (map with `--field-mapping custom_fields.NAME=REMOTE`)", {"fields": unmapped})


def diagnose_config(session: Session, config) -> list[Check]:
    return [
        _check("enabled", check_enabled, config),
        _check("credentials", check_credentials, session, config),
        _check("rate headroom", check_rate_headroom, config),
        _check("recent jobs", check_recent_jobs, session, config),
        _check("active job", check_active_job, session, config),
        _check("one config per CRM", check_one_config_per_crm, session, config),
        _check("pending conflicts", check_conflicts, session, config),
        _check("webhook events", check_webhook_events, session, config),
        _check("unmapped custom fields", check_unmapped_custom_fields, session, config),
    ]


def run_doctor(session: Session, config_id: str | None = None) -> dict[str, Any]:
    """Every check, as one JSON-ready report. Raises crmsync.configs.ConfigError for a bad id."""
    from crmsync.configs import get_config
    from crmsync.db.models import SyncConfig
    services = [_check("database", check_database, session)]
    services += check_broker()
    if config_id is not None:
        configs = [get_config(session, config_id)]
    else:
        configs = session.scalars(select(SyncConfig).order_by(SyncConfig.created_at)).all()
    report_configs = []
    for config in configs:
        checks = diagnose_config(session, config)
        report_configs.append({"id": config.id, "tenant_id": config.tenant_id, "platform": config.platform,
                               "account_id": config.account_id, "checks": [asdict(c) for c in checks],
                               "ok": all(c.status != FAIL for c in checks)})
    ok = all(c.status != FAIL for c in services) and all(c["ok"] for c in report_configs)
    return {"ok": ok, "services": [asdict(c) for c in services], "configs": report_configs}


def _human(report: dict) -> str:
    def line(c: dict) -> str:
        return f"  [{MARK[c['status']]}] {c['name']}: {c['detail']}"
    lines = ["services"] + [line(c) for c in report["services"]]
    if not report["configs"]:
        lines.append("no sync configs: `crmsync configs create ...`")
    for cfg in report["configs"]:
        lines.append(f"config {cfg['id']} ({cfg['platform']} account {cfg['account_id'] or '?'}, "
                     f"tenant {cfg['tenant_id']})")
        lines += [line(c) for c in cfg["checks"]]
        jobs = next((c["data"].get("jobs") for c in cfg["checks"] if c["name"] == "recent jobs"), None)
        for job in jobs or []:
            created = job["created_at"].strftime("%Y-%m-%d %H:%M:%S") if isinstance(job["created_at"], datetime) \
                else job["created_at"]
            lines.append(f"         {created}  {job['status']:<13} {job['trigger']:<8} steps {job['steps']}"
                         + (f"  {job['error'][:80]}" if job["error"] else ""))
    lines.append("healthy" if report["ok"] else "problems found (FAIL above)")
    return "\n".join(lines)


@click.command("doctor")
@click.argument("config_id", required=False)
@json_option
def doctor(config_id, as_json):
    """Check a config (or all): enabled, credentials, rate headroom, recent jobs, conflicts,
    unprocessed webhook events, unmapped custom fields; plus database, broker and workers."""
    import sys

    from crmsync.configs import ConfigError
    from crmsync.db import session_scope
    try:
        with session_scope() as session:
            report = run_doctor(session, config_id)
    except ConfigError as err:
        bad_input(str(err))
    emit(report, as_json, _human(report))
    if not report["ok"]:
        sys.exit(1)

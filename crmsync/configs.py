"""Tenants and sync configs (the original design's `crm_sync_configs`): validated on the way in, so a bad
config is refused with the field named and nothing written."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crmsync.db.models import ONE_ENABLED_PER_CRM, SyncConfig, Tenant, VaultSecret, new_id
from crmsync.db.types import utcnow
from crmsync.entities import ENTITY_PLURALS
from crmsync.errors import Fatal

if TYPE_CHECKING:
    from marshmallow import ValidationError

DIRECTIONS = ("push", "pull", "bidirectional")
STRATEGIES = ("timestamp_based", "source_priority", "field_merge", "manual_review")
LOCAL = "local"
MAX_FREQUENCY_MINUTES = 366 * 24 * 60
MAX_NAME_LENGTH = 200      # tenant names, as the column holds


class ConfigError(Fatal):
    """A config or tenant request that cannot be carried out; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class NotFoundError(ConfigError):
    pass


def __getattr__(name: str):
    # The marshmallow schema is in `crmsync.config_schema`, loaded by what writes a config: a sync,
    # which only reads one, does not load marshmallow. It still imports from here.
    if name in ("SyncConfigSchema", "ValidationError"):
        from crmsync import config_schema
        return getattr(config_schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def first_error(err: ValidationError) -> tuple[str, str]:
    """(field, message) of a marshmallow error, for a one-line CLI message."""
    messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
    field, msgs = next(iter(messages.items()))
    while isinstance(msgs, dict):
        key, msgs = next(iter(msgs.items()))
        field = f"{field}.{key}"
    msg = msgs[0] if isinstance(msgs, list) and msgs else str(msgs)
    return field, str(msg)


# --- tenants ---------------------------------------------------------------------------------
def create_tenant(session: Session, name: str) -> Tenant:
    name = (name or "").strip()
    if not name:
        raise ConfigError("a tenant needs a name", field="name")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"a tenant name has at most {MAX_NAME_LENGTH} characters, not {len(name)}", field="name")
    if session.scalar(select(Tenant).where(Tenant.name == name)):
        raise ConfigError(f"a tenant called {name!r} exists", field="name")
    tenant = Tenant(id=new_id(), name=name)
    session.add(tenant)
    session.flush()
    return tenant


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant_id = parse_id(tenant_id, "tenant")
    tenant = session.get(Tenant, str(tenant_id))
    if tenant is None:
        raise NotFoundError(f"no tenant {tenant_id}", field="tenant")
    return tenant


# --- configs ---------------------------------------------------------------------------------
def create_config(session: Session, data: dict[str, Any], *, now: datetime | None = None) -> SyncConfig:
    from crmsync.config_schema import SyncConfigSchema, ValidationError
    try:
        clean = SyncConfigSchema().load(data)
    except ValidationError as err:
        field, msg = first_error(err)
        raise ConfigError(f"{field}: {msg}", field=field) from None
    tenant_id = get_tenant(session, str(clean["tenant_id"])).id
    check_platform_free(session, clean["platform"], tenant_id)
    # A request racing this one may pass the same checks: the database's indexes settle it, and
    # everything below is undone with the refused insert.
    with held_by_database(session, one_enabled_per_crm(session, tenant_id, clean["platform"], None, SECOND_ACCOUNT),
                          one_config_per_account(session, clean["platform"], clean["account_id"], tenant_id)):
        return _insert_config(session, clean, tenant_id, now)


def _insert_config(session: Session, clean: dict[str, Any], tenant_id: str, now: datetime | None) -> SyncConfig:
    for key in ("credentials_vault_id", "webhook_secret_vault_id"):
        if clean.get(key):
            claim_entry(session, str(clean[key]), tenant_id, key)
    entities = clean.pop("entities") or list(ENTITY_PLURALS.values())
    priority = clean.pop("source_priority") or [clean["platform"], LOCAL]
    if clean["account_id"]:
        check_account_free(session, clean["platform"], clean["account_id"], tenant_id)
    config = SyncConfig(
        id=new_id(),
        tenant_id=str(clean["tenant_id"]),
        platform=clean["platform"],
        sync_direction=clean["sync_direction"],
        sync_frequency_minutes=clean["sync_frequency_minutes"],
        conflict_strategy=clean["conflict_strategy"],
        source_priority=priority,
        credentials_vault_id=str(clean["credentials_vault_id"]),
        webhook_secret_vault_id=str(clean["webhook_secret_vault_id"]) if clean["webhook_secret_vault_id"] else None,
        webhook_legacy_signatures=clean["webhook_legacy_signatures"],
        field_mappings=clean["field_mappings"],
        value_mappings=clean["value_mappings"],
        account_id=clean["account_id"],
        api_base_url=clean["api_base_url"],
        enabled=clean["enabled"],
        sweep_every_hours=clean["sweep_every_hours"],
        **{f"sync_{plural}": plural in entities for plural in ENTITY_PLURALS.values()},
    )
    # 0 minutes = real-time only (webhooks): never scheduled.
    config.next_sync_at = (now or utcnow()) if config.sync_frequency_minutes > 0 and config.enabled else None
    schedule_sweep(config, now or utcnow())
    session.add(config)
    session.flush()
    return config


def claim_entry(session: Session, vault_id: str, tenant_id: str, field: str) -> VaultSecret:
    """The tenant's vault entry `vault_id`; an entry stored without a tenant becomes this tenant's
    now. Another tenant's entry is answered like a missing one."""
    entry = session.get(VaultSecret, vault_id, with_for_update=True)
    if entry is None or entry.tenant_id not in (None, tenant_id):
        raise NotFoundError(f"{field}: tenant {tenant_id} has no vault entry {vault_id}", field=field)
    entry.tenant_id = tenant_id
    return entry


class AccountCheckFailed(ConfigError):
    """The CRM could not be asked whose the credentials are (down, 5xx, timeout): try again."""


def verify_account(session: Session, config: SyncConfig, *, credentials: dict | None = None) -> str:
    """Ask the CRM which account the config's credentials (or `credentials`, about to replace them)
    open, and hold the config to it: a given account id must be that one, and no other config may
    sync that account. Sets config.account_id. A token alone decides what a sync reads and writes,
    so an account id typed by hand is never trusted."""
    from crmsync.platforms.errors import AuthenticationError, PlatformError
    from crmsync.sync.connect import crm_account_of
    try:
        account = crm_account_of(session, config, credentials=credentials)
    except AuthenticationError as err:
        raise ConfigError(f"credentials: the {config.platform} CRM refused them ({err})", field="credentials") \
            from None
    except PlatformError as err:
        raise AccountCheckFailed(f"could not ask {config.platform} which account the credentials open ({err}); "
                                 "check --base-url and try again", field="credentials") from None
    if config.account_id and str(config.account_id) != account:
        raise ConfigError(f"account_id: the credentials open {config.platform} account {account}, "
                          f"not {config.account_id}", field="account_id")
    check_account_free(session, config.platform, account, config.tenant_id, config.id)
    with held_by_database(session, one_config_per_account(session, config.platform, account, config.tenant_id,
                                                          config.id)):
        config.account_id = account
    return account


PUSHING = ("push", "bidirectional")


def ensure_marker_fields(session: Session, config: SyncConfig) -> tuple[dict[str, str], list[str]]:
    """For a config that pushes, have the CRM hold the field a create stamps with the local id, on
    each enabled entity that takes one ({object: "present" | "created" | "refused: why"}), and
    warnings for what could not be done. Never fails the caller: without the field a create whose
    answer was lost is still looked up by its natural keys (email, domain, ...)."""
    from crmsync.platforms.errors import PlatformError
    from crmsync.sync.connect import ensure_crm_markers
    if config.sync_direction not in PUSHING:
        return {}, []
    entities = [e for e, plural in ENTITY_PLURALS.items() if getattr(config, f"sync_{plural}")]
    fallback = "a create whose answer was lost is recognised by email, domain or name only"
    try:
        outcomes = ensure_crm_markers(session, config, entities)
    except PlatformError as err:
        return {}, [f"marker_properties: could not ask {config.platform} ({err}); {fallback}"]
    warnings = [f"marker_properties: {obj}: {outcome}; {fallback}"
                for obj, outcome in outcomes.items() if outcome.startswith("refused")]
    return outcomes, warnings


def check_account_free(session: Session, platform: str, account: str, tenant_id: str,
                       config_id: str | None = None) -> None:
    """One CRM account, one config: webhooks are routed by account, and a second tenant syncing
    the account would read and write the first one's CRM. The database holds it too (constraint
    ONE_CONFIG_PER_ACCOUNT, `one_config_per_account`)."""
    other = config_syncing(session, platform, account, config_id)
    if other is not None:
        raise account_taken(platform, account, tenant_id, other)


def config_syncing(session: Session, platform: str, account: str, config_id: str | None = None) -> SyncConfig | None:
    """The config (other than `config_id`) that syncs the CRM account, if any."""
    query = select(SyncConfig).where(SyncConfig.platform == platform, SyncConfig.account_id == account)
    if config_id is not None:
        query = query.where(SyncConfig.id != config_id)
    return session.scalar(query.limit(1))


def account_taken(platform: str, account: str, tenant_id: str, other: SyncConfig | None) -> ConfigError:
    """Another tenant's config is not named to this one (`other` None: it could not be found)."""
    if other is None:
        whose = "another config"
    else:
        whose = f"config {other.id}" if other.tenant_id == tenant_id else "another tenant's config"
    return ConfigError(f"account_id: {platform} account {account} is already synced by {whose}", field="account_id")


def check_platform_free(session: Session, platform: str, tenant_id: str) -> None:
    """One account per CRM in a tenant: sync links are keyed by (tenant, platform, entity, external
    id), so a second account's records would be merged into the first one's local rows (its contact
    101 into ours linked to the first account's 101) and pushed back to the wrong account.

    A new config is refused next to any config of its CRM, disabled or not; the database holds the
    enabled ones to one per (tenant, platform) (index ONE_ENABLED_PER_CRM, `one_enabled_per_crm`)."""
    other = session.scalar(select(SyncConfig.id).where(SyncConfig.tenant_id == tenant_id,
                                                       SyncConfig.platform == platform).limit(1))
    if other is not None:
        raise platform_taken(tenant_id, platform, other, SECOND_ACCOUNT)


# What to do instead, in the message of a refused create or enable.
SECOND_ACCOUNT = "a second {platform} account needs a tenant of its own"
ENABLE_ANOTHER = ("a tenant syncs one account per CRM: `crmsync configs disable {other}` first, or sync this "
                  "config's account from a tenant of its own")


def platform_taken(tenant_id: str, platform: str, other: str | None, advice: str) -> ConfigError:
    through = f"config {other}" if other else "another enabled config"
    return ConfigError(f"platform: tenant {tenant_id} already syncs {platform} through {through}; "
                       + advice.format(platform=platform, other=other or "ID"), field="platform")


def enabled_config_of(session: Session, tenant_id: str, platform: str, *, besides: str | None = None) -> str | None:
    """The id of the tenant's enabled config of `platform` (other than `besides`), if any."""
    query = select(SyncConfig.id).where(SyncConfig.tenant_id == tenant_id, SyncConfig.platform == platform,
                                        SyncConfig.enabled.is_(True))
    if besides is not None:
        query = query.where(SyncConfig.id != besides)
    return session.scalar(query.order_by(SyncConfig.created_at).limit(1))


# crm_sync_configs' unique (platform, account_id), as crmsync.db.models names it.
ONE_CONFIG_PER_ACCOUNT = "uq_crm_sync_configs_platform_account"
# psycopg names the violated index; SQLite names its columns.
_SQLITE_COLUMNS = {ONE_ENABLED_PER_CRM: "crm_sync_configs.tenant_id, crm_sync_configs.platform",
                   ONE_CONFIG_PER_ACCOUNT: "crm_sync_configs.platform, crm_sync_configs.account_id"}

# A unique index of crm_sync_configs, and the ConfigError its IntegrityError becomes.
Refusal = tuple[str, Callable[[], ConfigError]]


def _violates(err: IntegrityError, index: str) -> bool:
    diag = getattr(err.orig, "diag", None)
    if diag is not None:
        return getattr(diag, "constraint_name", None) == index
    return _SQLITE_COLUMNS[index] in str(err.orig)


def _violates_one_enabled_per_crm(err: IntegrityError) -> bool:
    return _violates(err, ONE_ENABLED_PER_CRM)


@contextmanager
def held_by_database(session: Session, *refusals: Refusal) -> Iterator[None]:
    """Run writes in a savepoint, flushed at the end. The Python checks give the clear message; two
    requests at once can both pass them, and then one of the database's unique indexes refuses the
    second: the savepoint's writes are undone (the caller's session stays usable; `session_scope`
    rolls it back) and its IntegrityError becomes the same ConfigError, naming the config that won."""
    try:
        with session.begin_nested():
            yield
            session.flush()
    except IntegrityError as err:
        for index, refused in refusals:
            if _violates(err, index):
                raise refused() from None
        raise


def one_enabled_per_crm(session: Session, tenant_id: str, platform: str, config_id: str | None,
                        advice: str) -> Refusal:
    """For writes that create or enable a config of `platform`: one enabled config per tenant and platform."""
    return ONE_ENABLED_PER_CRM, lambda: platform_taken(
        tenant_id, platform, enabled_config_of(session, tenant_id, platform, besides=config_id), advice)


def one_config_per_account(session: Session, platform: str, account: str, tenant_id: str,
                           config_id: str | None = None) -> Refusal:
    """For writes that set a config's account_id: one config per CRM account (`check_account_free`)."""
    return ONE_CONFIG_PER_ACCOUNT, lambda: account_taken(
        platform, account, tenant_id, config_syncing(session, platform, account, config_id))


def parse_id(value: str, what: str) -> str:
    """A UUID given by a person, checked before it reaches a query."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ConfigError(f"{what}: not an id: {value!r}", field=what) from None


def get_config(session: Session, config_id: str, *, tenant_id: str | None = None) -> SyncConfig:
    config_id = parse_id(config_id, "config")
    query = select(SyncConfig).where(SyncConfig.id == str(config_id))
    if tenant_id is not None:
        query = query.where(SyncConfig.tenant_id == str(tenant_id))
    config = session.scalar(query)
    if config is None:
        raise NotFoundError(f"no sync config {config_id}", field="config")
    return config


def set_enabled(session: Session, config_id: str, enabled: bool, *, now: datetime | None = None) -> SyncConfig:
    """Enable or disable a config. Enabling one whose CRM the tenant already syncs through another
    enabled config (a pair made before `configs create` refused it) is refused, naming that one."""
    config = get_config(session, config_id)
    if not enabled:
        config.enabled = False
        session.flush()
        return config
    if not config.enabled:
        check_none_enabled(session, config)
    with held_by_database(session, one_enabled_per_crm(session, config.tenant_id, config.platform, config.id,
                                                       ENABLE_ANOTHER)):
        config.enabled = True
        if config.sync_frequency_minutes > 0 and config.next_sync_at is None:
            config.next_sync_at = now or utcnow()
    return config


def check_none_enabled(session: Session, config: SyncConfig) -> None:
    """No other config of `config`'s CRM is enabled in its tenant."""
    other = enabled_config_of(session, config.tenant_id, config.platform, besides=config.id)
    if other is not None:
        raise platform_taken(config.tenant_id, config.platform, other, ENABLE_ANOTHER)


def advance_schedule(config: SyncConfig, now: datetime) -> None:
    config.next_sync_at = (now + timedelta(minutes=config.sync_frequency_minutes)
                           if config.sync_frequency_minutes > 0 else None)


def schedule_sweep(config: SyncConfig, now: datetime) -> None:
    """The next deletion sweep, a cadence from now (0 hours: never on schedule)."""
    config.next_sweep_at = now + timedelta(hours=config.sweep_every_hours) if config.sweep_every_hours else None


def set_sweep_every(session: Session, config_id: str, hours: int, *, now: datetime | None = None) -> SyncConfig:
    """How often the config's deletion sweep runs; the next one comes a cadence from now."""
    if isinstance(hours, bool) or not isinstance(hours, int) or not 0 <= hours <= 24 * 366:
        raise ConfigError(f"sweep_every_hours: expected whole hours from 0 to {24 * 366}, got {hours!r}",
                          field="sweep_every_hours")
    config = get_config(session, config_id)
    config.sweep_every_hours = hours
    schedule_sweep(config, now or utcnow())
    session.flush()
    return config


def config_as_dict(config: SyncConfig) -> dict[str, Any]:
    out = {c.name: getattr(config, c.name) for c in SyncConfig.__table__.columns}
    out["entities"] = [p for p in ENTITY_PLURALS.values() if getattr(config, f"sync_{p}")]
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in out.items()}

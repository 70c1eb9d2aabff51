"""From a config row to a live adapter: open its credentials from the vault, attach the shared
rate budget and metadata cache, and save refreshed OAuth tokens back to the vault (and re-read them
there: a worker about to refresh first looks for a token set another process saved)."""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from crmsync.cache import MetadataCache
from crmsync.credentials import SecretNotFound, Vault
from crmsync.platforms import adapter_class
from crmsync.platforms.base import Adapter
from crmsync.settings import get_settings

if TYPE_CHECKING:     # the early read of `sync run --inline` connects before SQLAlchemy is loaded
    from sqlalchemy.orm import Session

    from crmsync.db.models import SyncConfig
    from crmsync.sync.read_ahead import ConfigView


@cache
def redis_client():
    """The process's Redis client, or None when CRMSYNC_REDIS_URL is unset (in-process state)."""
    url = get_settings().redis_url
    if not url:
        return None
    import redis
    return redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30)


@cache
def rate_budget():
    from crmsync.ratelimit import RateBudget
    return RateBudget(redis_client())


@cache
def process_vault(secret_key: str | None) -> Vault:
    """The vault for this key, its keys derived once per process rather than once per unit."""
    return Vault(secret_key)


@cache
def metadata_cache() -> MetadataCache:
    return MetadataCache(redis_client())


# Adapters this process has connected, newest last. A unit of work reuses its config's adapter,
# and with it the CRM's keep-alive connection (otherwise a TCP and TLS handshake per unit) and
# what the adapter learned of the account. Keyed per thread: a requests session is not shared.
_connected: OrderedDict[tuple[str, int], tuple[tuple, Adapter]] = OrderedDict()
_connected_lock = threading.Lock()
KEEP_CONNECTED = 64


def forget_adapters() -> None:
    """Drop every kept adapter without touching its sockets: a forked child must not talk on its
    parent's connections."""
    with _connected_lock:
        _connected.clear()


def connect(session: Session, config: SyncConfig, *, wait: bool = True, vault: Vault | None = None) -> Adapter:
    """The config's adapter. The same one as last time in this thread while the config's CRM
    settings and its vault entry are unchanged; a new one after any change (a rotated token,
    a refreshed OAuth token set, an edited field mapping)."""
    vault = vault or process_vault(get_settings().secret_key)
    vault_id, tenant_id = config.credentials_vault_id, config.tenant_id
    sealed = vault.sealed(session, vault_id, tenant_id=tenant_id)
    fingerprint = (config.platform, config.api_base_url, config.account_id,
                   json.dumps(config.field_mappings or {}, sort_keys=True, default=str), sealed, vault.key_ids, wait)
    key = (config.id, threading.get_ident())
    with _connected_lock:
        kept = _connected.get(key)
        if kept is not None and kept[0] == fingerprint:
            _connected.move_to_end(key)
            return kept[1]
    adapter = _adapter(config, vault.open(vault_id, sealed), _saver(config, vault), account_id=config.account_id,
                       wait=wait, load_credentials=_loader(config, vault))
    with _connected_lock:
        _connected[key] = (fingerprint, adapter)
        _connected.move_to_end(key)
        evicted = [_connected.popitem(last=False)[1][1] for _ in range(len(_connected) - KEEP_CONNECTED)]
    for old in evicted:
        old.close()
    return adapter


def adapter_for(config: ConfigView, sealed: bytes | None, *, wait: bool = True) -> Adapter:
    """An adapter of the config made without a session, and not kept: `sealed` is the config's
    vault entry as stored, read for the config's own tenant (None: that tenant has no such entry).
    The early read of `sync run --inline` (`crmsync.sync.read_ahead`) connects with it while the
    ORM is still loading; a refreshed OAuth token set is saved as `connect`'s adapters save it."""
    if sealed is None:
        raise SecretNotFound(f"no vault entry {config.credentials_vault_id} for tenant {config.tenant_id}")
    vault = process_vault(get_settings().secret_key)
    return _adapter(config, vault.open(config.credentials_vault_id, sealed), _saver(config, vault),
                    account_id=config.account_id, wait=wait, load_credentials=_loader(config, vault))


def reader_adapter(session: Session, config: SyncConfig, *, wait: bool = True) -> Adapter:
    """A second adapter of the config, for a read-ahead thread (`crmsync.sync.read_ahead`): its own
    keep-alive connection (a requests session is not shared between threads) and its own request
    count, so the job counts what the reader sent apart from what the unit sent."""
    vault = process_vault(get_settings().secret_key)
    return adapter_for(config, vault.sealed(session, config.credentials_vault_id, tenant_id=config.tenant_id),
                       wait=wait)


def _saver(config: SyncConfig | ConfigView, vault: Vault) -> Callable[[dict], None]:
    vault_id, tenant_id = config.credentials_vault_id, config.tenant_id

    def save_credentials(new: dict) -> None:
        # A refreshed OAuth token set is stored at once, in its own transaction, so a crash
        # later in the task does not leave every worker with a revoked refresh token.
        from crmsync.db import session_scope
        with session_scope() as s:
            vault.replace(s, vault_id, new, tenant_id=tenant_id)
    return save_credentials


def _loader(config: SyncConfig | ConfigView, vault: Vault) -> Callable[[], dict]:
    vault_id, tenant_id = config.credentials_vault_id, config.tenant_id

    def load_credentials() -> dict:
        # Its own short transaction: the caller's may be older than another worker's refresh.
        from crmsync.db import session_scope
        with session_scope() as s:
            return vault.read(s, vault_id, tenant_id=tenant_id)
    return load_credentials


def _adapter(config: SyncConfig | ConfigView, credentials: dict, save_credentials: Callable[[dict], None], *,
             account_id: str | None, wait: bool, load_credentials: Callable[[], dict] | None = None) -> Adapter:
    return adapter_class(config.platform)(
        credentials=credentials, base_url=config.api_base_url, account_id=account_id,
        field_mappings=config.field_mappings or {}, budget=rate_budget(), wait=wait,
        save_credentials=save_credentials, load_credentials=load_credentials, cache=metadata_cache())


@contextmanager
def _one_off_adapter(session: Session, config: SyncConfig, credentials: dict | None, vault: Vault | None,
                     account_id: str | None):
    """An adapter for one question at config time, not kept, closed after."""
    vault = vault or process_vault(get_settings().secret_key)
    load = None
    if credentials is None:
        save, load = _saver(config, vault), _loader(config, vault)
        credentials = vault.read(session, config.credentials_vault_id, tenant_id=config.tenant_id)
    else:
        # A secret not stored yet: a token set refreshed on the way is what the caller stores.
        save = credentials.update
    adapter = _adapter(config, credentials, save, account_id=account_id, wait=False, load_credentials=load)
    try:
        yield adapter
    finally:
        adapter.close()


def crm_account_of(session: Session, config: SyncConfig, *, credentials: dict | None = None,
                   vault: Vault | None = None) -> str:
    """Ask the CRM which account the config's credentials (or `credentials`, a secret about to
    replace them) belong to, whatever the config says: HubSpot's account-info details
    (portalId), Pipedrive's users/me (company_id). Raises the adapter's PlatformError."""
    with _one_off_adapter(session, config, credentials, vault, account_id=None) as adapter:
        return str(adapter.account_id())


def ensure_crm_markers(session: Session, config: SyncConfig, entities: list[str], *,
                       vault: Vault | None = None) -> dict[str, str]:
    """`Adapter.ensure_markers` with the config's stored credentials. Raises PlatformError."""
    with _one_off_adapter(session, config, None, vault, account_id=config.account_id) as adapter:
        return adapter.ensure_markers(entities)

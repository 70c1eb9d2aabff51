"""From a config row to a live adapter: open its credentials from the vault, attach the shared
rate budget and metadata cache, and save refreshed OAuth tokens back to the vault."""
from __future__ import annotations

from functools import cache

from sqlalchemy.orm import Session

from crmsync.cache import MetadataCache
from crmsync.credentials import Vault
from crmsync.db.models import SyncConfig
from crmsync.platforms import adapter_class
from crmsync.platforms.base import Adapter
from crmsync.settings import get_settings


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
def metadata_cache() -> MetadataCache:
    return MetadataCache(redis_client())


def connect(session: Session, config: SyncConfig, *, wait: bool = True, vault: Vault | None = None) -> Adapter:
    vault = vault or Vault()
    credentials = vault.read(session, config.credentials_vault_id)
    vault_id = config.credentials_vault_id

    def save_credentials(new: dict) -> None:
        # A refreshed OAuth token set is stored at once, in its own transaction, so a crash
        # later in the task does not leave every worker with a revoked refresh token.
        from crmsync.db import session_scope
        with session_scope() as s:
            vault.replace(s, vault_id, new)

    return adapter_class(config.platform)(
        credentials=credentials, base_url=config.api_base_url, account_id=config.account_id,
        field_mappings=config.field_mappings or {}, budget=rate_budget(), wait=wait,
        save_credentials=save_credentials, cache=metadata_cache())

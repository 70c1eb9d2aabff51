"""Which tenant a request belongs to, and the webhook secret that proves it.

Decrypting a vault entry costs an AES-GCM open plus a row read, on every delivery; the secrets are
kept decrypted in this process for `ttl` seconds (never written anywhere). A verification that
fails with a cached secret is retried once with a fresh read, so a rotated secret works at once.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmsync.credentials import Vault, VaultError
from crmsync.db.models import SyncConfig
from crmsync.ingest.errors import Forbidden


@dataclass(frozen=True)
class ConfigRoute:
    """What the ingest path needs of a config (a plain value, safe to cache across sessions)."""
    id: str
    tenant_id: str
    platform: str
    account_id: str | None
    webhook_secret_vault_id: str | None
    legacy_signatures: bool = False   # the config accepts HubSpot v1/v2 signatures

    @classmethod
    def of(cls, config: SyncConfig) -> ConfigRoute:
        return cls(config.id, config.tenant_id, config.platform, config.account_id,
                   config.webhook_secret_vault_id, bool(config.webhook_legacy_signatures))


class ConfigDirectory:
    """Configs by (platform, account id) and by id. Only hits are cached (briefly), so a config
    created a moment ago is found at once."""

    def __init__(self, ttl: float = 10.0):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._by_account: dict[tuple[str, str], tuple[float, ConfigRoute]] = {}

    def by_accounts(self, session: Session, platform: str, account_ids: set[str]) -> dict[str, ConfigRoute]:
        now = time.monotonic()
        found: dict[str, ConfigRoute] = {}
        with self._lock:
            for account in account_ids:
                hit = self._by_account.get((platform, account))
                if hit and hit[0] > now:
                    found[account] = hit[1]
        missing = account_ids - found.keys()
        if missing:
            rows = session.scalars(select(SyncConfig).where(SyncConfig.platform == platform,
                                                            SyncConfig.account_id.in_(sorted(missing))))
            with self._lock:
                for config in rows:
                    route = ConfigRoute.of(config)
                    found[config.account_id] = route
                    self._by_account[(platform, config.account_id)] = (now + self.ttl, route)
        return found

    def clear(self) -> None:
        with self._lock:
            self._by_account.clear()


class WebhookSecrets:
    def __init__(self, vault_factory=Vault, ttl: float = 60.0, refresh_after: float = 2.0):
        self._vault_factory = vault_factory
        self._vault: Vault | None = None
        self.ttl = ttl
        # A failed check re-reads a cached secret only if it is older than this, so a flood of
        # bad signatures cannot turn into a flood of vault reads.
        self.refresh_after = refresh_after
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, dict]] = {}

    def _open(self, session: Session, tenant_id: str, vault_id: str) -> dict:
        if self._vault is None:
            self._vault = self._vault_factory()
        return self._vault.read(session, vault_id, tenant_id=tenant_id)

    def entry(self, session: Session, tenant_id: str, vault_id: str, *, fresh: bool = False) -> tuple[dict, bool]:
        """The decrypted entry (only ever the config's own tenant's) and whether a fresh read could
        give another (it came from a cache entry older than `refresh_after`). `fresh` skips such a
        cache entry."""
        now = time.monotonic()
        key = (tenant_id, vault_id)
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] > now:
            stale = now - (hit[0] - self.ttl) >= self.refresh_after
            if not (fresh and stale):
                return hit[1], stale
        try:
            value = self._open(session, tenant_id, vault_id)
        except VaultError as err:
            # The deployment's fault, not the caller's; say so without the vault's details.
            raise Forbidden("the webhook secret of this config cannot be read", code="webhook_secret_unavailable") \
                from err
        with self._lock:
            self._cache[key] = (now + self.ttl, value)
        return value, False

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def secret_text(entry: dict) -> str | None:
    """The shared secret of a webhook vault entry: {"secret": ...} (also accepts a bare token)."""
    for key in ("secret", "client_secret", "token", "key"):
        value = entry.get(key)
        if isinstance(value, str) and value:
            return value
    return None

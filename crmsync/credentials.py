"""The credential vault: API tokens, OAuth token sets and webhook secrets, encrypted at rest.

Each secret is a JSON object sealed with AES-256-GCM under a key derived (HKDF-SHA256) from
CRMSYNC_SECRET_KEY; the row id is the associated data, so a ciphertext copied onto another row
does not open. CRMSYNC_SECRET_KEY may list several keys separated by commas: the first seals,
any opens (key rotation). Configs refer to secrets by vault id (`credentials_vault_id`).

Every entry belongs to one tenant: only that tenant's configs may use it, and every read names
the tenant it reads for. An entry stored without a tenant is bound to the tenant of the first
config that uses it (`crmsync.configs.create_config`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as _secrets
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crmsync.errors import Fatal

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from crmsync.db.models import ApiKey, VaultSecret

VAULT_PLATFORMS = ("hubspot", "pipedrive", "salesforce", "webhook", "api")
_FORMAT = b"\x01"
NAME_MAX_CHARS = 200                # the column's length
SECRET_MAX_BYTES = 64 * 1024        # an OAuth token set is a few KB; anything near this is a mistake
# Characters a secret may not hold: one sent in an HTTP header would be refused by the HTTP
# library at every request (and look like a network error, not a wrong token).
_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}
# PEM private keys (JWT bearer flows) are the one kind of value that spans lines.
_MULTILINE_KEYS = ("private_key",)


class VaultError(Fatal):
    """The vault cannot seal or open a secret; the message says which and why, never the secret."""


class VaultKeyMissing(VaultError):
    pass


class VaultKeyMismatch(VaultError):
    pass


class SecretNotFound(VaultError):
    pass


class VaultInputError(VaultError):
    """What the operator gave cannot be stored as asked (a bad name or secret, an entry that
    exists, a platform change of an entry in use): nothing was written."""


def check_name(name: str) -> str:
    text = (name or "").strip()
    if not text:
        raise VaultInputError("--name: a vault entry needs a name")
    if len(text) > NAME_MAX_CHARS:
        raise VaultInputError(f"--name: at most {NAME_MAX_CHARS} characters, got {len(text)}")
    if not text.isprintable():
        raise VaultInputError("--name: only printable characters")
    return text


def _keys(secret_key: str | None) -> list[tuple[bytes, bytes]]:
    if not secret_key:
        raise VaultKeyMissing("CRMSYNC_SECRET_KEY is not set: the credential vault needs it to seal and open "
                              "secrets (generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    out = []
    for part in (p.strip() for p in secret_key.split(",")):
        if len(part) < 16:
            raise VaultKeyMissing("CRMSYNC_SECRET_KEY: each key must be at least 16 characters")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"crmsync-vault", info=b"v1").derive(part.encode())
        out.append((hashlib.sha256(key).digest()[:8], key))
    return out


class Vault:
    def __init__(self, secret_key: str | None = None):
        if secret_key is None:
            from crmsync.settings import get_settings
            secret_key = get_settings().secret_key
        self._keys = _keys(secret_key)

    def seal(self, vault_id: str, value: dict) -> bytes:
        key_id, key = self._keys[0]
        nonce = os.urandom(12)
        plaintext = json.dumps(value, separators=(",", ":")).encode()
        return _FORMAT + key_id + nonce + AESGCM(key).encrypt(nonce, plaintext, vault_id.encode())

    def open(self, vault_id: str, blob: bytes) -> dict:
        if not blob or blob[:1] != _FORMAT:
            raise VaultError(f"vault entry {vault_id} is not in a format this version reads")
        key_id, nonce, ciphertext = blob[1:9], blob[9:21], blob[21:]
        for candidate_id, key in self._keys:
            if hmac.compare_digest(candidate_id, key_id):
                try:
                    return json.loads(AESGCM(key).decrypt(nonce, ciphertext, vault_id.encode()))
                except InvalidTag:
                    break
        raise VaultKeyMismatch(f"CRMSYNC_SECRET_KEY does not open vault entry {vault_id}: the key differs from "
                               "the one that sealed it (rotated without keeping the old key?)")

    # --- rows ---------------------------------------------------------------------------
    def store(self, session: Session, *, name: str, platform: str, value: dict, tenant_id: str | None = None,
              replace: bool = False) -> VaultSecret:
        """Create the secret called `name` (bound to `tenant_id` when given), or with `replace`
        give an existing entry a new secret. An entry in use keeps its platform, and an entry
        never moves to another tenant."""
        from sqlalchemy import select

        from crmsync.db.models import VaultSecret, new_id
        name = check_name(name)
        if platform not in VAULT_PLATFORMS:
            raise VaultInputError(f"unknown platform {platform!r} for a vault entry; expected one of {VAULT_PLATFORMS}")
        check_secret(value)
        row = session.scalar(select(VaultSecret).where(VaultSecret.name == name))
        if row is None:
            row = VaultSecret(id=new_id(), name=name, platform=platform, tenant_id=tenant_id, ciphertext=b"")
            session.add(row)
        else:
            used_by = [c.id for c in configs_using(session, row.id)]
            if not replace:
                raise VaultInputError(f"--name: a vault entry called {name!r} exists"
                                      + (f" (used by configs {', '.join(used_by)})" if used_by else "")
                                      + "; pass --replace to give it a new secret")
            if tenant_id is not None and row.tenant_id not in (None, tenant_id):
                raise VaultInputError(f"--tenant: the vault entry called {name!r} belongs to another tenant")
            if platform != row.platform and used_by:
                raise VaultInputError(f"--platform: the vault entry called {name!r} is a {row.platform} entry used "
                                      f"by configs {', '.join(used_by)}; store a {platform} secret under a new name")
            row.platform = platform
            row.tenant_id = row.tenant_id or tenant_id
        row.ciphertext = self.seal(row.id, value)
        session.flush()
        return row

    def replace(self, session: Session, vault_id: str, value: dict, *, tenant_id: str | None) -> None:
        row = _row(session, vault_id, tenant_id)
        row.ciphertext = self.seal(row.id, value)

    def read(self, session: Session, vault_id: str, *, tenant_id: str | None) -> dict:
        return self.open(vault_id, self.sealed(session, vault_id, tenant_id=tenant_id))

    def sealed(self, session: Session, vault_id: str, *, tenant_id: str | None) -> bytes:
        """The entry as stored (it changes whenever the secret does), without opening it. Only
        `tenant_id`'s entries are found: a config cannot open another tenant's secret, whatever
        id it names."""
        return bytes(_row(session, vault_id, tenant_id).ciphertext)

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        return tuple(key_id for key_id, _ in self._keys)


def _row(session: Session, vault_id: str, tenant_id: str | None) -> VaultSecret:
    from crmsync.db.models import VaultSecret
    row = session.get(VaultSecret, vault_id)
    if row is None or row.tenant_id != tenant_id:
        # The same answer for another tenant's entry as for none at all.
        raise SecretNotFound(f"no vault entry {vault_id} for tenant {tenant_id}")
    return row


def configs_using(session: Session, vault_id: str) -> list:
    """The configs whose credentials or webhook secret this entry is."""
    from sqlalchemy import select

    from crmsync.db.models import SyncConfig
    return list(session.scalars(select(SyncConfig).where(
        (SyncConfig.credentials_vault_id == vault_id) | (SyncConfig.webhook_secret_vault_id == vault_id))
        .order_by(SyncConfig.created_at)))


def check_secret(value: dict, path: str = "") -> None:
    """Refuse values no CRM call could use: control characters (NUL, CR, LF, ...) in a string,
    except line breaks in a PEM private key."""
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if isinstance(item, dict):
            check_secret(item, where)
        elif isinstance(item, str):
            allowed = {"\n", "\r"} if str(key).endswith(_MULTILINE_KEYS) else set()
            if any(ch in _CONTROL and ch not in allowed for ch in item):
                raise VaultInputError(f"the secret's {where} holds a control character (NUL, CR, LF, ...); "
                                      "paste the token alone")


def secret_from_text(platform: str, text: str) -> dict:
    """What an operator pastes (a token, `user:password`, or a JSON object) as the vault's dict.
    Whitespace around it (the newline `echo` adds) is dropped; anything else odd is refused."""
    if len(text.encode("utf-8", "surrogatepass")) > SECRET_MAX_BYTES:
        raise VaultInputError(f"the secret is larger than {SECRET_MAX_BYTES // 1024} KB; paste the token alone")
    text = text.strip()
    if not text:
        raise VaultInputError("the secret is empty")
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            raise VaultInputError("the secret looks like JSON but does not parse") from None
        if not isinstance(value, dict):
            raise VaultInputError("a JSON secret must be an object")
    elif platform == "webhook":
        value = {"secret": text}
    elif platform == "api":
        value = {"key": text}
    else:
        value = {"token": text}
    check_secret(value)
    return value


# --- API keys for POST /events: shown once, stored as SHA-256 ------------------------------
def create_api_key(session: Session, tenant_id: str) -> tuple[ApiKey, str]:
    from crmsync.db.models import ApiKey, new_id
    key = "crm_" + _secrets.token_urlsafe(32)
    row = ApiKey(id=new_id(), tenant_id=tenant_id, key_hash=hash_api_key(key))
    session.add(row)
    session.flush()
    return row, key


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tenant_for_api_key(session: Session, key: str) -> str | None:
    from sqlalchemy import select

    from crmsync.db.models import ApiKey
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None)))
    return row.tenant_id if row else None



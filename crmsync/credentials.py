"""The credential vault: API tokens, OAuth token sets and webhook secrets, encrypted at rest.

Each secret is a JSON object sealed with AES-256-GCM under a key derived (HKDF-SHA256) from
CRMSYNC_SECRET_KEY; the row id is the associated data, so a ciphertext copied onto another row
does not open. CRMSYNC_SECRET_KEY may list several keys separated by commas: the first seals,
any opens (key rotation). Configs refer to secrets by vault id (`credentials_vault_id`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as _secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from crmsync.db.models import ApiKey, VaultSecret, new_id
from crmsync.errors import Fatal

VAULT_PLATFORMS = ("hubspot", "pipedrive", "webhook", "api")
_FORMAT = b"\x01"


class VaultError(Fatal):
    """The vault cannot seal or open a secret; the message says which and why, never the secret."""


class VaultKeyMissing(VaultError):
    pass


class VaultKeyMismatch(VaultError):
    pass


class SecretNotFound(VaultError):
    pass


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
    def store(self, session: Session, *, name: str, platform: str, value: dict) -> VaultSecret:
        """Create or replace the secret called `name`."""
        if platform not in VAULT_PLATFORMS:
            raise VaultError(f"unknown platform {platform!r} for a vault entry; expected one of {VAULT_PLATFORMS}")
        row = session.scalar(select(VaultSecret).where(VaultSecret.name == name))
        if row is None:
            row = VaultSecret(id=new_id(), name=name, platform=platform, ciphertext=b"")
            session.add(row)
        row.platform = platform
        row.ciphertext = self.seal(row.id, value)
        session.flush()
        return row

    def replace(self, session: Session, vault_id: str, value: dict) -> None:
        row = session.get(VaultSecret, vault_id)
        if row is None:
            raise SecretNotFound(f"no vault entry {vault_id}")
        row.ciphertext = self.seal(row.id, value)

    def read(self, session: Session, vault_id: str) -> dict:
        return self.open(vault_id, self.sealed(session, vault_id))

    def sealed(self, session: Session, vault_id: str) -> bytes:
        """The entry as stored (it changes whenever the secret does), without opening it."""
        row = session.get(VaultSecret, vault_id)
        if row is None:
            raise SecretNotFound(f"no vault entry {vault_id}")
        return bytes(row.ciphertext)

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        return tuple(key_id for key_id, _ in self._keys)


def secret_from_text(platform: str, text: str) -> dict:
    """What an operator pastes (a token, `user:password`, or a JSON object) as the vault's dict."""
    text = text.strip()
    if not text:
        raise VaultError("the secret is empty")
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            raise VaultError("the secret looks like JSON but does not parse") from None
        if not isinstance(value, dict):
            raise VaultError("a JSON secret must be an object")
        return value
    if platform == "webhook":
        return {"secret": text}
    if platform == "api":
        return {"key": text}
    return {"token": text}


# --- API keys for POST /events: shown once, stored as SHA-256 ------------------------------
def create_api_key(session: Session, tenant_id: str) -> tuple[ApiKey, str]:
    key = "crm_" + _secrets.token_urlsafe(32)
    row = ApiKey(id=new_id(), tenant_id=tenant_id, key_hash=hash_api_key(key))
    session.add(row)
    session.flush()
    return row, key


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tenant_for_api_key(session: Session, key: str) -> str | None:
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None)))
    return row.tenant_id if row else None



"""HubSpot credentials: a private-app (or service-key) token, or OAuth with refresh.

OAuth access tokens live 30 minutes. We refresh `REFRESH_MARGIN` seconds before expiry (HubSpot
says to refresh on schedule, not on a 401) and once more on an EXPIRED_AUTHENTICATION 401.
Only one refresh per account runs at a time across every worker: a Redis lock when a Redis
client is given, else a process-wide threading lock per account. A worker that waited on the
lock re-checks the token first, so the threads of one process refresh once; other processes
refresh in turn rather than at the same time (HubSpot refresh tokens do not rotate, so each
gets a valid access token).

Tokens never appear in exceptions or logs: errors here carry HubSpot's status code words only.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import requests

from crmsync.platforms.errors import AuthenticationError, TransientError, ValidationError
from crmsync.platforms.http import mask_secrets
from crmsync.platforms.locks import one_at_a_time

from .errors import PLATFORM, parse_body

log = logging.getLogger(__name__)

REFRESH_MARGIN = 300.0        # seconds before expiry we refresh
WORD_LENGTH = 60              # of the token endpoint's status word kept in an error


def fingerprint(secret: str) -> str:
    """A short non-reversible name for a secret (lock keys, budget keys before the portal id is known)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class StaticToken:
    """A private-app token or service key: never expires, never refreshed."""
    oauth = False

    def __init__(self, token: str):
        if not token:
            raise ValidationError("a HubSpot token is required", platform=PLATFORM)
        self._token = token

    def header(self, session: requests.Session, base_url: str) -> str:
        return f"Bearer {self._token}"

    def force_refresh(self, session: requests.Session, base_url: str) -> bool:
        return False

    @property
    def key(self) -> str:
        return fingerprint(self._token)

    def __repr__(self) -> str:
        return "StaticToken(***)"


class OAuthToken:
    """OAuth 2 credentials: client_id, client_secret, refresh_token, optionally a current
    access_token with its expires_at (epoch seconds)."""
    oauth = True

    def __init__(self, credentials: dict, *, redis_client: Any = None, account_id: str | None = None,
                 save_credentials: Callable[[dict], None] | None = None, clock: Callable[[], float] = time.time):
        missing = [k for k in ("client_id", "client_secret", "refresh_token") if not credentials.get(k)]
        if missing:
            raise ValidationError(f"OAuth credentials lack {', '.join(missing)}", platform=PLATFORM)
        self._creds = dict(credentials)
        self._redis = redis_client
        self._account_id = account_id
        self._save = save_credentials
        self._clock = clock
        self.refreshes = 0

    @property
    def key(self) -> str:
        return self._account_id or fingerprint(self._creds["refresh_token"])

    def set_account(self, account_id: str) -> None:
        self._account_id = account_id

    def __repr__(self) -> str:
        return f"OAuthToken(account={self._account_id!r}, ***)"

    def _fresh(self) -> bool:
        token, expires_at = self._creds.get("access_token"), self._creds.get("expires_at")
        return bool(token) and expires_at is not None and float(expires_at) - self._clock() > REFRESH_MARGIN

    def header(self, session: requests.Session, base_url: str) -> str:
        if not self._fresh():
            self._refresh(session, base_url, only_if_stale=True)
        return f"Bearer {self._creds['access_token']}"

    def force_refresh(self, session: requests.Session, base_url: str) -> bool:
        """After an EXPIRED_AUTHENTICATION 401: refresh unless someone just did."""
        seen = self._creds.get("access_token")
        self._refresh(session, base_url, only_if_stale=False, unless_token_changed_from=seen)
        return True

    def _refresh(self, session, base_url, *, only_if_stale: bool, unless_token_changed_from=None) -> None:
        with one_at_a_time(f"crmsync:hubspot:oauth-refresh:{self.key}", self._redis, platform=PLATFORM):
            if only_if_stale and self._fresh():
                return  # another thread refreshed while we waited
            if unless_token_changed_from is not None and self._creds.get("access_token") != unless_token_changed_from:
                return
            self._call_token_endpoint(session, base_url)

    def _call_token_endpoint(self, session: requests.Session, base_url: str) -> None:
        form = {"grant_type": "refresh_token", "client_id": self._creds["client_id"],
                "client_secret": self._creds["client_secret"], "refresh_token": self._creds["refresh_token"]}
        try:
            resp = session.post(f"{base_url}/oauth/v1/token", data=form, timeout=30,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        except requests.RequestException as exc:
            raise TransientError(f"OAuth token refresh failed: {type(exc).__name__}", platform=PLATFORM) from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientError("OAuth token endpoint unavailable", platform=PLATFORM, status=resp.status_code)
        body = parse_body(resp.content)
        if resp.status_code != 200 or not body.get("access_token"):
            # Only HubSpot's status word (BAD_REFRESH_TOKEN, ...) - never the form or the body's tokens.
            # It is the token endpoint's (or a proxy's) text: masked, then cut short.
            word = mask_secrets(str(body.get("status") or body.get("error") or "refused"),
                                [self._creds.get(k) or "" for k in ("client_secret", "refresh_token", "access_token")])
            word = word[:WORD_LENGTH] + ("..." if len(word) > WORD_LENGTH else "")
            raise AuthenticationError(f"OAuth token refresh refused: {word}", platform=PLATFORM,
                                      status=resp.status_code)
        self._creds["access_token"] = body["access_token"]
        if body.get("refresh_token"):
            self._creds["refresh_token"] = body["refresh_token"]
        self._creds["expires_at"] = self._clock() + float(body.get("expires_in") or 1800)
        self.refreshes += 1
        log.info("refreshed HubSpot OAuth token for account %s", self.key)
        if self._save is not None:
            self._save(dict(self._creds))


def make_auth(credentials: str | dict, *, redis_client: Any = None, account_id: str | None = None,
              save_credentials: Callable[[dict], None] | None = None):
    """A str or {"token"|"access_token"|"private_app_token": ...} is a static token; a dict with
    a refresh_token is OAuth."""
    if isinstance(credentials, str):
        return StaticToken(credentials)
    if not isinstance(credentials, dict):
        raise ValidationError("HubSpot credentials must be a token or a dict", platform=PLATFORM)
    if credentials.get("refresh_token"):
        return OAuthToken(credentials, redis_client=redis_client, account_id=account_id,
                          save_credentials=save_credentials)
    token = credentials.get("token") or credentials.get("private_app_token") or credentials.get("access_token") \
        or credentials.get("api_key")
    return StaticToken(token)

"""Pipedrive credentials: an API token (sent only in the `x-api-token` header, never in a URL), or
OAuth with refresh.

OAuth access tokens are refreshed a minute before they expire, and once more after a 401; the
refreshed credentials go to `save_credentials`, refresh token included (the token response carries
one, docs/pipedrive.md §2.2; we keep whatever comes back). One refresh per account runs at a time
across every worker (`crmsync.platforms.locks`); inside the lock we first re-read the freshest saved
copy (`load_credentials`) and skip the token call when another worker or process already refreshed,
so a burst of expired workers makes one token call. Tokens never appear in errors or logs.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from crmsync.platforms.errors import AuthenticationError, TransientError
from crmsync.platforms.locks import one_at_a_time

from .errors import PLATFORM

OAUTH_TOKEN_URL = "https://oauth.pipedrive.com/oauth/token"  # noqa: S105  a URL, not a secret
REFRESH_MARGIN = 60.0
# What a saved copy may update of the credentials we hold: the token set, nothing the config set.
TOKEN_FIELDS = ("access_token", "refresh_token", "expires_at", "api_domain")


class PipedriveAuth:
    """An API token or OAuth credentials {"access_token", "refresh_token", "expires_at" (epoch s),
    "client_id", "client_secret", "api_domain"?}.

    `load_credentials()` returns the credentials as last saved (by any process), or None;
    `redis_client` makes the refresh lock span processes and hosts (else one process)."""

    def __init__(self, api_token: str | None, oauth: Mapping | None, *, token_url: str,
                 save_credentials: Callable[[dict], None] | None = None,
                 load_credentials: Callable[[], Mapping | None] | None = None,
                 redis_client: Any = None, timeout: float = 30.0):
        if not api_token and not (oauth and oauth.get("access_token")):
            raise AuthenticationError("no Pipedrive API token or OAuth access token given", platform=PLATFORM)
        self._api_token = api_token
        self.oauth = dict(oauth) if oauth else None
        self.token_url = token_url
        self.save_credentials = save_credentials
        self.load_credentials = load_credentials
        self.redis = redis_client
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"PipedriveAuth({'oauth' if self.oauth else 'token'}, ***)"

    @property
    def key(self) -> str:
        """A short non-reversible name of the credential (the budget key before the company is known)."""
        secret = self._api_token or (self.oauth or {}).get("refresh_token") or ""
        return hashlib.sha256(secret.encode()).hexdigest()[:16]

    @property
    def can_refresh(self) -> bool:
        return bool(self.oauth and self.oauth.get("refresh_token"))

    def _stale(self) -> bool:
        expires_at = (self.oauth or {}).get("expires_at")
        return bool(expires_at) and float(expires_at) - REFRESH_MARGIN < time.time()

    def headers(self, session: requests.Session, account: str | None = None) -> dict[str, str]:
        if self.oauth:
            if self._stale() and self.can_refresh:
                self.refresh(session, account)
            return {"Authorization": f"Bearer {self.oauth['access_token']}"}
        return {"x-api-token": self._api_token}

    def refresh(self, session: requests.Session, account: str | None = None, *,
                failed_token: str | None = None) -> dict:
        """Get a fresh access token unless another worker just did: one at a time per `account`
        (the budget key). Before expiry, skip when the saved copy is fresh; after a 401 on
        `failed_token`, skip when the saved access token is another one."""
        with one_at_a_time(f"crmsync:pipedrive:oauth-refresh:{account or self.key}", self.redis,
                           platform=PLATFORM):
            self._reload()
            if failed_token is not None:
                refreshed = (self.oauth or {}).get("access_token") != failed_token
            else:
                refreshed = not self._stale()
            if refreshed:
                return dict(self.oauth or {})
            return self._call_token_endpoint(session)

    def _reload(self) -> None:
        """Take the token set last saved by any worker: ours may be one it has since replaced."""
        if self.load_credentials is None or not self.oauth:
            return
        saved = self.load_credentials() or {}
        if saved.get("access_token"):
            self.oauth = dict(self.oauth, **{k: saved[k] for k in TOKEN_FIELDS if k in saved})

    def _call_token_endpoint(self, session: requests.Session) -> dict:
        """Exchange the refresh token for a new access token (Basic client auth, form body)."""
        oauth = self.oauth or {}
        if not (oauth.get("refresh_token") and oauth.get("client_id") and oauth.get("client_secret")):
            raise AuthenticationError("OAuth access token expired and cannot be refreshed", platform=PLATFORM)
        try:
            response = session.post(
                self.token_url, data={"grant_type": "refresh_token", "refresh_token": oauth["refresh_token"]},
                auth=(oauth["client_id"], oauth["client_secret"]), timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransientError(f"OAuth refresh failed: {type(exc).__name__}", platform=PLATFORM) from None
        if response.status_code >= 500:
            raise TransientError("OAuth refresh failed", platform=PLATFORM, status=response.status_code)
        if response.status_code != 200:
            raise AuthenticationError("OAuth refresh refused; the app must be reinstalled",
                                      platform=PLATFORM, status=response.status_code)
        token = response.json()
        oauth = dict(oauth, access_token=token["access_token"],
                     refresh_token=token.get("refresh_token", oauth["refresh_token"]),
                     expires_at=time.time() + float(token.get("expires_in", 3600)))
        if token.get("api_domain"):
            oauth["api_domain"] = token["api_domain"]
        self.oauth = oauth
        if self.save_credentials is not None:
            self.save_credentials(dict(oauth))
        return oauth

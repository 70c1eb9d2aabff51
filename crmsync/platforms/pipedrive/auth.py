"""Pipedrive credentials: an API token (sent only in the `x-api-token` header, never in a URL), or
OAuth with refresh.

OAuth access tokens are refreshed a minute before they expire, and once more after a 401; the
refreshed credentials go to `save_credentials` (Pipedrive rotates refresh tokens, so losing the
new one would lock the account out). Tokens never appear in errors or logs.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping

import requests

from crmsync.platforms.errors import AuthenticationError, TransientError

from .errors import PLATFORM

OAUTH_TOKEN_URL = "https://oauth.pipedrive.com/oauth/token"
REFRESH_MARGIN = 60.0


class PipedriveAuth:
    """An API token or OAuth credentials {"access_token", "refresh_token", "expires_at" (epoch s),
    "client_id", "client_secret", "api_domain"?}."""

    def __init__(self, api_token: str | None, oauth: Mapping | None, *, token_url: str,
                 save_credentials: Callable[[dict], None] | None = None, timeout: float = 30.0):
        if not api_token and not (oauth and oauth.get("access_token")):
            raise AuthenticationError("no Pipedrive API token or OAuth access token given", platform=PLATFORM)
        self._api_token = api_token
        self.oauth = dict(oauth) if oauth else None
        self.token_url = token_url
        self.save_credentials = save_credentials
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

    def headers(self, session: requests.Session) -> dict[str, str]:
        if self.oauth:
            expires_at = self.oauth.get("expires_at")
            if expires_at and float(expires_at) - REFRESH_MARGIN < time.time() and self.can_refresh:
                self.refresh(session)
            return {"Authorization": f"Bearer {self.oauth['access_token']}"}
        return {"x-api-token": self._api_token}

    def refresh(self, session: requests.Session) -> dict:
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

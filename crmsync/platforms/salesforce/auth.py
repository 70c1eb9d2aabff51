"""Salesforce sessions: the OAuth 2.0 refresh-token flow, the JWT bearer flow, or a fixed session.

* refresh token (credentials ``client_id``, ``client_secret``, ``refresh_token``): POST
  ``grant_type=refresh_token`` to ``{login}/services/oauth2/token``
  (https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_refresh_token_flow.htm);
* JWT bearer (``client_id`` = consumer key, ``username``, ``private_key`` PEM): an RS256 assertion
  with ``iss``, ``sub``, ``aud`` = the login URL and ``exp`` a few minutes ahead; no refresh token
  comes back, a new assertion is minted each time
  (https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_jwt_flow.htm);
* a fixed ``access_token`` + ``instance_url``: used until it ends, then an AuthenticationError.

The token answer carries ``instance_url`` (every API call goes there, not to the login host) and
``id`` = ``…/id/{organization id}/{user id}``: the org id is the account crmsync keys everything on.
It carries no ``expires_in``: a session lasts the org's timeout, so we refresh when a call answers
401 INVALID_SESSION_ID (and when we hold no session yet). One refresh per org at a time across
every worker (``crmsync.platforms.locks``); a worker that waited re-checks the session first.
Tokens never appear in exceptions or logs.
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

from .errors import PLATFORM

log = logging.getLogger(__name__)

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME = 180   # seconds: the assertion only has to outlive its one token call


def org_id_of(identity_url: str | None) -> str | None:
    """The organization id in an identity URL ``https://login.salesforce.com/id/{org}/{user}``."""
    parts = str(identity_url or "").rstrip("/").split("/")
    return parts[-2] if len(parts) >= 3 and parts[-3] == "id" else None


class SalesforceAuth:
    def __init__(self, credentials: dict, *, base_url: str | None = None, redis_client: Any = None,
                 save_credentials: Callable[[dict], None] | None = None):
        if not isinstance(credentials, dict):
            raise ValidationError("Salesforce credentials must be a dict", platform=PLATFORM)
        self._creds = dict(credentials)
        self._redis = redis_client
        self._save = save_credentials
        if self._creds.get("refresh_token"):
            self.kind = "refresh"
            need = ("client_id", "refresh_token")
        elif self._creds.get("private_key"):
            self.kind = "jwt"
            need = ("client_id", "username", "private_key")
        else:
            self.kind = "static"
            need = ("access_token",)
        missing = [k for k in need if not self._creds.get(k)]
        if missing:
            raise ValidationError(f"Salesforce credentials lack {', '.join(missing)}", platform=PLATFORM)
        self.login_url = (self._creds.get("login_url") or base_url or DEFAULT_LOGIN_URL).rstrip("/")
        self.instance_url = (self._creds.get("instance_url") or base_url or "").rstrip("/") or None
        self.org_id = self._creds.get("org_id") or org_id_of(self._creds.get("id"))
        self.refreshes = 0

    @property
    def refreshable(self) -> bool:
        return self.kind != "static"

    @property
    def key(self) -> str:
        """Names this org's lock (and budget before the org id is known), never the secret itself."""
        if self.org_id:
            return self.org_id
        secret = self._creds.get("refresh_token") or self._creds.get("username") or self._creds.get("access_token")
        return "cred-" + hashlib.sha256(f"{self._creds.get('client_id')}:{secret}".encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SalesforceAuth(kind={self.kind!r}, org={self.org_id!r}, ***)"

    def header(self, session: requests.Session) -> str:
        if not self._creds.get("access_token"):
            if not self.refreshable:
                raise AuthenticationError("no Salesforce session", platform=PLATFORM)
            self._refresh(session, unless_token_changed_from=None)
        return f"Bearer {self._creds['access_token']}"

    def force_refresh(self, session: requests.Session, failed_header: str) -> bool:
        """After a 401 INVALID_SESSION_ID on a call sent with `failed_header`: a new session,
        unless another thread already replaced that one."""
        if not self.refreshable:
            return False
        self._refresh(session, unless_token_changed_from=failed_header.removeprefix("Bearer "))
        return True

    def _refresh(self, session: requests.Session, *, unless_token_changed_from: str | None) -> None:
        with one_at_a_time(f"crmsync:salesforce:oauth-refresh:{self.key}", self._redis, platform=PLATFORM):
            current = self._creds.get("access_token")
            if unless_token_changed_from is None and current:
                return  # someone refreshed while we waited for the lock
            if unless_token_changed_from is not None and current and current != unless_token_changed_from:
                return  # another thread replaced the session that failed
            self._call_token_endpoint(session)

    def _form(self) -> dict:
        if self.kind == "refresh":
            form = {"grant_type": "refresh_token", "client_id": self._creds["client_id"],
                    "refresh_token": self._creds["refresh_token"]}
            if self._creds.get("client_secret"):
                form["client_secret"] = self._creds["client_secret"]
            return form
        import jwt
        claims = {"iss": self._creds["client_id"], "sub": self._creds["username"],
                  "aud": self._creds.get("audience") or self.login_url, "exp": int(time.time()) + JWT_LIFETIME}
        try:
            assertion = jwt.encode(claims, self._creds["private_key"], algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError):
            raise ValidationError("the JWT private_key is not a usable RSA key", platform=PLATFORM) from None
        return {"grant_type": JWT_GRANT, "assertion": assertion}

    def _call_token_endpoint(self, session: requests.Session) -> None:
        url = self._creds.get("token_url") or f"{self.login_url}/services/oauth2/token"
        try:
            form = self._form()
            resp = session.post(url, data=form, timeout=30,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        except requests.RequestException as exc:
            raise TransientError(f"OAuth token call failed: {type(exc).__name__}", platform=PLATFORM) from None
        if resp.status_code >= 500:
            raise TransientError("OAuth token endpoint unavailable", platform=PLATFORM, status=resp.status_code)
        try:
            body = resp.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if resp.status_code != 200 or not body.get("access_token"):
            # Only Salesforce's error word (invalid_grant, ...), never the form or a token: it is the
            # endpoint's (or a proxy's) text, so masked before it is cut (a cut token is not found).
            word = mask_secrets(str(body.get("error") or "refused"),
                                [form.get(k) or "" for k in ("refresh_token", "client_secret", "assertion")])[:40]
            raise AuthenticationError(f"OAuth token call refused: {word}", platform=PLATFORM, status=resp.status_code)
        self._creds["access_token"] = body["access_token"]
        if body.get("instance_url"):
            self.instance_url = self._creds["instance_url"] = str(body["instance_url"]).rstrip("/")
        if body.get("id"):
            self._creds["id"] = body["id"]
            self.org_id = org_id_of(body["id"]) or self.org_id
        self.refreshes += 1
        log.info("new Salesforce session for org %s", self.org_id or "(unknown)")
        if self._save is not None:
            self._save(dict(self._creds))

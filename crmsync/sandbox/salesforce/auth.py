"""The OAuth 2.0 token endpoint and session checks of the Salesforce sandbox.

Follows "OAuth 2.0 Refresh Token Flow" (https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_refresh_token_flow.htm)
and "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration"
(https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_jwt_flow.htm):
``POST /services/oauth2/token``, form-encoded;
* ``grant_type=refresh_token`` with ``client_id`` (and ``client_secret``) and ``refresh_token``
  answers ``access_token``, ``signature``, ``scope``, ``instance_url``, ``id``, ``token_type``,
  ``issued_at`` — no ``expires_in``: a session lasts the org's timeout and its end shows as a 401;
* ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with an RS256-signed ``assertion``
  (``iss`` = consumer key, ``sub`` = username, ``aud`` = the login URL, ``exp``) checked against the
  certificate registered for the connected app; the answer carries no refresh token;
* errors are ``400 {"error": "invalid_grant"|"invalid_client_id"|"invalid_client"|
  "unsupported_grant_type", "error_description": ...}``.
* ``id`` is ``{login}/id/{organization id}/{user id}``; ``GET /services/oauth2/userinfo`` names the
  organization too ("UserInfo Endpoint", https://help.salesforce.com/s/articleView?id=sf.remoteaccess_using_userinfo_endpoint.htm).
A REST call with an unknown or expired session answers ``401 [{"message": "Session expired or
invalid", "errorCode": "INVALID_SESSION_ID"}]`` (errorcodes.htm).
"""
from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import parse_qsl

from .errors import ApiError
from .values import make_id

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
USER_ID = make_id("005", 1)


class Sessions:
    def __init__(self, org_id: str):
        self.org_id = org_id
        self.lock = threading.Lock()
        self.access: dict[str, float | None] = {}     # token -> expires at (epoch), None = never
        self.refresh: set[str] = set()
        self.jwt_keys: dict[str, tuple[str, str]] = {}   # consumer key -> (public key PEM, username)
        self.issued = 0

    def reset(self) -> None:
        with self.lock:
            self.access.clear()
            self.refresh.clear()
            self.jwt_keys.clear()
            self.issued = 0

    def new_access(self, lifetime: float | None) -> str:
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(24)}"
        with self.lock:
            self.access[token] = None if lifetime is None else time.time() + lifetime
            self.issued += 1
        return token

    def new_refresh(self) -> str:
        token = "5Aep" + secrets.token_urlsafe(30)
        with self.lock:
            self.refresh.add(token)
        return token

    def expire_all(self) -> int:
        with self.lock:
            n = len(self.access)
            self.access = {t: 0.0 for t in self.access}
            return n

    def check(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        with self.lock:
            expires = self.access.get(token, 0.0) if scheme.lower() in ("bearer", "oauth") and token else 0.0
        if expires is not None and expires <= time.time():
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid",
                           headers={"WWW-Authenticate": 'Token'})
        return token


def _error(error: str, description: str, status: int = 400) -> tuple[int, dict]:
    return status, {"error": error, "error_description": description}


def token_endpoint(sessions: Sessions, options, body: bytes, content_type: str, instance_url: str
                   ) -> tuple[int, dict]:
    if "x-www-form-urlencoded" not in (content_type or ""):
        return _error("invalid_request", "must use application/x-www-form-urlencoded")
    form = dict(parse_qsl(body.decode("utf-8", "replace")))
    grant = form.get("grant_type")
    identity = f"{instance_url}/id/{sessions.org_id}/{USER_ID}"
    if grant == "refresh_token":
        if form.get("client_id") != options.client_id:
            return _error("invalid_client_id", "client identifier invalid")
        if form.get("client_secret") is not None and form["client_secret"] != options.client_secret:
            return _error("invalid_client", "invalid client credentials")
        with sessions.lock:
            known = form.get("refresh_token") in sessions.refresh
        if not known:
            return _error("invalid_grant", "expired access/refresh token")
        access = sessions.new_access(options.session_seconds or None)
        return 200, {"access_token": access, "signature": secrets.token_urlsafe(32), "scope": "api refresh_token",
                     "instance_url": instance_url, "id": identity, "token_type": "Bearer",
                     "issued_at": str(int(time.time() * 1000))}
    if grant == JWT_GRANT:
        import jwt
        assertion = form.get("assertion") or ""
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return _error("invalid_grant", "invalid assertion")
        with sessions.lock:
            registered = sessions.jwt_keys.get(str(issuer))
        if registered is None:
            return _error("invalid_client_id", "client identifier invalid")
        key, username = registered
        try:
            claims = jwt.decode(assertion, key, algorithms=["RS256"], audience=[*LOGIN_AUDIENCES, instance_url],
                                options={"require": ["exp", "iss", "sub", "aud"]})
        except jwt.PyJWTError:
            return _error("invalid_grant", "invalid assertion")
        if claims.get("sub") != username:
            return _error("invalid_grant", "user hasn't approved this consumer")
        access = sessions.new_access(options.session_seconds or None)
        return 200, {"access_token": access, "scope": "api", "instance_url": instance_url, "id": identity,
                     "token_type": "Bearer"}
    return _error("unsupported_grant_type", "grant type not supported")


def userinfo(sessions: Sessions, instance_url: str, username: str) -> dict:
    return {"sub": f"{instance_url}/id/{sessions.org_id}/{USER_ID}", "user_id": USER_ID,
            "organization_id": sessions.org_id, "preferred_username": username, "email": username,
            "zoneinfo": "Etc/UTC", "active": True}

"""The operations console: a small Flask app, server-rendered (Jinja) with htmx for the parts of a
page that update in place. It reviews held conflicts field by field, keeps and shows the audit
trail of resolutions, and shows every config's sync health.

gunicorn runs `"crmsync.opsconsole:create_app()"` (the image the ingest app uses);
`crmsync console serve` runs it for development. Sign-in is required everywhere but /login and
/static; every form carries a CSRF token (Flask-WTF); a session ends after
CRMSYNC_CONSOLE_SESSION_MINUTES without a request (the signed cookie's age is checked by Flask on
every request) and after 12 hours in any case. The session cookie is signed with a key derived
from CRMSYNC_SECRET_KEY, so every console process behind a load balancer accepts it. Signing out
ends every session of that user (a copied cookie included): the cookie carries the user's session
generation, which sign-out moves on. CRMSYNC_CONSOLE_SECURE_COOKIES=true keeps the cookie to
HTTPS, for a console served behind TLS.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from crmsync.automation import subscribe
from crmsync.settings import Settings, SettingsError, get_settings

log = logging.getLogger(__name__)
MAX_SESSION_HOURS = 12


def session_key(secret_key: str) -> bytes:
    """The cookie-signing key: derived, so the vault key itself never signs anything a browser holds."""
    return hmac.new(secret_key.encode(), b"crmsync operations console sessions", hashlib.sha256).digest()


def create_app(settings: Settings | None = None, *, secure_cookies: bool | None = None) -> Flask:
    settings = settings or get_settings()
    if not settings.secret_key:
        raise SettingsError("CRMSYNC_SECRET_KEY", "the console signs its sessions with a key derived from it; set it")
    subscribe()   # a resolution applies records (and may push inline): the rules hear of it
    app = Flask("crmsync.opsconsole")
    app.config.update(
        SECRET_KEY=session_key(settings.secret_key),
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.console_session_minutes),
        SESSION_COOKIE_NAME="crmsync_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.console_secure_cookies if secure_cookies is None else secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,           # the token lives as long as the session that holds it
        MAX_CONTENT_LENGTH=1_048_576,
    )
    app.extensions["crmsync_console_settings"] = settings
    CSRFProtect(app)
    from crmsync.opsconsole.views import bp, register_filters
    app.register_blueprint(bp)
    register_filters(app)
    return app


__all__ = ["create_app"]

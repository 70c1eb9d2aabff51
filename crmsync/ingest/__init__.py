"""The ingest app: the thin front door for CRM webhooks, product events and the cron trigger.

gunicorn runs `"crmsync.ingest:create_app()"`; `crmsync ingest serve` runs it for development.
Every answer is JSON; every refusal is a 4xx `{"error": code, "message": ...}` with nothing written.

Behind a reverse proxy, signatures need the URI the CRM called, not the one the proxy forwarded:
set CRMSYNC_INGEST_PROXY_HOPS=N to trust N hops of X-Forwarded-Proto/Host/Port/Prefix, or
CRMSYNC_INGEST_PUBLIC_URL=https://hooks.example.com to fix scheme and host outright. Neither is
trusted by default (a caller could otherwise choose the URI that gets signed).
A CRM webhook request is stored whole (one row, `crm_webhook_deliveries`) and answered; a worker
splits it into deduplicated `crm_webhook_events` (crmsync.events.processing). CRMSYNC_INGEST_COALESCE_SECONDS
(default 0.25, crmsync.settings) then delays the events' processing so bursts share a fetch.
"""
from __future__ import annotations

import logging
import secrets
import threading
from urllib.parse import urlsplit

from flask import Flask, Request, jsonify
from werkzeug.exceptions import HTTPException

from crmsync.automation import subscribe
from crmsync.ingest.errors import IngestError
from crmsync.ingest.relay import OutboxRelay
from crmsync.ingest.tenancy import ConfigDirectory, WebhookSecrets
from crmsync.settings import Settings, SettingsError, configure_logging, get_settings
from crmsync.tasks.names import SPLIT_DELIVERIES

log = logging.getLogger(__name__)


class IngestState:
    """Per-app state: settings, the session factory and the short-lived caches."""

    def __init__(self, settings: Settings, *, public_url: str | None = None):
        from crmsync.db import get_engine, sessionmaker_for
        self.settings = settings
        # Same pool; a connection taken through it runs each statement as its own transaction.
        self.autocommit_engine = get_engine(settings.database_url).execution_options(isolation_level="AUTOCOMMIT")
        self.sessions = sessionmaker_for(settings.database_url)
        self.max_body_bytes = settings.webhook_max_body_bytes
        self.cron_secret = settings.cron_secret
        self.public_url = public_url.rstrip("/") if public_url else None
        # Checks deliveries no configured secret can check, so they are refused like wrong ones.
        # Shaped as every CRM's secret may be (Pipedrive's is user:password), so checking a
        # request against it fails exactly as a wrong secret does.
        self.decoy_secret = f"{secrets.token_hex(8)}:{secrets.token_urlsafe(32)}"
        self.configs = ConfigDirectory()
        self.secrets = WebhookSecrets()
        self._broker = None
        self._broker_lock = threading.Lock()
        self.relay = OutboxRelay(together=frozenset({SPLIT_DELIVERIES}))

    def dispatch(self, task: str, ids: list[str]) -> None:
        """Publish `task` for rows this request committed, through the process's outbox relay: the
        request answers at once, and without a broker the tasks run in the relay's thread instead
        of inside the request (CRM fetches, retries with sleeps) while the CRM waits for its answer."""
        self.relay.put(task, ids)

    def uri_of(self, request: Request) -> str:
        from crmsync.ingest.inbound import called_uri
        uri = called_uri(request)
        if self.public_url:
            parts = urlsplit(uri)
            return self.public_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return uri

    def broker_status(self) -> str:
        url = self.settings.broker_url
        if not url:
            return "inline"
        try:
            if url.startswith(("redis://", "rediss://")):
                with self._broker_lock:
                    if self._broker is None:
                        import redis
                        self._broker = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
                self._broker.ping()
            elif url.startswith("memory://"):
                pass
            else:
                from kombu import Connection
                with Connection(url, connect_timeout=1) as conn:
                    conn.ensure_connection(max_retries=1)
            return "ok"
        except Exception as err:  # noqa: BLE001  any failure means "not ready"; the type says which
            return f"unreachable: {type(err).__name__}"


def create_app(settings: Settings | None = None, *, proxy_hops: int | None = None,
               public_url: str | None = None) -> Flask:
    settings = settings or get_settings()
    configure_logging(settings)
    proxy_hops = settings.ingest_proxy_hops if proxy_hops is None else proxy_hops
    public_url = public_url if public_url is not None else settings.ingest_public_url
    if public_url and urlsplit(public_url).scheme not in ("http", "https"):
        raise SettingsError("CRMSYNC_INGEST_PUBLIC_URL", "expected an http:// or https:// URL")

    subscribe()   # without a broker the app runs the webhook processing inline: the rules hear of it
    app = Flask("crmsync.ingest")
    # One byte over our limit: werkzeug stops a chunked body silently at this bound, so the byte
    # past our own limit must still be readable for raw_body to see the body is too large.
    # Only the methods each route names: an automatic OPTIONS answered 200 where the document says 405.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_body_bytes + 1
    app.json.sort_keys = False
    app.extensions["crmsync_ingest"] = IngestState(settings, public_url=public_url)
    if proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxy_hops, x_proto=proxy_hops, x_host=proxy_hops,
                                x_port=proxy_hops, x_prefix=proxy_hops)

    from crmsync.ingest.routes import bp
    app.register_blueprint(bp)
    _register_error_handlers(app)
    app.after_request(_count_request)
    # This app serves GET /metrics: its process counts from the start (crmsync.metrics makes its
    # metrics, and imports prometheus_client, only in a process that does).
    from crmsync import metrics
    metrics.start_process()
    return app


def _count_request(response):
    from flask import request

    from crmsync.metrics import count_ingest_request
    count_ingest_request(request.endpoint, response.status_code)
    return response


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_").replace(" ", "_")


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(IngestError)
    def _ingest_error(err: IngestError):
        return jsonify(err.body()), err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        code = {413: "body_too_large", 404: "not_found", 405: "method_not_allowed"}.get(
            err.code or 0, _snake(type(err).__name__))
        response = jsonify({"error": code, "message": err.description or err.name})
        response.status_code = err.code or 400
        if err.code == 405:
            allow = err.get_response().headers.get("Allow")
            if allow:
                response.headers["Allow"] = allow
        return response

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        # A real bug: full detail in our log, none in the answer.
        log.error("unhandled error in the ingest app", exc_info=err)
        return jsonify({"error": "internal_error", "message": "internal error; see the server log"}), 500


__all__ = ["create_app"]

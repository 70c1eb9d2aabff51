"""The ingest endpoints (contract: docs/cli.md). Each one checks who is calling, writes one row (a
CRM delivery, stored whole; or a product event), commits, hands the id to the outbox relay and
answers. No sync work here; a worker splits a delivery into its events (crmsync.events.processing).

Order of checks: size, then who (tenant, signature/credentials), then shape — so an unauthenticated
caller learns nothing about what a valid body looks like, and nothing is written before all pass.
HubSpot's route reads the portals the body names first (they say whose secret signs it), and
answers a portal without a config exactly as it answers a wrong signature.
"""
from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections import Counter
from typing import NoReturn

from flask import Blueprint, Response, current_app, request
from sqlalchemy import select, text
from sqlalchemy.exc import DataError

from crmsync.credentials import tenant_for_api_key
from crmsync.db.models import SyncConfig, WebhookEvent
from crmsync.db.types import utcnow
from crmsync.ingest.errors import (
    Forbidden,
    InvalidEvent,
    MalformedBody,
    NotConfigured,
    Unauthenticated,
    UnknownEventType,
)
from crmsync.ingest.inbound import bearer_token, parse_json, raw_body, require_json_type, require_xml_type
from crmsync.ingest.product_events import PRODUCT_EVENTS, ProductEventInvalid, normalize_product_event
from crmsync.ingest.store import delivery_row, insert_deliveries, insert_events
from crmsync.ingest.tenancy import ConfigRoute, secret_text
from crmsync.platforms import adapter_class
from crmsync.platforms.base import WebhookRequest
from crmsync.platforms.errors import WebhookRejected
from crmsync.tasks.names import RUN_AUTOMATION, SPLIT_DELIVERIES

log = logging.getLogger(__name__)
bp = Blueprint("ingest", __name__)

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def _state():
    return current_app.extensions["crmsync_ingest"]


def _body() -> bytes:
    return raw_body(request, _state().max_body_bytes)


def _webhook_request(body: bytes) -> WebhookRequest:
    return WebhookRequest(method=request.method, url=_state().uri_of(request), headers=dict(request.headers),
                          body=body)


def _event_accounts(adapter, body: bytes) -> list[str | None]:
    """The CRM account of each event of the delivery, the body checked as the split will parse it."""
    try:
        accounts = adapter.webhook_accounts(body)
    except WebhookRejected as err:
        raise MalformedBody(err.message) from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        # An adapter that trips over odd input is a bug to fix there, but the sender still only
        # sent a body we cannot read: 400, and the type in our log.
        log.warning("%s webhook parser raised %s on a delivery", adapter.platform, type(err).__name__)
        raise MalformedBody("not a webhook payload this endpoint reads") from None
    if not accounts:
        raise MalformedBody("the delivery holds no events")
    return accounts


def _verify(session, adapter, route: ConfigRoute, webhook: WebhookRequest) -> None:
    state = _state()
    if not route.webhook_secret_vault_id:
        log.warning("config %s has no webhook secret; its %s deliveries are refused", route.id, route.platform)
        _refuse_as_wrongly_signed(adapter, webhook)
    entry, refreshable = state.secrets.entry(session, route.tenant_id, route.webhook_secret_vault_id)
    try:
        _check_signature(adapter, route, webhook, entry)
        return
    except WebhookRejected as err:
        if not refreshable:
            raise _rejected(err) from None
    # The cached secret may be stale (rotated); one fresh read decides.
    entry, _ = state.secrets.entry(session, route.tenant_id, route.webhook_secret_vault_id, fresh=True)
    try:
        _check_signature(adapter, route, webhook, entry)
    except WebhookRejected as err:
        raise _rejected(err) from None


def _check_signature(adapter, route: ConfigRoute, webhook: WebhookRequest, entry: dict) -> None:
    secret = webhook_secret(entry)
    if not secret:
        log.warning("the webhook secret of config %s holds no secret; its deliveries are refused", route.id)
        _refuse_as_wrongly_signed(adapter, webhook)
    adapter.verify_webhook(webhook, secret, max_age_seconds=_state().settings.webhook_tolerance_seconds,
                           legacy_signatures=route.legacy_signatures)


def _refuse_as_wrongly_signed(adapter, webhook: WebhookRequest) -> NoReturn:
    """Refuse a delivery no secret of ours can check (no config for its account, or a config without
    a secret) with exactly the answer a wrong signature gets: the request checked against a random
    secret of this process. A different answer would let anyone list the configured accounts."""
    try:
        adapter.verify_webhook(webhook, _state().decoy_secret,
                               max_age_seconds=_state().settings.webhook_tolerance_seconds)
    except WebhookRejected as err:
        raise _rejected(err) from None
    raise Unauthenticated("webhook signature does not match", code="signature_rejected")


def webhook_secret(entry: dict) -> str | None:
    """The shared secret; Pipedrive entries may also be {"user": ..., "password": ...}."""
    if isinstance(entry.get("user"), str) and isinstance(entry.get("password"), str):
        return f"{entry['user']}:{entry['password']}"
    return secret_text(entry)


def _rejected(err: WebhookRejected) -> Unauthenticated:
    status = err.http_status if 400 <= (err.http_status or 0) < 500 else 401
    return Unauthenticated(err.message, code="signature_rejected" if status == 401 else "webhook_rejected",
                           status=status)


def _store_events(session, rows) -> list[str]:
    """Product events: one row each, written in the request (one per request, unlike CRM deliveries)."""
    try:
        new_ids = insert_events(session, rows)
        session.commit()
    except DataError:
        # e.g. a \u0000 inside a string, which jsonb refuses: the body's fault, not ours.
        session.rollback()
        raise MalformedBody("a value in the body cannot be stored (NUL character or out-of-range number)") \
            from None
    return new_ids


def _store_deliveries(rows) -> list[str]:
    """The request's only write: the delivery as received, committed before the answer (the outbox).
    Its events reach `crm_webhook_events`, deduplicated, when a worker splits it
    (crmsync.events.processing.split_deliveries).

    One INSERT statement in autocommit: it is atomic on its own, and durable when it returns; an
    explicit transaction would add a BEGIN and a COMMIT round trip to every webhook request."""
    with _state().autocommit_engine.connect() as conn:
        return insert_deliveries(conn, rows)


def _text(body: bytes) -> str:
    # JSON on the wire is UTF-8 (RFC 8259 §8.1); stored as text, it is the same bytes signed.
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("the body is not UTF-8") from None


def _received(event_accounts: list, delivery_ids: list[str]) -> tuple[dict, int]:
    return {"received": len(event_accounts), "deliveries": delivery_ids}, 200


# --- CRM webhooks ----------------------------------------------------------------------------------
@bp.post("/webhooks/hubspot")
def hubspot_webhook():
    state = _state()
    body = _body()
    require_json_type(request)
    adapter = adapter_class("hubspot")
    # Whose secret signs it is in the body: only the portal ids are read before the signature is
    # checked (with the depth cap of every inbound body); the events' shape only after.
    try:
        signers = adapter.webhook_signers(body)
    except WebhookRejected as err:
        raise MalformedBody(err.message) from None
    webhook = _webhook_request(body)
    with state.sessions() as session:
        routes = state.configs.by_accounts(session, "hubspot", signers)
        if signers - routes.keys():
            _refuse_as_wrongly_signed(adapter, webhook)
        # Every config a delivery touches must accept the signature (one per portal in practice).
        for route in {r.id: r for r in routes.values()}.values():
            _verify(session, adapter, route, webhook)
        event_accounts = _event_accounts(adapter, body)
        body_text = _text(body)
        received = utcnow()
        per_account = Counter(event_accounts)
        rows = [delivery_row(tenant_id=r.tenant_id, config_id=r.id, platform="hubspot", account_id=account,
                             event_account_id=account, body=body_text, events=per_account[account], received_at=received)
                for account, r in routes.items()]
        ids = _store_deliveries(rows)
    state.dispatch(SPLIT_DELIVERIES, ids)
    return _received(event_accounts, ids)


def _config_route(session, adapter, webhook: WebhookRequest, platform: str, config_id: str) -> ConfigRoute:
    """The config a per-config webhook URL names (Pipedrive, Salesforce). An id that names no
    config of this CRM gets the answer of a wrong secret, so nobody can probe which ids exist."""
    try:
        config = session.get(SyncConfig, str(uuid.UUID(config_id)))
    except ValueError:
        config = None
    if config is None or config.platform != platform:
        log.info("%s delivery for an id that names no %s config", platform, platform)
        _refuse_as_wrongly_signed(adapter, webhook)
    return ConfigRoute.of(config)


@bp.post("/webhooks/pipedrive/<config_id>")
def pipedrive_webhook(config_id: str):
    """Pipedrive webhooks (v1 or v2 payload) for one config, HTTP Basic auth."""
    return _per_config_delivery("pipedrive", config_id)


@bp.post("/webhooks/salesforce/<config_id>")
def salesforce_webhook(config_id: str):
    """Outbound Messages (SOAP) for one config. Salesforce signs nothing: the `token` query
    parameter on the endpoint URL (the config's webhook secret; a config without one refuses every
    message, as for the other CRMs), the config id in the path and the OrganizationId in the body
    (must be the config's org) prove the sender. The answer is the SOAP Ack Salesforce retries
    until it gets; repeats are deduplicated by notification id at the split."""
    return _per_config_delivery("salesforce", config_id)


def _per_config_delivery(platform: str, config_id: str):
    """A CRM whose webhook URL names the config: find it, check the secret, then the body's type
    and that every event is of the config's account; store the delivery whole and answer."""
    state = _state()
    body = _body()
    adapter = adapter_class(platform)
    with state.sessions() as session:
        webhook = _webhook_request(body)
        route = _config_route(session, adapter, webhook, platform, config_id)
        _verify(session, adapter, route, webhook)
        (require_xml_type if adapter.webhook_content_type == "xml" else require_json_type)(request)
        event_accounts = _event_accounts(adapter, body)
        if adapter.webhook_needs_account and not route.account_id:
            raise Forbidden(f"config {route.id} names no {platform} account id to check deliveries against",
                            code="account_unknown")
        for account in set(event_accounts):
            if route.account_id and account and not adapter.same_account(account, route.account_id):
                # Credentials shared between two accounts of the CRM: the data is not this config's.
                raise Forbidden(f"event of {platform} account {str(account)[:64]} sent to the config of "
                                f"account {route.account_id}", code="account_mismatch")
        row = delivery_row(tenant_id=route.tenant_id, config_id=route.id, platform=platform,
                           account_id=route.account_id or route.id, body=_text(body), events=len(event_accounts),
                           received_at=utcnow())
        ids = _store_deliveries([row])
    state.dispatch(SPLIT_DELIVERIES, ids)
    ack = adapter.webhook_ack()
    if ack is None:
        return _received(event_accounts, ids)
    return Response(ack[0], status=200, content_type=ack[1])


# --- product events --------------------------------------------------------------------------------
@bp.post("/events/<event_type>")
def product_event(event_type: str):
    state = _state()
    key = bearer_token(request)
    body = _body()
    with state.sessions() as session:
        tenant_id = tenant_for_api_key(session, key)
        if tenant_id is None:
            raise Unauthenticated("unknown or revoked API key")
        if event_type not in PRODUCT_EVENTS:
            raise UnknownEventType(f"unknown event type {event_type[:64]!r}; known: {', '.join(PRODUCT_EVENTS)}")
        require_json_type(request)
        data = parse_json(body)
        try:
            payload = normalize_product_event(event_type, data)
        except ProductEventInvalid as err:
            raise InvalidEvent(f"the {event_type} event is invalid", details=err.messages) from None
        idem = request.headers.get("Idempotency-Key")
        if idem is not None and not _IDEMPOTENCY_KEY.match(idem):
            raise MalformedBody("Idempotency-Key must be 1-200 printable ASCII characters without spaces",
                                code="bad_idempotency_key")
        event_key = idem or str(uuid.uuid4())
        occurred = None
        if payload.get("occurred_at"):
            from datetime import UTC, datetime
            # In UTC: PostgreSQL takes offsets up to 15:59, ISO 8601 (and Python) up to 23:59.
            occurred = datetime.fromisoformat(payload["occurred_at"]).astimezone(UTC)
        row = {"id": str(uuid.uuid4()), "tenant_id": tenant_id, "config_id": None, "platform": "product",
               "account_id": tenant_id, "event_key": event_key, "event_type": event_type, "entity_type": None,
               "external_id": None, "payload": payload, "processed": False, "attempts": 0,
               "occurred_at": occurred, "received_at": utcnow()}
        new_ids = _store_events(session, [row])
        if not new_ids:
            existing = session.scalar(select(WebhookEvent.id).where(
                WebhookEvent.platform == "product", WebhookEvent.account_id == tenant_id,
                WebhookEvent.event_key == event_key))
            return {"id": existing, "event_type": event_type, "duplicate": True}, 200
    state.dispatch(RUN_AUTOMATION, new_ids)
    return {"id": new_ids[0], "event_type": event_type, "duplicate": False}, 202


# --- cron ----------------------------------------------------------------------------------------
@bp.route("/cron/sync", methods=["POST", "GET"])  # GET too: Vercel's cron calls with GET
def cron_sync():
    state = _state()
    secret = state.cron_secret
    if not secret:
        raise NotConfigured("CRMSYNC_CRON_SECRET is not set; /cron/sync is disabled")
    token = bearer_token(request)
    if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), secret.encode("utf-8")):
        raise Unauthenticated("wrong cron secret")
    from crmsync.sync.schedule import dispatch_due_syncs
    with state.sessions() as session:
        result = dispatch_due_syncs(session)
        session.commit()
    ids = [str(getattr(item, "id", item)) for item in (result or [])]
    return {"dispatched": ids}, 200


# --- health --------------------------------------------------------------------------------------
@bp.get("/healthz")
def healthz():
    return {"status": "ok"}, 200


@bp.get("/readyz")
def readyz():
    state = _state()
    checks: dict[str, str] = {}
    try:
        with state.sessions() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as err:  # noqa: BLE001  any failure means "not ready"; the type says which
        checks["database"] = f"unreachable: {type(err).__name__}"
    checks["broker"] = state.broker_status()
    ready = all(v in ("ok", "inline") for v in checks.values())
    failed = [k for k, v in checks.items() if v not in ("ok", "inline")]
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    if not ready:
        body.update(error="not_ready", message=f"unreachable: {', '.join(failed)}")
    return body, 200 if ready else 503


@bp.get("/metrics")
def metrics():
    """Prometheus text format: this app's processes (every gunicorn worker with
    PROMETHEUS_MULTIPROC_DIR). Bounded labels only; per-config state is `crmsync metrics serve`'s."""
    from crmsync.metrics import exposition
    body, content_type = exposition()
    return body, 200, {"Content-Type": content_type}


@bp.get("/openapi.json")
def openapi():
    from crmsync.ingest.openapi import openapi_document
    return openapi_document(), 200

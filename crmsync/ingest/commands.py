"""`crmsync webhooks list|replay` and `crmsync ingest serve` (contract: docs/cli.md)."""
from __future__ import annotations

import click
from sqlalchemy import select

from crmsync.console import ID, LIMIT, bad_input, emit, failed, json_option, table

COLUMNS = ["id", "platform", "account_id", "event_type", "external_id", "processed", "outcome", "attempts",
           "received_at"]


def _row(e) -> dict:
    return {"id": e.id, "tenant_id": e.tenant_id, "config_id": e.config_id, "platform": e.platform,
            "account_id": e.account_id, "event_key": e.event_key, "event_type": e.event_type,
            "entity_type": e.entity_type, "external_id": e.external_id, "processed": e.processed,
            "outcome": e.outcome, "error": e.error, "attempts": e.attempts, "occurred_at": e.occurred_at,
            "received_at": e.received_at, "processed_at": e.processed_at}


@click.group()
def webhooks():
    """Stored webhook and product events."""


@webhooks.command("list")
@click.option("--unprocessed", is_flag=True, help="Only events not yet applied.")
@click.option("--failed", "only_failed", is_flag=True, help="Only events whose processing failed.")
@click.option("--tenant", "tenant_id", type=ID, help="Only this tenant's events.")
@click.option("--limit", type=LIMIT, default=100, show_default=True)
@json_option
def webhooks_list(unprocessed, only_failed, tenant_id, limit, as_json):
    """The newest events first."""
    from crmsync.db import session_scope
    from crmsync.db.models import WebhookEvent
    query = select(WebhookEvent).order_by(WebhookEvent.received_at.desc()).limit(limit)
    if unprocessed:
        query = query.where(WebhookEvent.processed.is_(False))
    if only_failed:
        query = query.where(WebhookEvent.outcome == "failed")
    if tenant_id:
        query = query.where(WebhookEvent.tenant_id == tenant_id)
    with session_scope() as s:
        rows = [_row(e) for e in s.scalars(query)]
        waiting = _deliveries_waiting(s, tenant_id)
    human = table(rows, COLUMNS)
    if waiting:
        # Requests stored whole whose events are not in this list yet (see crmsync.events.processing).
        human += f"\n{waiting[0]} delivery(ies) not yet split into events, {waiting[1]} of them failed"
    emit(rows, as_json, human)


def _deliveries_waiting(session, tenant_id: str | None) -> tuple[int, int] | None:
    from sqlalchemy import func

    from crmsync.db.models import WebhookDelivery
    query = select(func.count(), func.count(WebhookDelivery.error))
    if tenant_id:
        query = query.where(WebhookDelivery.tenant_id == tenant_id)
    total, failed_ = session.execute(query).one()
    return (total, failed_) if total else None


@webhooks.command("replay")
@click.argument("event_id", required=False)
@click.option("--failed", "all_failed", is_flag=True,
              help="Replay every event whose processing failed, and every delivery whose split failed.")
@json_option
def webhooks_replay(event_id, all_failed, as_json):
    """Mark events unprocessed again and enqueue their processing (EVENT_ID may also name a stored
    delivery whose split failed: it is split again)."""
    import uuid

    from crmsync.db import session_scope
    from crmsync.ingest.replay import enqueue_replay, reset_failed
    if bool(event_id) == bool(all_failed):
        bad_input("give exactly one of EVENT_ID or --failed")
    if event_id:
        try:
            uuid.UUID(event_id)
        except ValueError:
            bad_input(f"EVENT_ID: not an event id: {event_id!r}")
    with session_scope() as s:
        ids, deliveries = reset_failed(s, only_id=event_id)
        if event_id and not ids and not deliveries:
            bad_input(f"no event or delivery {event_id}")
    # Committed first: a failed enqueue leaves them unprocessed, and the sweeper re-enqueues them.
    from crmsync.tasks.errors import QueueError
    try:
        enqueue_replay(ids, deliveries)
    except QueueError as err:
        failed(f"{len(ids)} event(s) and {len(deliveries)} delivery(ies) reset; "
               f"the broker refused some ({err}); the outbox sweeper will enqueue them")
    replayed = [*deliveries, *ids]
    out = {"replayed": replayed, "count": len(replayed)}
    emit(out, as_json, f"replayed {len(ids)} event(s)" + (f" and {len(deliveries)} delivery(ies)" if deliveries else ""))


@click.group()
def ingest():
    """The ingest web app (webhooks, product events, cron)."""


@ingest.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Run under gunicorn with this many workers (0: the Flask development server).")
def ingest_serve(host, port, workers):
    """Serve the ingest app for development (production: gunicorn "crmsync.ingest:create_app()")."""
    from crmsync.ingest import create_app
    click.echo(f"ingest app on http://{host}:{port} (POST /webhooks/hubspot, /webhooks/pipedrive/<config id>, "
               f"/events/<type>, /cron/sync; GET /healthz, /readyz, /openapi.json)", err=True)
    if workers:
        from gunicorn.app.base import BaseApplication

        class _Gunicorn(BaseApplication):
            def load_config(self):
                from crmsync.ingest import gunicorn_conf
                self.cfg.set("bind", f"{host}:{port}")
                self.cfg.set("workers", workers)
                self.cfg.set("on_starting", gunicorn_conf.on_starting)
                self.cfg.set("post_worker_init", gunicorn_conf.post_worker_init)
                self.cfg.set("access_log_format", gunicorn_conf.access_log_format)

            def load(self):
                return create_app()

        _Gunicorn().run()
        return
    app = create_app()
    app.run(host=host, port=port, threaded=True, use_reloader=False, request_handler=_query_free_log())


def _query_free_log():
    """werkzeug's request handler, logging each request's target without its query: a Salesforce
    Outbound Message's endpoint URL carries the config's webhook secret as `?token=` (Salesforce
    signs nothing), and werkzeug logs the whole target (in its access line, and in the error line
    of a request it cannot parse). gunicorn's format leaves it out too (crmsync.ingest.gunicorn_conf)."""
    import re

    from werkzeug.serving import WSGIRequestHandler
    query = re.compile(r"\?[^\s\"'\\]*")

    class QueryFreeLog(WSGIRequestHandler):
        def log(self, type: str, message: str, *args) -> None:
            super().log(type, "%s", query.sub("", message % args if args else message))

    return QueryFreeLog

"""Writing what arrived: CRM webhook requests to `crm_webhook_deliveries` (one row each, in the
request), their events to `crm_webhook_events` (deduplicated on (platform, account_id, event_key),
when a worker splits the delivery), product events straight to `crm_webhook_events`.

One multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id` per delivery: the ids returned are
exactly the new rows, which are the only ones to enqueue. Both PostgreSQL and SQLite (>= 3.35) do
this natively, so a duplicate costs no extra round trip and no exception.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, text
from sqlalchemy.orm import Session

from crmsync.db import is_postgres
from crmsync.db.models import WebhookDelivery, WebhookEvent, new_id
from crmsync.db.types import utcnow
from crmsync.platforms.base import WebhookEvent as PlatformEvent

log = logging.getLogger(__name__)



def event_type_of(event: PlatformEvent) -> str:
    """Normalized, platform-independent: "<entity>.<action>", e.g. contact.updated, deal.merged;
    objects we do not sync are "other.<action>" (the raw type stays in the payload)."""
    return f"{event.entity or 'other'}.{event.action}"[:64]


def crm_event_row(event: PlatformEvent, *, tenant_id: str, config_id: str, account_id: str,
                  received_at: datetime) -> dict[str, Any]:
    occurred = event.occurred_at
    if occurred is not None and occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    return {
        "id": new_id(), "tenant_id": tenant_id, "config_id": config_id, "platform": event.platform,
        "account_id": account_id[:64], "event_key": event.event_key[:200], "event_type": event_type_of(event),
        "entity_type": event.entity, "external_id": (event.external_id or None) and str(event.external_id)[:64],
        "payload": event.payload, "processed": False, "attempts": 0, "occurred_at": occurred,
        "received_at": received_at,
    }


def delivery_row(*, tenant_id: str, config_id: str, platform: str, account_id: str, body: str, events: int,
                 received_at: datetime, event_account_id: str | None = None) -> dict[str, Any]:
    return {"id": new_id(), "tenant_id": tenant_id, "config_id": config_id, "platform": platform,
            "account_id": account_id[:64], "event_account_id": event_account_id, "body": body, "events": events,
            "attempts": 0, "error": None, "received_at": received_at}


_DELIVERY_COLUMNS = [c.name for c in WebhookDelivery.__table__.columns]
_DELIVERY_INSERT = (f"INSERT INTO crm_webhook_deliveries ({', '.join(_DELIVERY_COLUMNS)}) "
                    f"VALUES ({', '.join(f'%({c})s' for c in _DELIVERY_COLUMNS)})")


def insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> list[str]:
    """The whole write of a webhook request, on `conn` (the caller commits, or runs it in autocommit).

    On PostgreSQL straight through psycopg: SQLAlchemy's statement handling cost more client CPU
    than the round trip itself, on the one path that must answer in milliseconds."""
    if conn.dialect.name != "postgresql":
        conn.execute(insert(WebhookDelivery.__table__), rows)
        return [row["id"] for row in rows]
    import psycopg
    try:
        with conn.connection.driver_connection.cursor() as cur:
            if len(rows) == 1:
                cur.execute(_DELIVERY_INSERT, rows[0])
            else:
                cur.executemany(_DELIVERY_INSERT, rows)
    except psycopg.OperationalError:
        conn.invalidate()   # SQLAlchemy did not see it fail: keep a broken connection out of the pool
        raise
    return [row["id"] for row in rows]


def insert_events(session: Session, rows: list[dict[str, Any]]) -> list[str]:
    """Insert the rows that are not there yet; returns the ids of the new ones, in input order."""
    if not rows:
        return []
    # A delivery may repeat an event inside itself; keep the first so one statement never
    # conflicts with itself.
    seen: set[tuple] = set()
    unique = []
    for row in rows:
        key = (row["platform"], row["account_id"], row["event_key"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    if is_postgres(session):
        new = set(_insert_postgres(session, unique))
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        # executemany form: SQLAlchemy batches it into multi-row VALUES with RETURNING
        # ("insertmanyvalues") from one cached compiled statement.
        stmt = (sqlite_insert(WebhookEvent)
                .on_conflict_do_nothing(index_elements=["platform", "account_id", "event_key"])
                .returning(WebhookEvent.id))
        new = set(session.scalars(stmt, unique).all())
    return [row["id"] for row in unique if row["id"] in new]


_COLUMNS = {"id": "uuid", "tenant_id": "uuid", "config_id": "uuid", "platform": "text", "account_id": "text",
            "event_key": "text", "event_type": "text", "entity_type": "text", "external_id": "text",
            "payload": "jsonb", "occurred_at": "timestamptz", "received_at": "timestamptz"}
# One statement and one parameter whatever the batch size: the rows travel as one JSON document
# that PostgreSQL unpacks in C (jsonb_to_recordset). Binding 12 columns x 100 rows through psycopg's
# text-array escaping cost more than the rest of the request together.
_RECORDSET_INSERT = text(
    f"INSERT INTO crm_webhook_events ({', '.join(_COLUMNS)}, processed, attempts) "
    f"SELECT {', '.join('u.' + c for c in _COLUMNS)}, false, 0 "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
    f"AS u({', '.join(f'{c} {t}' for c, t in _COLUMNS.items())}) "
    "ON CONFLICT (platform, account_id, event_key) DO NOTHING RETURNING id")


def _insert_postgres(session: Session, rows: list[dict[str, Any]]) -> list[str]:
    doc = json.dumps([{c: (r[c].isoformat() if c.endswith("_at") and r[c] is not None else r[c]) for c in _COLUMNS}
                      for r in rows], separators=(",", ":"))
    return [str(i) for i in session.execute(_RECORDSET_INSERT, {"rows": doc}).scalars()]


def enqueue_each(task: str, event_ids: list[str], countdown: float | None = None) -> int:
    """Enqueue `task(event_id)` per id after the rows are committed. A failure is logged and
    swallowed: the row is durable and the outbox sweeper re-enqueues unprocessed events."""
    if not event_ids:
        return 0
    from crmsync.tasks import enqueue
    done = 0
    for event_id in event_ids:
        try:
            enqueue(task, event_id, countdown=countdown)
            done += 1
        except Exception as err:  # noqa: BLE001  any failure to publish: the committed row is the outbox
            log.error("enqueue %s(%s) failed (%s: %s); the outbox sweeper will pick it up",
                      task, event_id, type(err).__name__, err)
            # A broker that is down fails every publish the same way; don't stall the answer on it.
            log.error("skipping %d further enqueue(s) of this delivery", len(event_ids) - done - 1)
            break
    return done


def enqueue_together(task: str, ids: list[str]) -> bool:
    """Enqueue one `task(*ids)` (a task that takes many ids, e.g. the split), swallowing a failure
    as `enqueue_each` does: the rows are committed and the sweeper re-enqueues them."""
    if not ids:
        return False
    from crmsync.tasks import enqueue
    try:
        enqueue(task, *ids)
    except Exception as err:  # noqa: BLE001  any failure to publish: the committed rows are the outbox
        log.error("enqueue %s of %d row(s) failed (%s: %s); the outbox sweeper will pick them up",
                  task, len(ids), type(err).__name__, err)
        return False
    return True


__all__ = ["crm_event_row", "delivery_row", "enqueue_each",
           "enqueue_together", "event_type_of", "insert_deliveries", "insert_events", "utcnow"]

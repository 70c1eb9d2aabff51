"""Builders for automation tests: product events as the ingest app stores them, and row reads."""
from __future__ import annotations

import uuid

from sqlalchemy import func, select

from crmsync.db import session_scope
from crmsync.db.models import ENTITY_MODELS, AutomationRun, WebhookEvent


def product_event(session, tenant_id: str, event_type: str, **payload) -> str:
    """A stored `POST /events/<type>` (platform product, account = tenant)."""
    row = WebhookEvent(tenant_id=tenant_id, platform="product", account_id=tenant_id,
                       event_key=str(uuid.uuid4()), event_type=event_type, payload=payload)
    session.add(row)
    session.flush()
    return row.id


def rows(db_url: str, entity: str, tenant_id: str) -> list:
    model = ENTITY_MODELS[entity]
    with session_scope(db_url) as s:
        out = list(s.scalars(select(model).where(model.tenant_id == tenant_id).order_by(model.created_at)))
        s.expunge_all()
        return out


def runs(db_url: str, **where) -> list[AutomationRun]:
    with session_scope(db_url) as s:
        q = select(AutomationRun).order_by(AutomationRun.created_at)
        for key, value in where.items():
            q = q.where(getattr(AutomationRun, key) == value)
        out = list(s.scalars(q))
        s.expunge_all()
        return out


def internal_events(db_url: str, tenant_id: str) -> list[WebhookEvent]:
    with session_scope(db_url) as s:
        out = list(s.scalars(select(WebhookEvent).where(WebhookEvent.tenant_id == tenant_id,
                                                        WebhookEvent.platform == "crmsync")
                             .order_by(WebhookEvent.received_at)))
        s.expunge_all()
        return out


def count(db_url: str, model) -> int:
    with session_scope(db_url) as s:
        return s.scalar(select(func.count()).select_from(model))

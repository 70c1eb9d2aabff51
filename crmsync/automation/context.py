"""What a rule sees: the event's fields plus the records it concerns.

Product events: `contact` is the tenant's contact with the event's email (sender_email for
email_replied, contact_email for meeting_scheduled), `deal` the deal id in the payload or that
contact's most recent open deal, `company` theirs. Record triggers: the changed record and its
associated contact, deal and company, plus `changes` ({field: [old, new]}).

`contact_name`: what the event itself says wins — its top-level `contact_name` (`sender_name`
for email_replied), else `properties.contact_name`/`properties.sender_name`; a found contact's
name fills it only when the event names nobody, and the email only when neither does.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from crmsync.automation.templates import as_datetime
from crmsync.automation.variables import DATETIME, ENTITY_FIELDS
from crmsync.db.models import ENTITY_MODELS, Contact, Deal, SyncLink


def entity_dict(entity: str, row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    if isinstance(row, dict):
        return dict(row)
    out = {name: getattr(row, name, None) for name in ENTITY_FIELDS[entity]}
    out["id"] = row.id
    out["custom_fields"] = dict(row.custom_fields or {})
    return out


def full_name(contact: dict | None) -> str | None:
    if not contact:
        return None
    name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
    return name or None


@dataclass
class RuleContext:
    """`values` is what conditions and templates read; `rows` the ORM rows behind the entity
    values (None in a dry run or when the event has no such record)."""
    values: dict[str, Any]
    rows: dict[str, Any] = field(default_factory=dict)
    event_contact_name: str | None = None     # the name the event itself gave, if any

    def set_record(self, entity: str, row: Any) -> None:
        if not isinstance(row, dict):
            self.rows[entity] = row
        self.values[entity] = entity_dict(entity, row)
        if entity == "contact":
            contact = self.values["contact"]
            self.values["contact_name"] = (self.event_contact_name or full_name(contact) or contact.get("email")
                                           or self.values.get("contact_name"))
            if contact.get("email"):
                self.values["email"] = contact["email"]

    def copy(self) -> RuleContext:
        return RuleContext(dict(self.values), dict(self.rows), self.event_contact_name)


def event_contact_name(payload: dict[str, Any]) -> str | None:
    """The person an event names: a top-level field first, then the free-form `properties`."""
    props = payload.get("properties") if isinstance(payload.get("properties"), dict) else {}
    for source in (payload, props):
        for key in ("contact_name", "sender_name"):
            name = source.get(key)
            if isinstance(name, str) and name.strip():
                return name.strip()
    return None


def _get(session: Session, model, tenant_id: str, local_id: Any):
    if not local_id or not isinstance(local_id, str):
        return None
    try:
        uuid.UUID(local_id)
    except ValueError:      # not an id of ours: querying it would only abort the transaction
        return None
    row = session.get(model, local_id)
    if row is None or row.tenant_id != tenant_id or row.deleted_at is not None:
        return None
    return row


def _deal_by_any_id(session: Session, tenant_id: str, deal_id: Any) -> Deal | None:
    """A product event's deal_id is a local id or the deal's id in one of the tenant's CRMs."""
    if not deal_id or not isinstance(deal_id, str):
        return None
    deal = _get(session, Deal, tenant_id, deal_id)
    if deal is None:
        local_id = session.scalar(select(SyncLink.local_id).where(
            SyncLink.tenant_id == tenant_id, SyncLink.entity_type == "deal", SyncLink.external_id == deal_id).limit(1))
        deal = _get(session, Deal, tenant_id, local_id)
    return deal


def latest_open_deal(session: Session, tenant_id: str, contact_id: str) -> Deal | None:
    return session.scalars(
        select(Deal).where(Deal.tenant_id == tenant_id, Deal.contact_id == contact_id, Deal.deleted_at.is_(None),
                           or_(Deal.status.is_(None), Deal.status == "open"))
        .order_by(Deal.updated_at.desc()).limit(1)).first()


def build_context(session: Session | None, tenant_id: str | None, trigger: str, payload: dict[str, Any], *,
                  now: datetime, event_id: str | None = None,
                  overrides: dict[str, Any] | None = None) -> RuleContext:
    """The evaluation context of one event. Without a session (a dry run with no tenant) the
    entities come only from `overrides` (the test event's "contact", "deal", "company")."""
    from crmsync.automation.actions import find_contact_by_email
    from crmsync.automation.triggers import TRIGGERS
    spec = TRIGGERS[trigger]
    values: dict[str, Any] = {"now": now, "event": dict(payload), "contact": None, "deal": None, "company": None}
    for name, kind in spec.variables.items():
        if name in payload and name not in values:
            values[name] = as_datetime(payload[name]) if kind == DATETIME else payload[name]
    ctx = RuleContext(values)
    contact = deal = company = None
    if spec.source == "product":
        email = payload.get("sender_email") or payload.get("contact_email") or payload.get("email")
        email = email.strip() if isinstance(email, str) else None
        values["email"] = email or None
        ctx.event_contact_name = values["contact_name"] = event_contact_name(payload)
        if session is not None and tenant_id:
            if email:
                contact = find_contact_by_email(session, tenant_id, email)
            deal = _deal_by_any_id(session, tenant_id, payload.get("deal_id"))
            if deal is None and contact is not None:
                deal = latest_open_deal(session, tenant_id, contact.id)
    else:
        changes = payload.get("changes") or {}
        values["changes"] = {k: {"old": v[0], "new": v[1]} for k, v in changes.items()} if isinstance(changes, dict) else {}
        values["changed_fields"] = sorted(values["changes"])
        values["cause"] = payload.get("cause")
        if "stage" in values["changes"]:
            values["old_stage"] = values["changes"]["stage"]["old"]
            values["new_stage"] = values["changes"]["stage"]["new"]
        if session is not None and tenant_id:
            entity = payload.get("entity")
            record = _get(session, ENTITY_MODELS[entity], tenant_id, payload.get("entity_id")) if entity in (
                "contact", "deal") else None
            if entity == "contact":
                contact = record
                if contact is not None:
                    deal = latest_open_deal(session, tenant_id, contact.id)
            elif entity == "deal":
                deal = record
                if deal is not None:
                    contact = _get(session, Contact, tenant_id, deal.contact_id)
    if session is not None and tenant_id:
        company_id = (deal.company_id if deal is not None else None) or (
            contact.company_id if contact is not None else None)
        company = _get(session, ENTITY_MODELS["company"], tenant_id, company_id)
    for entity, row in (("company", company), ("deal", deal), ("contact", contact)):
        if row is not None:
            ctx.set_record(entity, row)
    for entity in ("company", "deal", "contact"):
        if overrides and isinstance(overrides.get(entity), dict):
            ctx.set_record(entity, {**(values.get(entity) or {}), **overrides[entity]})
    if values.get("contact_name") is None:
        values["contact_name"] = values.get("email")
    values.setdefault("email", None)
    if event_id:
        values["event"]["id"] = event_id
    return ctx

"""Actions: what a rule does. Each writes one local record (tenant-scoped, `last_change_cause`
naming the rule, event and depth, `updated_at` now); the normal push path carries it to the
tenant's CRM. Later actions of a rule see the records earlier ones created or chose: a
`create_contact` followed by `create_deal` links the deal to that contact.

The same code plans a dry run (`rules test`): nothing is written, created records appear to
later actions with ids like `new:contact`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crmsync.automation.context import RuleContext, entity_dict
from crmsync.automation.errors import ActionError
from crmsync.automation.templates import Expression, as_datetime, render_value, to_text
from crmsync.automation.triggers import RuleChange
from crmsync.automation.variables import ANY, DATETIME, ENTITY_FIELDS, LIST, NUMBER, TEXT
from crmsync.db.models import ENTITY_MODELS, Contact, new_id
from crmsync.entities import ACTIVITY_TYPES, DEAL_STATUSES, SCHEMAS, TASK_PRIORITIES, TASK_STATUSES

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("deal", "status"): DEAL_STATUSES, ("task", "status"): TASK_STATUSES,
    ("task", "priority"): TASK_PRIORITIES, ("activity", "type"): ACTIVITY_TYPES,
}
_NOT_PARAMS = {"id", "created_at", "updated_at", "deleted_at"}
INTEGER_FIELDS = {("company", "employee_count"), ("activity", "duration_minutes")}


@dataclass(frozen=True)
class ParamSpec:
    kind: str                               # TEXT, NUMBER, DATETIME, LIST, ANY (custom_fields)
    choices: tuple[str, ...] | None = None
    required: bool = False


@dataclass(frozen=True)
class ActionSpec:
    name: str
    entity: str
    op: str                                 # create | update
    params: dict[str, ParamSpec]
    defaults: dict[str, Any] = field(default_factory=dict)


def _params(entity: str, required: tuple[str, ...] = ()) -> dict[str, ParamSpec]:
    return {name: ParamSpec(kind, CHOICES.get((entity, name)), name in required)
            for name, kind in ENTITY_FIELDS[entity].items() if name not in _NOT_PARAMS}


ACTIONS: dict[str, ActionSpec] = {a.name: a for a in (
    ActionSpec("create_contact", "contact", "create", _params("contact"), {"email": "{email}"}),
    ActionSpec("update_contact", "contact", "update", _params("contact")),
    ActionSpec("create_deal", "deal", "create", _params("deal", ("name",)), {"status": "open"}),
    ActionSpec("update_deal", "deal", "update", _params("deal")),
    ActionSpec("create_task", "task", "create", _params("task", ("title",)), {"status": "not_started"}),
    ActionSpec("create_activity", "activity", "create", _params("activity", ("type",)), {"occurred_at": "{now}"}),
)}


@dataclass
class ActionOutcome:
    index: int
    type: str
    entity: str
    op: str                         # created | updated | unchanged | reused | skipped
    id: str | None = None
    values: dict[str, Any] = field(default_factory=dict)   # created: values; updated: field -> [old, new]
    reason: str | None = None
    warnings: list[dict] = field(default_factory=list)     # see `Unresolved`

    def as_dict(self) -> dict:
        out = {"index": self.index, "type": self.type, "entity": self.entity, "op": self.op, "id": self.id,
               "values": {k: _plain(v) for k, v in self.values.items()}}
        if self.reason:
            out["reason"] = self.reason
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def coerce(path: str, spec: ParamSpec, value: Any, entity: str, name: str) -> Any:
    """A rendered param as the column wants it, or ActionError."""
    if value is None or value == "":
        return None
    if spec.kind == NUMBER:
        if isinstance(value, bool):
            raise ActionError(path, f"expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ActionError(path, f"expected a number, got {to_text(value)!r}") from None
        return int(number) if (entity, name) in INTEGER_FIELDS else number
    if spec.kind == DATETIME:
        moment = as_datetime(value)
        if moment is None:
            raise ActionError(path, f"expected a date, got {to_text(value)!r}")
        return moment
    if spec.kind == LIST:
        items = value if isinstance(value, list) else [v.strip() for v in to_text(value).split(",")]
        return [to_text(v) for v in items if to_text(v)]
    if spec.kind == ANY:
        if not isinstance(value, dict):
            raise ActionError(path, "expected an object of custom field values")
        return value
    text = to_text(value)
    if spec.choices and text not in spec.choices:
        raise ActionError(path, f"{text!r} is not one of {', '.join(spec.choices)}")
    return text


def unresolved_warning(path: str, action_type: str, param: str, expr: Expression) -> dict[str, Any]:
    """A template variable that resolved to nothing: the action still runs (text keeps the
    placeholder, a lone expression leaves the field empty) and the run records this."""
    return {"action": path, "type": action_type, "param": param, "variable": expr.path,
            "message": f"{path} {action_type}: {expr.text or expr.source} in params.{param} has no value "
                       "for this event"}


def render_params(path: str, spec: ActionSpec, params: dict, ctx: RuleContext,
                  warnings: list[dict] | None = None) -> dict[str, Any]:
    raw = {**spec.defaults, **(params or {})}
    values = {}
    missing: dict[str, list[Expression]] = {}
    for name, value in raw.items():
        unresolved: list[Expression] = []
        rendered = render_value(value, ctx.values, unresolved)
        if unresolved:
            missing[name] = unresolved
            if warnings is not None:
                warnings.extend(unresolved_warning(path, spec.name, name, e) for e in unresolved)
        values[name] = coerce(f"{path}.params.{name}", spec.params[name], rendered, spec.entity, name)
    for name, p in spec.params.items():
        if p.required and values.get(name) in (None, ""):
            why = ", ".join(e.text or e.source for e in missing.get(name, ())) or "it"
            raise ActionError(f"{path}.params.{name}", f"{why} rendered empty, but a value is required")
    # The unified schema's own checks (probability 0-100, email shape, ...).
    check = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}
    errors = SCHEMAS[spec.entity]().validate(check, partial=True)
    if errors:
        name = min(errors)
        raise ActionError(f"{path}.params.{name}", "; ".join(map(str, errors[name])))
    return values


def find_contact_by_email(session: Session, tenant_id: str, email: str) -> Contact | None:
    """The tenant's live contact with this email: the exact value first (indexed), then any case."""
    base = select(Contact).where(Contact.tenant_id == tenant_id, Contact.deleted_at.is_(None))
    row = session.scalars(base.where(Contact.email == email).order_by(Contact.created_at).limit(1)).first()
    if row is None:
        row = session.scalars(base.where(func.lower(Contact.email) == email.strip().lower())
                              .order_by(Contact.created_at).limit(1)).first()
    return row


def perform(session: Session | None, tenant_id: str, index: int, action: dict, ctx: RuleContext, *,
            cause: str, now: datetime, dry_run: bool, changes: list[RuleChange]) -> ActionOutcome:
    """Carry out (or, in a dry run, plan) one action; record changes for chaining."""
    path = f"actions[{index}]"
    spec = ACTIONS[action["type"]]
    warnings: list[dict] = []
    values = render_params(path, spec, action.get("params") or {}, ctx, warnings)
    if session is not None:
        _check_associations(session, tenant_id, path, values)
    if spec.op == "create":
        outcome = _create(session, tenant_id, path, index, spec, values, ctx, cause=cause, now=now,
                          dry_run=dry_run, changes=changes)
    else:
        outcome = _update(index, spec, values, ctx, cause=cause, now=now, dry_run=dry_run, changes=changes)
    outcome.warnings = warnings
    return outcome


_ASSOCIATION_TARGETS = {"contact_id": "contact", "deal_id": "deal", "company_id": "company"}


def _check_associations(session: Session, tenant_id: str, path: str, values: dict[str, Any]) -> None:
    """An association given in params must name one of this tenant's live records."""
    import uuid
    for key, entity in _ASSOCIATION_TARGETS.items():
        value = values.get(key)
        if value is None or str(value).startswith("new:"):
            continue
        try:
            uuid.UUID(str(value))
        except ValueError:
            raise ActionError(f"{path}.params.{key}", f"{value!r} is not a {entity} id") from None
        model = ENTITY_MODELS[entity]
        row = session.get(model, str(value))
        if row is None or row.tenant_id != tenant_id or row.deleted_at is not None:
            raise ActionError(f"{path}.params.{key}", f"no {entity} {value} in this tenant")


def _links(spec: ActionSpec, ctx: RuleContext) -> dict[str, Any]:
    """Associations from the context: the event's contact, deal and company."""
    contact, deal, company = (ctx.values.get(k) or {} for k in ("contact", "deal", "company"))
    company_id = company.get("id") or contact.get("company_id") or deal.get("company_id")
    wanted = {"contact": {}, "deal": {"contact_id": contact.get("id"), "company_id": company_id},
              "task": {"contact_id": contact.get("id"), "deal_id": deal.get("id"), "company_id": company_id},
              "activity": {"contact_id": contact.get("id"), "deal_id": deal.get("id"), "company_id": company_id}}
    return {k: v for k, v in wanted[spec.entity].items() if v}


def _create(session, tenant_id, path, index, spec, values, ctx, *, cause, now, dry_run, changes) -> ActionOutcome:
    if spec.entity == "contact":
        if not values.get("first_name") and not values.get("last_name"):
            first, _, last = (ctx.event_contact_name or "").strip().partition(" ")
            values.update({k: v for k, v in (("first_name", first), ("last_name", last.strip())) if v})
        email = values.get("email")
        if email and session is not None:
            existing = find_contact_by_email(session, tenant_id, email)
            if existing is not None:          # one contact per email: use it, create nothing
                ctx.set_record("contact", existing)
                return ActionOutcome(index, spec.name, "contact", "reused", existing.id,
                                     reason="a contact with this email exists")
    for key, value in _links(spec, ctx).items():
        values.setdefault(key, value)
    if dry_run:
        virtual = {**values, "id": f"new:{spec.entity}"}
        ctx.set_record(spec.entity, virtual)
        return ActionOutcome(index, spec.name, spec.entity, "created", virtual["id"], values)
    model = ENTITY_MODELS[spec.entity]
    for key in ("contact_id", "deal_id", "company_id"):
        if isinstance(values.get(key), str) and values[key].startswith("new:"):
            values.pop(key)
    row = model(id=new_id(), tenant_id=tenant_id, **values, last_change_cause=cause, created_at=now, updated_at=now)
    if getattr(row, "custom_fields", None) is None:
        row.custom_fields = {}
    session.add(row)
    session.flush()
    ctx.set_record(spec.entity, row)
    changes.append(RuleChange(spec.entity, row.id, "created", {k: (None, v) for k, v in values.items()}))
    return ActionOutcome(index, spec.name, spec.entity, "created", row.id, values)


def _update(index, spec, values, ctx, *, cause, now, dry_run, changes) -> ActionOutcome:
    target = ctx.rows.get(spec.entity)
    current = ctx.values.get(spec.entity)
    if not current:
        return ActionOutcome(index, spec.name, spec.entity, "skipped",
                             reason=f"this event has no {spec.entity} to update")
    diff = {}
    for name, new in values.items():
        old = current.get(name)
        if name == "custom_fields":
            new = {**(old or {}), **new}
        if old != new:
            diff[name] = (old, new)
    if not diff:
        return ActionOutcome(index, spec.name, spec.entity, "unchanged", current.get("id"))
    if dry_run or target is None:
        ctx.set_record(spec.entity, {**current, **{k: n for k, (_, n) in diff.items()}})
    else:
        for name, (_, new) in diff.items():
            setattr(target, name, new)
        target.last_change_cause = cause
        target.updated_at = now
        ctx.set_record(spec.entity, target)
        changes.append(RuleChange(spec.entity, target.id, "updated", diff))
    return ActionOutcome(index, spec.name, spec.entity, "updated", current.get("id"),
                         {k: [o, n] for k, (o, n) in diff.items()})


__all__ = [
    "ACTIONS",
    "ANY",
    "DATETIME",
    "LIST",
    "NUMBER",
    "TEXT",
    "ActionOutcome",
    "ActionSpec",
    "ParamSpec",
    "entity_dict",
    "find_contact_by_email",
    "perform",
]

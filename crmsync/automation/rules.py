"""Rules as stored in `crm_automation_rules`, validated with marshmallow when written.

    {"name": "Auto-create contact on email reply", "enabled": true,
     "trigger": {"type": "email_replied"},
     "conditions": [{"field": "sender_email", "operator": "is_not_empty"}],
     "actions": [{"type": "create_contact", "params": {"lifecycle_stage": "lead"}},
                 {"type": "create_deal", "params": {"name": "Inbound Lead - {email}", "amount": 0}}]}

Anything wrong — an unknown trigger, operator, action or param, a value of the wrong type, a
template naming a variable the trigger does not provide — raises `RuleError` whose `path`
points at it (`actions[1].params.due_date`). Nothing is written unless every rule is valid.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema
from marshmallow.experimental.context import Context
from sqlalchemy import select
from sqlalchemy.orm import Session

from crmsync.automation.actions import ACTIONS, ParamSpec
from crmsync.automation.conditions import LIST_VALUED, OPERATORS, ORDERED, UNARY
from crmsync.automation.errors import RuleError, TemplateError
from crmsync.automation.templates import as_datetime, parse
from crmsync.automation.triggers import TRIGGER_OPTIONS, TRIGGERS
from crmsync.automation.variables import ANY, DATETIME, ENTITY_FIELDS, LIST, NUMBER, resolve_kind
from crmsync.db.models import AutomationRule
from crmsync.db.types import utcnow
from crmsync.entities import SCHEMAS

# What templates may name while a rule is validated: its trigger's variables (None when the
# trigger itself is invalid — that error is reported instead).
_Variables = Context[dict]


def _variables() -> dict[str, str] | None:
    return _Variables.get({}).get("variables")


# --- params and template values ----------------------------------------------------------------
def check_template(value: str, variables: dict[str, str] | None) -> tuple[Any, str | None]:
    """(parsed template, kind it renders to) or ValidationError."""
    try:
        template = parse(value)
        kind = template.check(variables) if variables is not None else None
    except TemplateError as err:
        raise ValidationError(str(err)) from None
    return template, kind


def check_param(spec: ParamSpec, value: Any) -> None:
    variables = _variables()
    if value is None:
        if spec.required:
            raise ValidationError("a value is required")
        return
    if spec.kind == LIST:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, str):
                raise ValidationError("expected a list of strings")
            check_template(item, variables)
        return
    if spec.kind == ANY:
        if not isinstance(value, dict):
            raise ValidationError("expected an object of custom field values")
        for key, item in value.items():
            if isinstance(item, str):
                check_template(item, variables)
            elif item is not None and not isinstance(item, (int, float, bool)):
                raise ValidationError(f"{key}: expected a string, number or boolean")
        return
    if isinstance(value, (bool, list, dict)):
        raise ValidationError(f"expected {'a number' if spec.kind == NUMBER else 'a date' if spec.kind == DATETIME else 'a string'}")
    if isinstance(value, (int, float)):
        if spec.kind == DATETIME or spec.choices:
            raise ValidationError("expected a date" if spec.kind == DATETIME else f"expected one of {', '.join(spec.choices)}")
        return
    template, kind = check_template(value, variables)
    if template.is_literal:
        if spec.required and not value.strip():
            raise ValidationError("a value is required")
        if spec.kind == NUMBER:
            try:
                float(value)
            except ValueError:
                raise ValidationError(f"expected a number, got {value!r}") from None
        elif spec.kind == DATETIME and as_datetime(value) is None:
            raise ValidationError(f"expected an ISO date or a {{...}} date expression, got {value!r}")
        elif spec.choices and value not in spec.choices:
            raise ValidationError(f"{value!r} is not one of {', '.join(spec.choices)}")
        return
    if spec.kind in (NUMBER, DATETIME):
        want = "a number" if spec.kind == NUMBER else "a date"
        if not template.is_single_expression:
            raise ValidationError(f"expected {want}: write a single {{...}} expression, not text around it")
        if kind is not None and kind not in (spec.kind, ANY):
            raise ValidationError(f"expected {want}, but {template.expressions[0].source} is {kind}")


class TemplateParam(fields.Field):
    def __init__(self, spec: ParamSpec, **kwargs):
        super().__init__(required=spec.required, allow_none=True, **kwargs)
        self.spec = spec

    def _deserialize(self, value, attr, data, **kwargs):
        check_param(self.spec, value)
        return value


def _params_schema(action: str) -> type[Schema]:
    spec = ACTIONS[action]
    schema = Schema.from_dict({name: TemplateParam(p) for name, p in spec.params.items()},
                              name=f"{action}_params")
    schema.Meta.unknown = RAISE
    return schema


PARAM_SCHEMAS: dict[str, type[Schema]] = {name: _params_schema(name) for name in ACTIONS}


# --- conditions ----------------------------------------------------------------------------------
class ConditionSchema(Schema):
    class Meta:
        unknown = RAISE

    field = fields.String(required=True, validate=validate.Length(min=1))
    operator = fields.String(required=True, validate=validate.OneOf(OPERATORS))
    value = fields.Raw(allow_none=True, load_default=None)

    @validates_schema
    def _check(self, data, **kwargs):
        variables = _variables()
        if variables is not None:
            try:
                resolve_kind(data["field"], variables)
            except ValueError as err:
                raise ValidationError(str(err), field_name="field") from None
        op, value = data["operator"], data.get("value")
        if op in UNARY:
            if value is not None:
                raise ValidationError(f"{op} takes no value", field_name="value")
            return
        if value is None:
            raise ValidationError(f"{op} needs a value" + (" (use is_empty)" if op == "equals" else ""),
                                  field_name="value")
        if op in LIST_VALUED:
            if not isinstance(value, list) or any(isinstance(v, (list, dict)) for v in value):
                raise ValidationError(f"{op} needs a list of values", field_name="value")
            return
        if isinstance(value, (list, dict)):
            raise ValidationError(f"{op} needs a single value", field_name="value")
        if isinstance(value, str):
            try:
                template, _ = check_template(value, variables)
            except ValidationError as err:
                raise ValidationError(err.messages, field_name="value") from None
            if op in ORDERED and template.is_literal:
                try:
                    float(value)
                except ValueError:
                    if as_datetime(value) is None:
                        raise ValidationError(f"{op} compares numbers or dates; {value!r} is neither",
                                              field_name="value") from None


class ConditionField(fields.Field):
    """A condition, or an any-of group `{"any": [condition, ...]}` (groups nest)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("a condition is an object with field, operator and value, or {\"any\": [...]}")
        if "any" in value:
            extra = set(value) - {"any"}
            if extra:
                raise ValidationError({k: ["Unknown field."] for k in sorted(extra)})
            members = value["any"]
            if not isinstance(members, list) or not members:
                raise ValidationError({"any": ["an any-of group needs a non-empty list of conditions"]})
            errors, out = {}, []
            for i, member in enumerate(members):
                try:
                    out.append(self._deserialize(member, attr, data))
                except ValidationError as err:
                    errors[i] = err.messages
            if errors:
                raise ValidationError({"any": errors})
            return {"any": out}
        return ConditionSchema().load(value)


# --- triggers, actions, rules --------------------------------------------------------------------
class TriggerSchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(sorted(TRIGGERS)))
    fields_ = fields.List(fields.String(), data_key="fields", attribute="fields")

    @validates_schema
    def _check(self, data, **kwargs):
        if "fields" in data:
            if "fields" not in TRIGGER_OPTIONS.get(data["type"], ()):
                raise ValidationError(f"{data['type']} takes no fields option", field_name="fields")
            entity = TRIGGERS[data["type"]].entity
            for i, name in enumerate(data["fields"]):
                if name not in ENTITY_FIELDS[entity]:
                    raise ValidationError({i: [f"{entity} has no field {name!r}"]}, field_name="fields")


class ActionSchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(sorted(ACTIONS)))
    params = fields.Dict(keys=fields.String(), load_default=dict)

    @validates_schema
    def _check(self, data, **kwargs):
        if data["type"] in PARAM_SCHEMAS:
            params = data.get("params") or {}
            try:
                PARAM_SCHEMAS[data["type"]]().load(params)
            except ValidationError as err:
                raise ValidationError(err.messages, field_name="params") from None
            # Literal values also pass the unified schema's own checks (probability 0-100, ...).
            spec = ACTIONS[data["type"]]
            literal = {k: (float(v) if spec.params[k].kind == NUMBER and isinstance(v, str) else v)
                       for k, v in params.items()
                       if v is not None and not (isinstance(v, str) and "{" in v) and spec.params[k].kind not in (LIST, DATETIME)}
            errors = SCHEMAS[spec.entity]().validate(literal, partial=True)
            if errors:
                raise ValidationError(errors, field_name="params")


class RuleSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    enabled = fields.Boolean(load_default=True)
    trigger = fields.Nested(TriggerSchema, required=True)
    conditions = fields.List(ConditionField(), load_default=list)
    actions = fields.List(fields.Nested(ActionSchema), required=True, validate=validate.Length(min=1))

    @pre_load
    def _drop_stored_columns(self, data, **kwargs):
        # `rules list --json` output can be applied back: the stored columns are ignored.
        if isinstance(data, dict):
            return {k: v for k, v in data.items()
                    if k not in ("id", "tenant_id", "created_at", "updated_at", "description")}
        return data


_ORDER = ["name", "enabled", "trigger", "type", "fields", "conditions", "any", "field", "operator", "value",
          "actions", "params"]


def flatten(messages: Any, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested error dict -> [(path, message)] in the order of the rule's text."""
    if isinstance(messages, dict):
        out = []
        keys = sorted(messages, key=lambda k: (0, k, "") if isinstance(k, int) else (
            1, _ORDER.index(k) if k in _ORDER else len(_ORDER), str(k)))
        for key in keys:
            if key == "_schema":
                sub = prefix
            elif isinstance(key, int):
                sub = f"{prefix}[{key}]"
            else:
                sub = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten(messages[key], sub))
        return out
    if isinstance(messages, list):
        out = []
        for m in messages:
            out.extend(flatten(m, prefix) if isinstance(m, (dict, list)) else [(prefix, str(m))])
        return out
    return [(prefix, str(messages))]


def validate_rule(data: Any, path: str = "") -> dict[str, Any]:
    """A rule checked and normalised, or RuleError with the path of the first problem."""
    if not isinstance(data, dict):
        raise RuleError(path, "a rule is an object with name, trigger, conditions and actions")
    trigger = data.get("trigger")
    trigger_type = trigger.get("type") if isinstance(trigger, dict) else None
    spec = TRIGGERS.get(trigger_type) if isinstance(trigger_type, str) else None
    with _Variables({"variables": spec.variables if spec else None}):
        try:
            clean = RuleSchema().load(data)
        except ValidationError as err:
            errors = [(_join(path, p), m) for p, m in flatten(err.messages)]
            raise RuleError(errors[0][0], errors[0][1], errors) from None
    return clean


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}" if path else prefix


def validate_rules(data: Any) -> list[dict[str, Any]]:
    """One rule or a list of them; paths of a list's rules start with their index (`[1].actions`)."""
    if isinstance(data, list):
        rules = [validate_rule(item, f"[{i}]") for i, item in enumerate(data)]
        seen: dict[str, int] = {}
        for i, rule in enumerate(rules):
            if rule["name"] in seen:
                raise RuleError(f"[{i}].name", f"duplicate name {rule['name']!r} (also rule [{seen[rule['name']]}])")
            seen[rule["name"]] = i
        return rules
    return [validate_rule(data)]


# --- store ---------------------------------------------------------------------------------------
def tenant_id_of(session: Session, tenant_id: str) -> str:
    from crmsync.configs import ConfigError, get_tenant
    try:
        return get_tenant(session, tenant_id).id
    except ConfigError as err:
        raise RuleError("tenant", str(err)) from None


def apply_rules(session: Session, tenant_id: str, data: Any, *, now: datetime | None = None) -> list[dict]:
    """Upsert rules by name for a tenant (all or nothing). Returns [{id, name, status}] with
    status created | updated | unchanged."""
    tenant_id = tenant_id_of(session, tenant_id)
    rules = validate_rules(data)
    now = now or utcnow()
    existing = {r.name: r for r in session.scalars(
        select(AutomationRule).where(AutomationRule.tenant_id == tenant_id,
                                     AutomationRule.name.in_([r["name"] for r in rules])))}
    out = []
    for rule in rules:
        row = existing.get(rule["name"])
        if row is None:
            row = AutomationRule(tenant_id=tenant_id, created_at=now, updated_at=now, **rule)
            session.add(row)
            status = "created"
        elif all(getattr(row, k) == v for k, v in rule.items()):
            status = "unchanged"
        else:
            for key, value in rule.items():
                setattr(row, key, value)
            row.updated_at = now
            status = "updated"
        out.append((row, status))
    session.flush()
    return [{"id": row.id, "name": row.name, "status": status} for row, status in out]


def save_rule(session: Session, tenant_id: str, data: dict) -> AutomationRule:
    result = apply_rules(session, tenant_id, data)[0]
    return session.get(AutomationRule, result["id"])


def list_rules(session: Session, tenant_id: str | None = None) -> list[AutomationRule]:
    q = select(AutomationRule).order_by(AutomationRule.tenant_id, AutomationRule.name)
    if tenant_id:
        q = q.where(AutomationRule.tenant_id == tenant_id_of(session, tenant_id))
    return list(session.scalars(q))


def find_rule(session: Session, tenant_id: str, name_or_id: str) -> AutomationRule:
    tenant_id = tenant_id_of(session, tenant_id)
    rule = session.scalars(select(AutomationRule).where(AutomationRule.tenant_id == tenant_id,
                                                        AutomationRule.name == name_or_id)).first()
    if rule is None:
        import uuid
        try:
            uuid.UUID(name_or_id)
            rule = session.get(AutomationRule, name_or_id)
        except ValueError:
            rule = None
        if rule is not None and rule.tenant_id != tenant_id:
            rule = None
    if rule is None:
        raise RuleError("rule", f"no rule {name_or_id!r} for tenant {tenant_id}")
    return rule


def rule_as_dict(rule: AutomationRule) -> dict[str, Any]:
    return {"id": rule.id, "tenant_id": rule.tenant_id, "name": rule.name, "enabled": rule.enabled,
            "trigger": rule.trigger, "conditions": rule.conditions, "actions": rule.actions,
            "created_at": rule.created_at, "updated_at": rule.updated_at}


__all__ = [
    "EXCLUDE",
    "RuleError",
    "RuleSchema",
    "apply_rules",
    "find_rule",
    "list_rules",
    "rule_as_dict",
    "save_rule",
    "validate_rule",
    "validate_rules",
]

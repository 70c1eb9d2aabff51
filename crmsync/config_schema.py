"""The marshmallow schema a new sync config is validated with (`crmsync.configs.create_config`).
A module of its own so that what only reads configs (a sync) does not load marshmallow; it still
imports from `crmsync.configs`."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from crmsync.configs import DIRECTIONS, LOCAL, MAX_FREQUENCY_MINUTES, STRATEGIES
from crmsync.entities import ENTITY_BY_PLURAL, ENTITY_PLURALS, SYNCED_FIELDS
from crmsync.platforms import platform_names

__all__ = ["SyncConfigSchema", "ValidationError"]


class SyncConfigSchema(Schema):
    tenant_id = fields.UUID(required=True)
    platform = fields.String(required=True)
    credentials_vault_id = fields.UUID(required=True)
    sync_direction = fields.String(load_default="bidirectional", validate=validate.OneOf(DIRECTIONS))
    # At most a year between scheduled runs (a larger number is a typo, and the column is 32-bit).
    sync_frequency_minutes = fields.Integer(load_default=60, strict=True,
                                            validate=validate.Range(min=0, max=MAX_FREQUENCY_MINUTES))
    conflict_strategy = fields.String(load_default="timestamp_based", validate=validate.OneOf(STRATEGIES))
    source_priority = fields.List(fields.String(), load_default=None)
    entities = fields.List(fields.String(), load_default=None)
    api_base_url = fields.Url(load_default=None, require_tld=False, schemes={"http", "https"},
                              validate=validate.Length(max=500))
    account_id = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    webhook_secret_vault_id = fields.UUID(load_default=None)
    webhook_legacy_signatures = fields.Boolean(load_default=False)
    field_mappings = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.Length(min=1)),
                                 load_default=dict)
    value_mappings = fields.Dict(keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.String()),
                                 load_default=dict)
    enabled = fields.Boolean(load_default=True)
    sweep_every_hours = fields.Integer(load_default=24, strict=True, validate=validate.Range(min=0, max=24 * 366))

    @validates("platform")
    def _platform(self, value, **_):
        if value not in platform_names():
            raise ValidationError(f"unknown platform {value!r}; expected one of {', '.join(platform_names())}")

    @validates("source_priority")
    def _priority(self, value, **_):
        if value is None:
            return
        known = set(platform_names()) | {LOCAL}
        unknown = [p for p in value if p not in known]
        if unknown:
            raise ValidationError(f"unknown platform {unknown[0]!r}; expected names from {', '.join(sorted(known))}")
        if len(set(value)) != len(value):
            raise ValidationError("names a platform twice")

    @validates("entities")
    def _entities(self, value, **_):
        if value is None:
            return
        unknown = [e for e in value if e not in ENTITY_BY_PLURAL]
        if unknown:
            raise ValidationError(f"unknown entity {unknown[0]!r}; expected some of {', '.join(ENTITY_PLURALS.values())}")
        if not value:
            raise ValidationError("names no entity")

    @validates_schema
    def _mappings(self, data, **_):
        known = {f for names in SYNCED_FIELDS.values() for f in names}
        for local_field in data.get("field_mappings") or {}:
            name = local_field.split(".", 1)[-1]
            if name not in known and not local_field.startswith("custom_fields."):
                raise ValidationError({"field_mappings": [f"unknown local field {local_field!r}"]})
        for key in data.get("value_mappings") or {}:
            entity, _, name = key.partition(".")
            if entity not in SYNCED_FIELDS or name not in SYNCED_FIELDS[entity]:
                raise ValidationError({"value_mappings": [f"expected ENTITY.FIELD such as deal.stage, got {key!r}"]})
            remote_values = list(data["value_mappings"][key].values())
            if len(set(remote_values)) != len(remote_values):
                raise ValidationError({"value_mappings": [f"{key}: two local values map to one remote value"]})

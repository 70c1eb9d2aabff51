"""Values that mean the same but are spelled differently in each CRM (a deal stage "Qualified"
in Pipedrive, "qualifiedtobuy" in HubSpot), translated at one config's boundary.

A config's `value_mappings` is {"deal.stage": {"<local value>": "<this CRM's value>"}}. Remote
values coming in become local values; local values going out become this CRM's. A value the
mapping does not name passes unchanged.
"""
from __future__ import annotations

from typing import Any

from crmsync.db.models import SyncConfig


def _maps(config: SyncConfig, entity: str) -> dict[str, dict[str, str]]:
    prefix = f"{entity}."
    return {k[len(prefix):]: v for k, v in (config.value_mappings or {}).items() if k.startswith(prefix)}


def has_value_maps(config: SyncConfig, entity: str) -> bool:
    """Whether the config translates any of this entity's values (most configs translate none)."""
    return bool(_maps(config, entity))


def to_local(config: SyncConfig, entity: str, fields: dict[str, Any]) -> dict[str, Any]:
    maps = _maps(config, entity)
    if not maps:
        return fields
    out = dict(fields)
    for name, mapping in maps.items():
        if name in out and out[name] is not None:
            inverse = {remote: local for local, remote in mapping.items()}
            out[name] = inverse.get(str(out[name]), out[name])
    return out


def to_remote(config: SyncConfig, entity: str, fields: dict[str, Any]) -> dict[str, Any]:
    maps = _maps(config, entity)
    if not maps:
        return fields
    out = dict(fields)
    for name, mapping in maps.items():
        if name in out and out[name] is not None:
            out[name] = mapping.get(str(out[name]), out[name])
    return out

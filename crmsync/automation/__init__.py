"""Automation rules: a trigger (a product event or a record change), conditions on the event
and the records it concerns, and actions that write local records which the normal push path
carries to the tenant's CRM.

Modules: `rules` (validation and store), `triggers` (what each trigger provides; the engine's
hook `on_record_changes`), `templates` (the `{...}` mini-language), `conditions`, `actions`,
`context` (what a rule sees), `runner` (the `crmsync.automation.run(event_id)` task) and
`commands` (the `crmsync rules` CLI).
"""
from __future__ import annotations

ON_RECORD_CHANGES = "crmsync.automation.triggers:on_record_changes"


def subscribe() -> None:
    """Let the rules' record-change triggers hear of what the sync engine applies. Every process
    that applies records calls it at start-up: the CLI, the Celery workers, the ingest app and
    the console (a "module:function" target, imported on the first change)."""
    from crmsync.sync import listeners
    listeners.subscribe(ON_RECORD_CHANGES)

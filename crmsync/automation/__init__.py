"""Automation rules: a trigger (a product event or a record change), conditions on the event
and the records it concerns, and actions that write local records which the normal push path
carries to the tenant's CRM.

Modules: `rules` (validation and store), `triggers` (what each trigger provides; the engine's
hook `on_record_changes`), `templates` (the `{...}` mini-language), `conditions`, `actions`,
`context` (what a rule sees), `runner` (the `crmsync.automation.run(event_id)` task) and
`commands` (the `crmsync rules` CLI).
"""

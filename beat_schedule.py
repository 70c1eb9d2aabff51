"""Celery beat's entries: static. The sync schedule itself lives in the database rows
(crm_sync_configs.next_sync_at); beat only ticks the dispatcher and the outbox sweeper.
Each entry expires after its own interval, so ticks do not pile up while the workers are down."""
from __future__ import annotations

from crmsync.tasks.names import DISPATCH_DUE_SYNCS, SWEEP_OUTBOX

DISPATCH_EVERY_SECONDS = 5.0
SWEEP_EVERY_SECONDS = 30.0


def schedule(settings=None) -> dict:
    if settings is None:
        from crmsync.settings import get_settings
        settings = get_settings()
    dispatch = float(getattr(settings, "dispatch_every_seconds", DISPATCH_EVERY_SECONDS))
    sweep = float(getattr(settings, "sweep_every_seconds", SWEEP_EVERY_SECONDS))
    return {
        "dispatch-due-syncs": {
            "task": DISPATCH_DUE_SYNCS,
            "schedule": dispatch,
            "options": {"queue": "syncs", "expires": dispatch},
        },
        "sweep-outbox": {
            "task": SWEEP_OUTBOX,
            "schedule": sweep,
            "options": {"queue": "syncs", "expires": sweep},
        },
    }

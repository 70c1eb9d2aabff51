"""Who hears of the record changes the engine applies (pulls, webhook events, conflict
resolutions). The engine knows no listener by name: each process's start-up subscribes them
(automation does it through `crmsync.automation.subscribe()`), so `crmsync.sync` never imports
the packages that build on it.

A listener is a callable `fn(session, tenant_id, changes, cause)` or a "module:function" target,
imported on the first change so subscribing costs a command-line start-up nothing. It runs inside
the page's transaction: what it writes commits or rolls back with the page.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crmsync.tasks.names import resolve

if TYPE_CHECKING:   # every CLI command subscribes at start-up: no SQLAlchemy for that
    from sqlalchemy.orm import Session

RecordChangesListener = Callable[["Session", str, list, "str | None"], Any]

_subscribers: list[RecordChangesListener | str] = []


def subscribe(listener: RecordChangesListener | str) -> None:
    """Add a listener once (subscribing again is a no-op, so every entry point may call it)."""
    if listener not in _subscribers:
        _subscribers.append(listener)


def unsubscribe(listener: RecordChangesListener | str) -> None:
    if listener in _subscribers:
        _subscribers.remove(listener)


def notify(session: Session, tenant_id: str, changes: list, cause: str | None) -> None:
    """Hand the changes to every listener, in the order they subscribed."""
    if not changes:
        return
    for i, listener in enumerate(_subscribers):
        if isinstance(listener, str):
            listener = _subscribers[i] = resolve(listener)
        listener(session, tenant_id, changes, cause)

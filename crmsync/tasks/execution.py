"""Running one task by name, shared by the Celery base task (`workers/base.py`) and the inline
runner: the library function in its own session scope, the task named in log lines, and the
failure hook after a permanent error."""
from __future__ import annotations

import contextvars
import inspect
import logging
import re
from datetime import datetime

from crmsync.tasks.errors import BadTaskArguments
from crmsync.tasks.names import resolve, route

log = logging.getLogger("crmsync.tasks")

current_task: contextvars.ContextVar[str] = contextvars.ContextVar("crmsync_task", default="-")


class TaskContextFilter(logging.Filter):
    """Adds `record.task` ("name id,id" of the task being run, ids only, never secrets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.task = current_task.get()
        return True


# Log lines name a task's ids, cut: a message may carry anything (a megabyte "id", 500 deliveries).
SHOWN_IDS = 10
SHOWN_ID_CHARS = 40
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def cut(value: str) -> str:
    return value if len(value) <= SHOWN_ID_CHARS else f"{value[:SHOWN_ID_CHARS]}…({len(value)} chars)"


def describe(name: str, ids: tuple[str, ...]) -> str:
    shown = [cut(i) for i in ids[:SHOWN_IDS]]
    if len(ids) > SHOWN_IDS:
        shown.append(f"+{len(ids) - SHOWN_IDS} more")
    return f"{name}({', '.join(shown)})"


def check_ids(name: str, ids: tuple[str, ...]) -> None:
    """BadTaskArguments unless every id has the form of our row ids (what `new_id` makes)."""
    bad = [i for i in ids if not _UUID.fullmatch(i)]
    if bad:
        raise BadTaskArguments(f"{name}: {len(bad)} of its ids are not ids, e.g. {cut(bad[0])!r}")


def check_arguments(name: str, takes: inspect.Signature, args: tuple, kwargs: dict) -> None:
    """BadTaskArguments unless the message's arguments fit the task's parameters (`takes`): a
    message with one id too many or too few would otherwise fail in Celery with a TypeError."""
    try:
        takes.bind(*args, **kwargs)
    except TypeError:
        shown = ", ".join(str(p.replace(annotation=p.empty)) for p in takes.parameters.values())
        extra = f" and keyword arguments ({len(kwargs)})" if kwargs else ""
        raise BadTaskArguments(f"{name} takes ({shown}), the message carries {_count(len(args), 'id')}{extra}"
                               ) from None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def execute(name: str, ids: tuple[str, ...]) -> None:
    """Run the library function in its own session scope: commit on success, roll back on error."""
    from crmsync.db import session_scope
    fn = resolve(route(name).target)
    token = current_task.set(describe(name, ids))
    try:
        with session_scope() as session:
            fn(session, *ids)
    finally:
        current_task.reset(token)


def fail_permanently(name: str, ids: tuple[str, ...], reason: str) -> None:
    """Call the task's failure hook in a fresh session (the task's own was rolled back)."""
    hook = route(name).on_failure
    log.error("task %s failed permanently: %s", describe(name, ids), reason)
    if hook is None:
        return
    from crmsync.db import session_scope
    with session_scope() as session:
        resolve(hook)(session, *ids, reason)


def defer(name: str, ids: tuple[str, ...], until: datetime) -> None:
    """Before a retry is scheduled: the task's retry hook marks its rows not_before `until`, in a
    short transaction of its own (the task's was rolled back, its rows' updated_at with it). A
    failure here (the database is often why the task failed) leaves the retry as it was."""
    hook = route(name).on_retry
    if hook is None:
        return
    from crmsync.db import session_scope
    try:
        with session_scope() as session:
            resolve(hook)(session, *ids, until)
    except Exception as err:  # noqa: BLE001  the retry goes ahead; at worst the sweeper sends a copy
        log.warning("could not mark %s to wait for its retry: %s", describe(name, ids), type(err).__name__)

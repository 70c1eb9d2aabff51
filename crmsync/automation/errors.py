"""Errors of the automation domain. Each carries the path of what was wrong, in the rule's own
terms (`actions[1].params.due_date`), so an operator can find it in the file they wrote."""
from __future__ import annotations

from crmsync.errors import CrmsyncError, Fatal, SkipRecord


class AutomationError(CrmsyncError):
    pass


class RuleError(AutomationError, Fatal):
    """A rule refused when it is written: unknown trigger, operator or action, bad params, an
    unknown template variable. `path` points into the rule; `errors` holds every problem found
    as (path, message), `path`/`message` being the first."""

    def __init__(self, path: str, message: str, errors: list[tuple[str, str]] | None = None):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message
        self.errors = errors or [(path, message)]


class TemplateError(AutomationError, Fatal):
    """A template that does not parse, or names a variable its trigger does not provide."""

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message if position is None else f"{message} (at character {position + 1})")
        self.message = message
        self.position = position


class ActionError(AutomationError, SkipRecord):
    """An action that cannot be carried out for this event (a rendered value of the wrong type,
    nothing to update). The run is logged as failed; retrying would fail the same way."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message

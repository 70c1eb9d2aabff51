"""How every `crmsync` command reports: `--json` prints exactly one JSON document on stdout and
everything else (human text, progress, logs) goes to stderr. Exit 0 success, 1 the operation
failed, 2 bad usage or bad input."""
from __future__ import annotations

import json
import os
import sys
import unicodedata
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NoReturn

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


class IdType(click.ParamType):
    """A crmsync id (UUID), checked before it reaches a query: `zz` is bad usage, not a database error."""
    name = "ID"

    def convert(self, value, param, ctx):
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            self.fail(f"not an id: '{printable(str(value))}'", param, ctx)


class NameType(click.ParamType):
    """A name people give (tenant, vault entry): 1-200 characters of printable text, as the columns
    hold. Bytes that are not UTF-8 arrive from argv as surrogates and are refused here."""
    name = "NAME"
    max_length = 200

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if not text:
            self.fail("is empty", param, ctx)
        if len(text) > self.max_length:
            self.fail(f"is {len(text)} characters; at most {self.max_length}", param, ctx)
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
            self.fail(f"holds control characters or bytes that are not UTF-8: '{printable(text)}'", param, ctx)
        return text


ID = IdType()
NAME = NameType()
# How many rows a list command prints.
LIMIT = click.IntRange(1, 100_000)


def printable(text: str, limit: int = 60) -> str:
    """`text` safe to echo in a one-line message: undecodable bytes as \\x escapes, cut short."""
    try:
        raw = text.encode("utf-8", "surrogateescape")     # argv bytes that were not UTF-8
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    shown = raw.decode("utf-8", "backslashreplace")
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _default(value: Any):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_default, indent=2, sort_keys=True)


def emit(value: Any, as_json: bool, human: str | None = None) -> None:
    if as_json:
        click.echo(to_json(value))
    else:
        click.echo(human if human is not None else to_json(value))


def bad_input(message: str) -> NoReturn:
    """Exit 2: the caller gave something we refuse."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def failed(message: str) -> NoReturn:
    """Exit 1: the input was fine, the operation failed."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def secret_input(from_env: str | None) -> str:
    """A secret given the way secrets are given here: from the environment variable named by
    --from-env, else all of standard input — never from argv, where `ps` and shell history see it."""
    if from_env:
        text = os.environ.get(from_env)
        if text is None:
            bad_input(f"--from-env: environment variable {from_env} is not set")
        return text
    return sys.stdin.read()


def table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, "") if r.get(c) is not None else "")) for r in rows))
              for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    for r in rows:
        lines.append("  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(widths[c]) for c in columns))
    return "\n".join(lines)

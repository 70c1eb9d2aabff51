"""The `{...}` mini-language of rule params: `Inbound Lead - {email}`, `{deal.name}`,
`{meeting_date - 1 day}`, `{now + 2 hours}`.

A tokenizer and a tiny grammar — never eval:

    template    := (text | "{{" | "}}" | "{" expression "}")*
    expression  := path (("+" | "-") NUMBER UNIT)*
    path        := NAME ("." NAME)*
    UNIT        := minute(s) | hour(s) | day(s) | week(s)

A template that is exactly one expression renders to the value itself (a datetime stays a
datetime, a number a number); anything else renders to text.

An expression that resolves to nothing (a variable the event does not carry, a date shift of no
date) is never rendered silently as "": `render_value` reports it in `unresolved`, and inside
text it keeps its own source (`Prepare for meeting with {contact_name}`), so a title names the
gap instead of ending blank. A template that is only that expression renders to None: the field
is left empty, or refused when the action requires it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from crmsync.automation.errors import TemplateError
from crmsync.automation.variables import ANY, DATETIME, TEXT, resolve_kind

UNITS = {"minute": "minutes", "minutes": "minutes", "hour": "hours", "hours": "hours",
         "day": "days", "days": "days", "week": "weeks", "weeks": "weeks"}

# A rule moves dates by days or months, not ages: a longer shift is a typo, and ~2.7 million years
# (99999999999 weeks) overflowed Python's dates when the rule ran, after `rules apply` had taken it.
MAX_SHIFT = timedelta(days=100 * 366)
_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<number>\d+(?:\.\d+)?)|(?P<op>[.+-]))")


@dataclass(frozen=True)
class Shift:
    sign: int
    amount: float
    unit: str            # timedelta keyword: minutes, hours, days, weeks

    def delta(self) -> timedelta:
        return timedelta(**{self.unit: self.sign * self.amount})


@dataclass(frozen=True)
class Expression:
    path: str
    shifts: tuple[Shift, ...]
    position: int        # where "{" was, for messages
    text: str = ""       # the expression as written, braces included

    @property
    def source(self) -> str:
        out = self.path
        for s in self.shifts:
            amount = int(s.amount) if s.amount == int(s.amount) else s.amount
            out += f" {'+' if s.sign > 0 else '-'} {amount} {s.unit}"
        return "{" + out + "}"


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[str | Expression, ...]

    @property
    def expressions(self) -> list[Expression]:
        return [p for p in self.parts if isinstance(p, Expression)]

    @property
    def is_single_expression(self) -> bool:
        return len(self.parts) == 1 and isinstance(self.parts[0], Expression)

    @property
    def is_literal(self) -> bool:
        return not self.expressions

    def check(self, variables: dict[str, str]) -> str:
        """Check every name against the trigger's variables; returns the kind the template
        renders to (the expression's kind when it is a single expression, else TEXT)."""
        kinds = []
        for expr in self.expressions:
            try:
                kind = resolve_kind(expr.path, variables)
            except ValueError as err:
                raise TemplateError(str(err), expr.position) from None
            if expr.shifts and kind not in (DATETIME, ANY):
                raise TemplateError(f"date arithmetic on {expr.path!r}, which is not a date", expr.position)
            kinds.append(DATETIME if expr.shifts else kind)
        return kinds[0] if self.is_single_expression else TEXT

    def render(self, context: dict[str, Any], unresolved: list[Expression] | None = None) -> Any:
        """The rendered value; expressions that resolve to nothing are appended to `unresolved`
        and, inside text, keep their source."""
        if self.is_single_expression:
            value = evaluate(self.parts[0], context)
            if is_nothing(value):
                if unresolved is not None:
                    unresolved.append(self.parts[0])
                return None
            return value
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = evaluate(part, context)
            if is_nothing(value):
                if unresolved is not None:
                    unresolved.append(part)
                out.append(part.text or part.source)
            else:
                out.append(to_text(value))
        return "".join(out)


def parse(source: str) -> Template:
    return _parse(source)


@lru_cache(maxsize=2048)
def _parse(source: str) -> Template:
    parts: list[str | Expression] = []
    text: list[str] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "{" and source.startswith("{{", i):
            text.append("{")
            i += 2
        elif ch == "}" and source.startswith("}}", i):
            text.append("}")
            i += 2
        elif ch == "}":
            raise TemplateError("unmatched '}' (write '}}' for a literal brace)", i)
        elif ch == "{":
            end = source.find("}", i + 1)
            if end < 0:
                raise TemplateError("unclosed '{' (write '{{' for a literal brace)", i)
            if text:
                parts.append("".join(text))
                text = []
            parts.append(_parse_expression(source[i + 1:end], i))
            i = end + 1
        else:
            text.append(ch)
            i += 1
    if text:
        parts.append("".join(text))
    return Template(source, tuple(parts))


def _tokens(body: str, offset: int) -> list[tuple[str, str, int]]:
    out, i = [], 0
    while i < len(body):
        if body[i:].strip() == "":
            break
        m = _TOKEN.match(body, i)
        if not m:
            raise TemplateError(f"unexpected character {body[i:].lstrip()[0]!r} in expression", offset + 1 + i)
        kind = m.lastgroup
        out.append((kind, m.group(kind), offset + 1 + m.start(kind)))
        i = m.end()
    return out


def _parse_expression(body: str, offset: int) -> Expression:
    tokens = _tokens(body, offset)
    pos = 0

    def take(kind: str, what: str) -> tuple[str, str, int]:
        nonlocal pos
        if pos >= len(tokens):
            raise TemplateError(f"expected {what} before '}}'", offset + 1 + len(body))
        tok = tokens[pos]
        if tok[0] != kind:
            raise TemplateError(f"expected {what}, found {tok[1]!r}", tok[2])
        pos += 1
        return tok

    if not tokens:
        raise TemplateError("empty expression '{}' (write '{{}}' for literal braces)", offset)
    names = [take("name", "a variable name")[1]]
    while pos < len(tokens) and tokens[pos][1] == ".":
        pos += 1
        names.append(take("name", "a field name after '.'")[1])
    shifts = []
    while pos < len(tokens):
        op = tokens[pos]
        if op[1] not in "+-" or op[0] != "op":
            raise TemplateError(f"expected '+' or '-', found {op[1]!r}", op[2])
        pos += 1
        number = take("number", "a number")[1]
        amount = float(number)
        unit_tok = take("name", "a unit (minutes, hours, days, weeks)")
        unit = UNITS.get(unit_tok[1].lower())
        if unit is None:
            raise TemplateError(f"unknown unit {unit_tok[1]!r}; use minutes, hours, days or weeks", unit_tok[2])
        shifts.append(Shift(1 if op[1] == "+" else -1, amount, unit))
        try:
            total = sum((abs(s.delta()) for s in shifts), timedelta())
        except OverflowError:
            total = None
        if total is None or total > MAX_SHIFT:
            raise TemplateError(f"shifts dates by more than 100 years ({number} {unit})", unit_tok[2])
    return Expression(".".join(names), tuple(shifts), offset, "{" + body + "}")


def lookup(path: str, context: dict[str, Any]) -> Any:
    value: Any = context
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        else:
            return None
        if value is None:
            return None
    return value


def as_datetime(value: Any) -> datetime | None:
    """An aware datetime from a datetime, a date or an ISO string; None when it is not one."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def evaluate(expr: Expression, context: dict[str, Any]) -> Any:
    value = lookup(expr.path, context)
    if not expr.shifts:
        return value
    moment = as_datetime(value)
    if moment is None:
        return None          # no date to move: the field stays empty rather than wrong
    try:
        for shift in expr.shifts:
            moment = moment + shift.delta()
    except OverflowError:
        return None          # moved past the year 9999: no date rather than a crash
    return moment


def is_nothing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(to_text(v) for v in value)
    return str(value)


def has_placeholders(value: Any) -> bool:
    return isinstance(value, str) and ("{" in value or "}" in value)


def render_value(value: Any, context: dict[str, Any], unresolved: list[Expression] | None = None) -> Any:
    """Render a param: strings are templates, everything else passes through. Expressions that
    resolve to nothing are appended to `unresolved` (see the module's docstring)."""
    if isinstance(value, str):
        return parse(value).render(context, unresolved)
    if isinstance(value, list):
        return [render_value(v, context, unresolved) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context, unresolved) for k, v in value.items()}
    return value

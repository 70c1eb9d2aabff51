"""The SOQL subset a sync needs, parsed and run over the in-memory org.

    SELECT field, ... | COUNT() FROM object
    [WHERE condition]            -- =, !=, <>, <, <=, >, >=, [NOT] IN (...), LIKE, AND, OR, NOT, ( )
    [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

Follows the SOQL and SOSL Reference (https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select.htm):
keywords, object and field names are case-insensitive; strings are single-quoted with backslash
escapes; datetime literals are unquoted (``2025-02-14T16:40:03Z``, ``...+01:00``, ``...000+0000``)
and so are date literals (``2025-02-14``) ("Date Formats and Date Literals",
sforce_api_calls_soql_select_dateformats.htm) — a quoted value for a date or datetime field, or an
unquoted one for a text field, is refused as Salesforce does; ``null`` compares with = and !=; a
``!=`` condition matches records whose field is null; ascending order puts nulls first unless told
otherwise. An unknown object is INVALID_TYPE, an unknown field INVALID_FIELD, bad syntax MALFORMED_QUERY.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from .errors import ApiError, invalid_field, malformed_query
from .schema import SObject, lookup
from .values import normalize_id, parse_datetime

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""", re.VERBOSE)
_KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc", "desc",
             "nulls", "first", "last", "limit", "offset", "true", "false", "null", "count"}


@dataclass
class Query:
    obj: SObject
    fields: list[str]
    where: object = None
    order: list[tuple[str, bool, bool]] = field(default_factory=list)   # (field, descending, nulls_last)
    limit: int | None = None
    offset: int = 0
    count_only: bool = False
    mentions: set = field(default_factory=set)   # every field the query names (IsDeleted for queryAll)


class _Parser:
    def __init__(self, text: str):
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise malformed_query(f"unexpected token: '{text[pos:pos + 20].strip()}'")
            kind = m.lastgroup
            value = m.group(kind)
            if kind == "word" and value.lower() in _KEYWORDS:
                kind, value = "kw", value.lower()
            self.tokens.append((kind, value))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.i = 0

    def peek(self, kind: str | None = None, value: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        k, v = self.tokens[self.i]
        return (kind is None or k == kind) and (value is None or v == value)

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        if not self.peek(kind, value):
            got = self.tokens[self.i][1] if self.i < len(self.tokens) else "end of query"
            raise malformed_query(f"unexpected token: '{got}'" + (f", expected {value or kind}" if value or kind else ""))
        self.i += 1
        return self.tokens[self.i - 1][1]

    def accept(self, kind: str, value: str | None = None) -> bool:
        if self.peek(kind, value):
            self.i += 1
            return True
        return False


def parse(text: str) -> Query:
    if not text or not text.strip():
        raise malformed_query("the query is empty")
    p = _Parser(text)
    p.take("kw", "select")
    names: list[str] = []
    count_only = False
    if p.accept("kw", "count"):
        p.take("op", "(")
        p.take("op", ")")
        count_only = True
    else:
        names.append(p.take("word"))
        while p.accept("op", ","):
            names.append(p.take("word"))
    p.take("kw", "from")
    obj_name = p.take("word")
    obj = lookup(obj_name)
    if obj is None:
        raise ApiError(400, "INVALID_TYPE", f"sObject type '{obj_name}' is not supported. If you are attempting to "
                       "use a custom object, be sure to append the '__c' after the entity name.")
    q = Query(obj, [_field(obj, n).name for n in dict.fromkeys(names)], count_only=count_only)
    q.mentions.update(q.fields)
    if p.accept("kw", "where"):
        q.where = _expr(p, q)
    if p.accept("kw", "order"):
        p.take("kw", "by")
        while True:
            name = _field(q.obj, p.take("word")).name
            desc = p.accept("kw", "desc") or (p.accept("kw", "asc") and False)
            nulls_last = desc
            if p.accept("kw", "nulls"):
                nulls_last = p.accept("kw", "last") or not p.take("kw", "first")
            q.order.append((name, desc, nulls_last))
            if not p.accept("op", ","):
                break
    if p.accept("kw", "limit"):
        q.limit = _int(p.take("number"), "LIMIT")
    if p.accept("kw", "offset"):
        q.offset = _int(p.take("number"), "OFFSET")
    if p.i != len(p.tokens):
        raise malformed_query(f"unexpected token: '{p.tokens[p.i][1]}'")
    return q


def _int(text: str, what: str) -> int:
    if not text.isdigit():
        raise malformed_query(f"{what} must be a non-negative integer")
    return int(text)


def _field(obj: SObject, name: str):
    f = obj.field(name)
    if f is None:
        raise invalid_field(f"No such column '{name}' on entity '{obj.name}'. If you are attempting to use a custom "
                            "field, be sure to append the '__c' after the custom field name.")
    return f


def _expr(p: _Parser, q: Query):
    left = _term(p, q)
    while p.accept("kw", "or"):
        left = ("or", left, _term(p, q))
    return left


def _term(p: _Parser, q: Query):
    left = _factor(p, q)
    while p.accept("kw", "and"):
        left = ("and", left, _factor(p, q))
    return left


def _factor(p: _Parser, q: Query):
    if p.accept("kw", "not"):
        return ("not", _factor(p, q))
    if p.accept("op", "("):
        inner = _expr(p, q)
        p.take("op", ")")
        return inner
    f = _field(q.obj, p.take("word"))
    q.mentions.add(f.name)
    negate = p.accept("kw", "not")
    if p.accept("kw", "in"):
        p.take("op", "(")
        values = [_value(p, f)]
        while p.accept("op", ","):
            values.append(_value(p, f))
        p.take("op", ")")
        return ("not in" if negate else "in", f.name, values)
    if negate:
        raise malformed_query("expected IN after NOT")
    if p.accept("kw", "like"):
        pattern = _value(p, f)
        regex = "^" + "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(pattern)) + "$"
        return ("like", f.name, re.compile(regex, re.IGNORECASE | re.DOTALL))
    op = p.take("op")
    if op not in ("=", "!=", "<>", "<", "<=", ">", ">="):
        raise malformed_query(f"unexpected token: '{op}'")
    return ("!=" if op == "<>" else op, f.name, _value(p, f))


def _value(p: _Parser, f):
    kind, text = p.tokens[p.i] if p.i < len(p.tokens) else ("end", "")
    p.i += 1
    if kind == "kw" and text == "null":
        return None
    typed = f.type
    if typed == "datetime":
        if kind != "datetime":
            raise invalid_field(f"value of filter criterion for field '{f.name}' must be of type dateTime and "
                                "should not be enclosed in quotes")
        return parse_datetime(text)
    if typed == "date":
        if kind != "date":
            raise invalid_field(f"value of filter criterion for field '{f.name}' must be of type date and "
                                "should not be enclosed in quotes")
        return date.fromisoformat(text)
    if typed == "boolean":
        if kind != "kw" or text not in ("true", "false"):
            raise invalid_field(f"value of filter criterion for field '{f.name}' must be of type boolean")
        return text == "true"
    if typed in ("int", "double", "currency", "percent"):
        if kind != "number":
            raise invalid_field(f"value of filter criterion for field '{f.name}' must be of type {typed} and "
                                "should not be enclosed in quotes")
        return float(text)
    if kind != "string":
        raise malformed_query(f"unexpected token: '{text}'")
    value = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text[1:-1])
    if typed in ("id", "reference"):
        return normalize_id(value) or value
    return value


def matches(cond, rec: dict) -> bool:
    if cond is None:
        return True
    op = cond[0]
    if op == "and":
        return matches(cond[1], rec) and matches(cond[2], rec)
    if op == "or":
        return matches(cond[1], rec) or matches(cond[2], rec)
    if op == "not":
        return not matches(cond[1], rec)
    # Text comparisons in SOQL are case-insensitive (ids arrive normalized to 18 characters).
    value = _fold(rec.get(cond[1]))
    arg = [_fold(a) for a in cond[2]] if op in ("in", "not in") else cond[2] if op == "like" else _fold(cond[2])
    if op == "in":
        return value in arg
    if op == "not in":
        return value not in arg
    if op == "like":
        return value is not None and bool(arg.match(str(value)))
    if op == "=":
        return value == arg
    if op == "!=":
        return value != arg
    if value is None or arg is None:
        return False
    try:
        return {"<": value < arg, "<=": value <= arg, ">": value > arg, ">=": value >= arg}[op]
    except TypeError:
        return False


def _fold(value):
    return value.lower() if isinstance(value, str) else value


def sort_records(rows: list[dict], order: list[tuple[str, bool, bool]]) -> list[dict]:
    for name, desc, nulls_last in reversed(order):
        present = [r for r in rows if r.get(name) is not None]
        absent = [r for r in rows if r.get(name) is None]
        present.sort(key=lambda r: _fold(r[name]), reverse=desc)
        rows = present + absent if nulls_last else absent + present
    return rows


def run(q: Query, rows: list[dict], *, include_deleted: bool) -> list[dict]:
    picked = [r for r in rows if (include_deleted or not r["IsDeleted"]) and matches(q.where, r)]
    picked = sort_records(picked, q.order or [("Id", False, False)])
    picked = picked[q.offset:]
    return picked[:q.limit] if q.limit is not None else picked


__all__ = ["Query", "datetime", "matches", "parse", "run"]

"""Local rows as the merge sees them: unified dicts in canonical form, read and written a page
at a time with Core statements (one query per page, not per record)."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Float,
    Integer,
    String,
    TypeDecorator,
    any_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session

from crmsync.db.models import ENTITY_MODELS, SyncLink
from crmsync.db.types import UTCDateTime
from crmsync.entities import ASSOCIATIONS, SYNCED_FIELD_SETS, SYNCED_FIELDS
from crmsync.sync.merge import CUSTOM, canonical


@cache
def _converters(entity: str) -> dict[str, Any]:
    table = ENTITY_MODELS[entity].__table__
    out = {}
    for name in SYNCED_FIELDS[entity]:
        col_type = table.c[name].type
        if isinstance(col_type, UTCDateTime):
            out[name] = to_datetime
        elif isinstance(col_type, Integer):
            out[name] = lambda v: None if v is None else int(float(v))
        elif isinstance(col_type, Float):
            out[name] = lambda v: None if v is None else float(v)
    return out


def to_datetime(value):
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def row_to_flat(entity: str, row: Any) -> dict[str, Any]:
    """A local row (Core Row or mapping) as canonical flat fields."""
    m = row._mapping if hasattr(row, "_mapping") else row
    out = {f: canonical(m[f]) for f in SYNCED_FIELDS[entity]}
    for key, value in (m["custom_fields"] or {}).items():
        out[CUSTOM + key] = canonical(value)
    return out


def flat_to_columns(entity: str, flat: dict[str, Any], current_custom: dict | None = None) -> dict[str, Any]:
    """Canonical flat fields as column values for an INSERT/UPDATE."""
    conv = _converters(entity)
    synced = _synced(entity)
    cols: dict[str, Any] = {}
    custom = dict(current_custom or {})
    custom_touched = False
    for key, value in flat.items():
        if key in synced:
            cols[key] = conv[key](value) if key in conv else value
        elif key.startswith(CUSTOM):
            custom_touched = True
            name = key[len(CUSTOM):]
            if value is None:
                custom.pop(name, None)
            else:
                custom[name] = value
    if custom_touched or current_custom is None:
        cols["custom_fields"] = custom
    return cols


def _synced(entity: str) -> frozenset[str]:
    return SYNCED_FIELD_SETS[entity]


# A new record's own columns, ahead of its synced fields in `record_columns`.
RECORD_OWN_COLUMNS = ("id", "tenant_id", "created_at", "updated_at", "last_change_cause", "custom_fields")


@cache
def record_columns(entity: str) -> list[str]:
    """The columns of a new synced record's row, in `record_values` order: every synced field
    is given, NULL where the record has none (no synced column has a server default)."""
    return [*RECORD_OWN_COLUMNS, *SYNCED_FIELDS[entity]]


@cache
def _fields_converted(entity: str) -> tuple[tuple[str, Any], ...]:
    conv = _converters(entity)
    return tuple((name, conv.get(name)) for name in SYNCED_FIELDS[entity])


def record_values(entity: str, flat: dict[str, Any], own: list[Any],
                  when_empty: Mapping[str, Any] | None = None) -> list[Any]:
    """A new row's values in `record_columns(entity)` order, from canonical flat fields: `own`
    (its id, tenant, created and updated times, change cause), then its custom fields, then each
    synced field (`when_empty[field]` where the value is empty). A page of new records is a list
    of these for one COPY: no dict per row, no scan of every row for its columns."""
    custom = {key[len(CUSTOM):]: value for key, value in flat.items()
              if value is not None and key.startswith(CUSTOM)}
    own.append(custom)
    get = flat.get
    for name, conv in _fields_converted(entity):
        value = get(name)
        own.append(value if value is None or conv is None else conv(value))
    if when_empty:
        at = record_columns(entity).index
        for name, default in when_empty.items():
            if not own[at(name)]:
                own[at(name)] = default
    return own


# A UUID's version and variant bits (RFC 9562, 4.1-4.2) set in its 7th and 9th bytes.
_VERSION_4 = bytes(b & 0x0F | 0x40 for b in range(256))
_VARIANT = bytes(b & 0x3F | 0x80 for b in range(256))
# Where each of a UUID's 32 hex digits goes in its 36 characters of text (8-4-4-4-12).
_DIGIT_AT = [i + (i >= 8) + (i >= 12) + (i >= 16) + (i >= 20) for i in range(32)]


def new_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, as `new_id` makes them, for a page of new rows
    at a fraction of uuid4's cost each: the page's digits are laid out with slice assignments
    (one per digit position, not one formatting per id), a space after each id to split on."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    digits = raw.hex().encode()
    text = bytearray(b"-" * (37 * count))
    text[36::37] = b" " * count
    for i, at in enumerate(_DIGIT_AT):
        text[at::37] = digits[i::32]
    return text.decode().split()


def among(session: Session, column, values: Iterable) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL one array parameter (`= ANY`): a page's lookup is then
    the same short statement every time, compiled and planned once, not one with hundreds of
    parameters."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=_ArrayLiteral(column.type)))
    return column.in_(values)


class _ArrayLiteral(TypeDecorator):
    """A list bound as one PostgreSQL array literal (`{"a","b"}`) for a parameter of the column's
    array type. psycopg dumps a list parameter element by element in Python, which was a fifth of
    a backfill page's CPU (a page's 5,000 ids and emails, probed once per page); one string is
    built in a few milliseconds, and PostgreSQL parses it once, as the parameter's value.
    Elements are quoted, with `"` and `\\` escaped (PostgreSQL's array input syntax); None is NULL."""
    impl = String
    cache_ok = True

    def __init__(self, item_type):
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(ARRAY(self.item_type))

    def bind_processor(self, dialect):
        def literal(values):
            return "{" + ",".join("NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
                                  for v in values) + "}"
        return literal


def load_rows(session: Session, tenant_id: str, entity: str, ids: Iterable[str]) -> dict[str, Any]:
    ids = list(ids)
    if not ids:
        return {}
    table = ENTITY_MODELS[entity].__table__
    rows = session.execute(select(table).where(table.c.tenant_id == tenant_id, among(session, table.c.id, ids)))
    return {r.id: r for r in rows}


def load_links(session: Session, tenant_id: str, platform: str, entity: str, *, external_ids=None,
               local_ids=None) -> list[SyncLink]:
    q = select(SyncLink).where(SyncLink.tenant_id == tenant_id, SyncLink.platform == platform,
                               SyncLink.entity_type == entity)
    for column, values in ((SyncLink.external_id, external_ids), (SyncLink.local_id, local_ids)):
        if values is not None:
            values = list(values)
            if not values:
                return []
            q = q.where(among(session, column, values))
    return list(session.scalars(q))


def resolve_associations(session: Session, tenant_id: str, platform: str, entity: str,
                         associations_by_record: list[dict[str, str | None]]) -> dict[tuple[str, str], str]:
    """(association field, external id) -> local id, one query per associated entity type.
    External ids we hold no link for are left out: the merge then leaves that field alone."""
    wanted: dict[str, set[str]] = {}
    for assoc in associations_by_record:
        for fname, ext in assoc.items():
            if ext and fname in ASSOCIATIONS[entity]:
                wanted.setdefault(fname, set()).add(str(ext))
    out: dict[tuple[str, str], str] = {}
    for fname, ext_ids in wanted.items():
        target = ASSOCIATIONS[entity][fname]
        for link in load_links(session, tenant_id, platform, target, external_ids=ext_ids):
            out[(fname, link.external_id)] = link.local_id
    return out


def external_ids_for(session: Session, tenant_id: str, platform: str, entity: str,
                     rows: list[Any]) -> dict[tuple[str, str], str]:
    """(association field, local id) -> external id for pushing associations."""
    wanted: dict[str, set[str]] = {}
    for row in rows:
        m = row._mapping
        for fname in ASSOCIATIONS[entity]:
            if m[fname]:
                wanted.setdefault(fname, set()).add(m[fname])
    out: dict[tuple[str, str], str] = {}
    for fname, local_ids in wanted.items():
        target = ASSOCIATIONS[entity][fname]
        for link in load_links(session, tenant_id, platform, target, local_ids=local_ids):
            if link.external_id:
                out[(fname, link.local_id)] = link.external_id
    return out


def match_unlinked(session: Session, tenant_id: str, platform: str, entity: str,
                   keys: Iterable[str]) -> dict[str, Any]:
    """Local rows with no link to this platform, by lowercased email (contacts) or domain
    (companies): a record the CRM and we both hold but never connected. Never a duplicate."""
    column = {"contact": "email", "company": "domain"}.get(entity)
    keys = {k.lower() for k in keys if k}
    if column is None or not keys:
        return {}
    table = ENTITY_MODELS[entity].__table__
    # A link without an external id is a create in flight: its row is still a fair match.
    linked = select(SyncLink.id).where(SyncLink.local_id == table.c.id, SyncLink.tenant_id == tenant_id,
                                       SyncLink.platform == platform, SyncLink.entity_type == entity,
                                       SyncLink.external_id.is_not(None)).exists()
    rows = session.execute(select(table).where(
        table.c.tenant_id == tenant_id, among(session, func.lower(table.c[column], type_=String()), keys),
        table.c.deleted_at.is_(None), ~linked).order_by(table.c.created_at))
    out = {}
    for r in rows:
        out.setdefault(r._mapping[column].lower(), r)
    return out


@contextmanager
def asked_meanwhile(session: Session, statement) -> Iterator[Callable[[], Any]]:
    """`statement`'s scalar answer, asked on the session's connection by a thread while the block
    works out what needs no database; `answer()` after the block returns it (or raises what the
    asking raised). The block must not use the session: the connection is the thread's until the
    block ends. On SQLite (a connection is its own thread's) the answer is asked at once."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        value = conn.scalar(statement)
        yield lambda: value
        return
    # concurrent.futures is loaded already (psycopg imports asyncio, which imports it).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="crmsync-ask-meanwhile") as asking:
        yield asking.submit(conn.scalar, statement).result


def insert_records(session: Session, entity: str, rows: list[list[Any]]) -> None:
    """New synced records, each row from `record_values`, in one COPY (PostgreSQL) or executemany."""
    if rows:
        with new_rows(session, ENTITY_MODELS[entity].__table__, record_columns(entity)) as add:
            for values in rows:
                add(values)


def insert_many(session: Session, table, rows: list[dict[str, Any]]) -> None:
    """New rows in bulk: COPY on PostgreSQL (several times faster than INSERTs for a page), an
    executemany INSERT elsewhere. Same transaction either way. A column some rows lack is NULL."""
    if not rows:
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with new_rows(session, table, columns) as add:
        for r in rows:
            add(list(map(r.get, columns)))


def _json_text(value: Any) -> str:
    """JSON text for a jsonb column of a COPY row: orjson (a link's base and a row's custom fields
    are two documents per record of a backfill, and the stdlib encoder was a tenth of its CPU);
    the stdlib for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


@contextmanager
def new_rows(session: Session, table, columns: list[str]) -> Iterator[Callable[[list[Any]], None]]:
    """An `add(values)` for new rows given as value lists in `columns` order. On PostgreSQL each
    row goes into a COPY as it is made, so PostgreSQL takes in a page while the caller works out
    the rest of it; the COPY opens at the first row, and the connection is the COPY's until the
    block ends (no other statement in between). Elsewhere rows are kept for one executemany."""
    json_at = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, (JSON, JSONB))]
    time_at = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
    if session.get_bind().dialect.name != "postgresql":
        kept: list[dict[str, Any]] = []
        yield lambda values: kept.append(dict(zip(columns, values)))
        if kept:
            session.execute(insert(table), kept)
        return
    dumps = _json_text
    # A page's rows share a few timestamps (the unit's `now`): each is formatted once.
    times: dict[datetime, str] = {}
    with ExitStack() as stack:
        write_row = None

        def add(values: list[Any]) -> None:
            nonlocal write_row
            if write_row is None:
                session.flush()
                raw = session.connection().connection.dbapi_connection
                cur = stack.enter_context(raw.cursor())
                write_row = stack.enter_context(
                    cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN")).write_row
            for i in json_at:
                if values[i] is not None:
                    values[i] = dumps(values[i])
            for i in time_at:
                t = values[i]
                if t.__class__ is datetime:
                    text = times.get(t)
                    if text is None:
                        if t.tzinfo is None:
                            raise ValueError(f"naive datetime for {table.name}.{columns[i]}; use an aware UTC datetime")
                        text = times[t] = t.isoformat()
                    values[i] = text
            write_row(values)
        yield add


def update_rows(session: Session, entity: str, rows: list[dict[str, Any]]) -> None:
    """Each dict has `id`, `tenant_id` and the columns to set; grouped by column set so each
    group is one executemany."""
    table = ENTITY_MODELS[entity].__table__
    groups: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(k for k in row if k not in ("id", "tenant_id"))), []).append(row)
    for cols, group in groups.items():
        stmt = (update(table).where(table.c.id == bindparam("_id"), table.c.tenant_id == bindparam("_tenant"))
                .values({c: bindparam(c) for c in cols}))
        session.connection().execute(stmt, [{"_id": r["id"], "_tenant": r["tenant_id"],
                                             **{c: r[c] for c in cols}} for r in group])

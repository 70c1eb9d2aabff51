"""Column types that behave the same on PostgreSQL and SQLite."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")

# JSON kept as the text it was written in, on both: for a document only ever written and read
# whole, never looked into by SQL. PostgreSQL then checks its syntax and stores it, where jsonb
# would parse it into its binary form (and print it back on every read): for a sync link's base,
# written once per record a backfill creates, that was a fifth of the link's cost to PostgreSQL
# (PostgreSQL manual, "JSON Types": "json ... stores an exact copy of the input text").
JsonDocument = JSON()


class UTCDateTime(TypeDecorator):
    """timestamptz on PostgreSQL; on SQLite, which drops the zone, values come back as aware UTC."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a timestamptz column; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)

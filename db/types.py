"""Column types and portable SQL helpers shared by the models and the queries.

``UTCDateTime`` stores timezone-aware UTC timestamps on both engines (``timestamptz`` on PostgreSQL, an
ISO string normalised to UTC on SQLite) and always hands back aware UTC datetimes. ``seconds_between`` and
``iso_week`` compile to the right SQL for each dialect so analytics run inside the database.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

UTC = timezone.utc


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Aware UTC version of ``value``; naive datetimes are taken to be UTC already."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(sa.TypeDecorator):
    """``DateTime(timezone=True)`` that only ever stores and returns aware UTC datetimes."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = as_utc(value)
        if dialect.name == "sqlite":  # SQLite keeps no offset: store naive UTC, restore it on the way out
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        return as_utc(value)


class seconds_between(FunctionElement):  # noqa: N801 (SQL function naming)
    """``seconds_between(start, end)``: ``end - start`` in seconds, as a float."""

    type = sa.Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return (
        f"((julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)}))"
        " * 86400.0)"
    )


@compiles(seconds_between, "postgresql")
def _seconds_between_pg(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


class iso_week(FunctionElement):  # noqa: N801 (SQL function naming)
    """``iso_week(ts)``: the ISO-8601 week of a UTC timestamp as text, e.g. ``2026-W05``."""

    type = sa.String()
    inherit_cache = True
    name = "iso_week"


@compiles(iso_week, "sqlite")
def _iso_week_sqlite(element: iso_week, compiler: Any, **kw: Any) -> str:
    # The Thursday of a date's ISO week is the first Thursday on or after (date - 3 days); the ISO year is
    # that Thursday's year and the week number is its day-of-year divided into weeks.
    (ts,) = list(element.clauses)
    thu = f"date({compiler.process(ts, **kw)}, '-3 days', 'weekday 4')"
    return (
        f"(strftime('%Y', {thu}) || '-W' || "
        f"substr('0' || ((CAST(strftime('%j', {thu}) AS INTEGER) - 1) / 7 + 1), -2))"
    )


@compiles(iso_week, "postgresql")
def _iso_week_pg(element: iso_week, compiler: Any, **kw: Any) -> str:
    (ts,) = list(element.clauses)
    return f"to_char(({compiler.process(ts, **kw)}) AT TIME ZONE 'UTC', 'IYYY-\"W\"IW')"

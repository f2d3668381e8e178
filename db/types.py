"""Column types and portable SQL helpers shared by the models and the queries.

``UTCDateTime`` stores timezone-aware UTC timestamps on both engines (``timestamptz`` on PostgreSQL, an
ISO string normalised to UTC on SQLite) and always hands back aware UTC datetimes. ``seconds_between`` and
``epoch_week`` compile to the right SQL for each dialect so analytics run inside the database.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
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
    return f"((julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_between_pg(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


class epoch_week(FunctionElement):  # noqa: N801 (SQL function naming)
    """``epoch_week(ts)``: whole ISO weeks (Monday to Sunday, UTC) since the week of 1970-01-01, an integer.

    One ``julianday`` per row on SQLite (cheap); ``week_label`` turns a value into an ISO label.
    """

    type = sa.Integer()
    inherit_cache = True
    name = "epoch_week"


@compiles(epoch_week, "sqlite")
def _epoch_week_sqlite(element: epoch_week, compiler: Any, **kw: Any) -> str:
    (ts,) = list(element.clauses)
    # 1970-01-01 (julian day 2440587.5) was a Thursday: +3 days puts week starts on Mondays.
    return f"CAST((julianday({compiler.process(ts, **kw)}) - 2440587.5 + 3) / 7 AS INTEGER)"


@compiles(epoch_week, "postgresql")
def _epoch_week_pg(element: epoch_week, compiler: Any, **kw: Any) -> str:
    (ts,) = list(element.clauses)
    return f"CAST(FLOOR((EXTRACT(EPOCH FROM {compiler.process(ts, **kw)}) / 86400.0 + 3) / 7) AS INTEGER)"


_EPOCH_MONDAY = date(1969, 12, 29)


def week_label(index: int) -> str:
    """ISO week label (``2026-W05``) of an ``epoch_week`` value."""
    year, week, _ = (_EPOCH_MONDAY + timedelta(weeks=int(index))).isocalendar()
    return f"{year}-W{week:02d}"


def table_of(model: type) -> sa.Table:
    """The ``sa.Table`` of a SQLModel table class (typed, for Core queries)."""
    return model.__table__  # type: ignore[attr-defined]  # set by SQLModel's metaclass


"""Portable SQL pieces for the statistics: epoch seconds, time buckets, UTC days and percentiles.

PostgreSQL does the arithmetic on `timestamptz` and has `percentile_cont`; SQLite stores naive UTC
text (see `UTCDateTime`) and has neither, so it gets `julianday` arithmetic and a window-function
fallback that picks the two neighbouring rows of each percentile and interpolates in Python the
way `percentile_cont` does. Both give the same numbers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Float,
    Integer,
    Select,
    cast,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from core.stats.shapes import Percentiles

QUANTILES = (0.5, 0.95, 0.99)

# Unix epoch as a Julian day number: SQLite's julianday('1970-01-01').
_UNIX_EPOCH_JULIAN = 2440587.5


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def epoch_seconds(dialect: str, column: Any) -> ColumnElement[float]:
    """Seconds since 1970 of a UTC datetime column."""
    if dialect == "sqlite":
        return cast((func.julianday(column) - _UNIX_EPOCH_JULIAN) * 86400.0, Float)
    return cast(func.extract("epoch", column), Float)


def seconds_between(dialect: str, start: Any, end: Any) -> ColumnElement[float]:
    """`end - start` in seconds."""
    if dialect == "sqlite":
        return cast((func.julianday(end) - func.julianday(start)) * 86400.0, Float)
    return cast(func.extract("epoch", end - start), Float)


def bucket_start(dialect: str, column: Any, bucket_seconds: int) -> ColumnElement[int]:
    """Epoch seconds of the start of the `bucket_seconds`-wide bucket holding `column`."""
    # a literal, not a bind parameter: GROUP BY must repeat the SELECT expression exactly
    width: ColumnElement[int] = literal_column(str(int(bucket_seconds)), Integer)
    if dialect == "sqlite":
        # whole seconds from strftime: julianday's float would put 11:30:00 into 11:29; the
        # epoch is positive, so integer division is floor
        whole = cast(func.strftime("%s", column), Integer)
        return cast((whole // width) * width, Integer)
    return cast(func.floor(epoch_seconds(dialect, column) / width) * width, Integer)


def utc_day(dialect: str, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a datetime column (a date on PostgreSQL, text on SQLite)."""
    if dialect == "sqlite":
        return func.date(column)
    return cast(func.timezone(literal_column("'UTC'"), column), Date)


def as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def as_utc(value: Any) -> dt.datetime:
    """An aware UTC datetime from what an aggregate returned (SQLite gives naive text)."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def interpolate(sorted_values: Mapping[int, float], count: int, q: float) -> float:
    """`percentile_cont(q)` from the values at the needed 0-based ranks of `count` sorted rows."""
    position = q * (count - 1)
    lower = math.floor(position)
    upper = min(lower + 1, count - 1)
    low, high = sorted_values[lower], sorted_values[upper]
    return low + (position - lower) * (high - low)


def rounded_percentiles(count: int, values: Sequence[float]) -> Percentiles:
    """p50/p95/p99 (in that order) to the millisecond."""
    p50, p95, p99 = (round(float(v), 3) for v in values)
    return Percentiles(count=count, p50=p50, p95=p95, p99=p99)


def percentiles_by_group(session: Session, rows: Select[str, float]) -> dict[str, Percentiles]:
    """p50/p95/p99 of `value` per `grp`, for a select with labelled columns `grp` and `value`.

    Rows with a NULL value are ignored. Groups are returned in name order.
    """
    source = rows.subquery("samples")
    value = source.c.value
    if dialect_of(session) == "postgresql":
        quantiles = postgresql.array([literal(q) for q in QUANTILES])
        query = (
            select(
                source.c.grp, func.count(value), func.percentile_cont(quantiles).within_group(value)
            )
            .where(value.is_not(None))
            .group_by(source.c.grp)
            .order_by(source.c.grp)
        )
        return {
            str(grp): rounded_percentiles(int(count), values)
            for grp, count, values in session.execute(query).all()
        }
    return _percentiles_by_ranks(session, source)


def _percentiles_by_ranks(session: Session, source: Any) -> dict[str, Percentiles]:
    value = source.c.value
    ranked = (
        select(
            source.c.grp.label("grp"),
            value.label("value"),
            (func.row_number().over(partition_by=source.c.grp, order_by=value) - 1).label("rn"),
            func.count().over(partition_by=source.c.grp).label("n"),
        )
        .where(value.is_not(None))
        .subquery("ranked")
    )
    wanted = []
    for q in QUANTILES:
        lower = cast(q * (ranked.c.n - 1), Integer)
        wanted.extend([lower, lower + 1])
    picked = session.execute(
        select(ranked.c.grp, ranked.c.rn, ranked.c.n, ranked.c.value)
        .where(ranked.c.rn.in_(wanted))
        .order_by(ranked.c.grp, ranked.c.rn)
    ).all()
    by_group: dict[str, tuple[int, dict[int, float]]] = {}
    for grp, rn, n, v in picked:
        _, values = by_group.setdefault(str(grp), (int(n), {}))
        values[int(rn)] = float(v)
    return {
        grp: rounded_percentiles(count, [interpolate(values, count, q) for q in QUANTILES])
        for grp, (count, values) in sorted(by_group.items())
    }

"""Figures about the jobs that ended in the window, in as few passes over them as possible.

One statement groups the window's jobs four ways at once (by time bucket and status; by UTC day,
provider, model and status; by API key; by error code): PostgreSQL reads the rows once with
`GROUPING SETS`, SQLite runs the same groupings as a `UNION ALL`. A second statement gives the
latency percentiles. On a million-row table this is what keeps `GET /v1/stats` fast
(docs/operations.md has the figures).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    case,
    cast,
    func,
    literal,
    null,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from core.stats.shapes import (
    DayModelPoints,
    DayPoints,
    ErrorCount,
    KeyPoints,
    Latency,
    ModelPoints,
    Percentiles,
    Points,
    StatusCount,
    Throughput,
    ThroughputPoint,
)
from core.stats.sql import (
    QUANTILES,
    as_date,
    as_utc,
    bucket_start,
    dialect_of,
    percentiles_by_group,
    rounded_percentiles,
    seconds_between,
    utc_day,
)
from core.tables import FAILED, SUCCEEDED, TERMINAL_STATUSES, ApiKey, Job

THROUGHPUT, MODELS, KEYS, ERRORS = "throughput", "models", "keys", "errors"


@dataclass(frozen=True)
class EndedJobs:
    """What the window's ended jobs add up to."""

    rows: list[StatusCount]
    throughput: Throughput
    points: Points
    errors: list[ErrorCount]


def ended_filter(since: dt.datetime, api_key_id: str | None) -> list[ColumnElement[bool]]:
    where = [Job.finished_at >= since, Job.status.in_(TERMINAL_STATUSES)]
    if api_key_id is not None:
        where.append(Job.api_key_id == api_key_id)
    return where


def ended_jobs(
    session: Session,
    *,
    since: dt.datetime,
    api_key_id: str | None,
    bucket_seconds: int = 60,
    top_errors: int = 10,
) -> EndedJobs:
    """Counts, throughput, points and error codes of the jobs that ended since `since`."""
    rows = session.execute(
        _rollup_statement(dialect_of(session), ended_filter(since, api_key_id), bucket_seconds)
    ).all()
    by_set: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_set[row.grouping].append(row)
    return EndedJobs(
        rows=_status_rows(by_set[MODELS]),
        throughput=Throughput(
            bucket_seconds=bucket_seconds,
            points=sorted(
                (
                    ThroughputPoint(
                        at=dt.datetime.fromtimestamp(int(r.bucket), dt.UTC),
                        status=r.status,
                        count=int(r.n),
                    )
                    for r in by_set[THROUGHPUT]
                ),
                key=lambda p: (p.at, p.status),
            ),
        ),
        points=_points(session, by_set[MODELS], by_set[KEYS]),
        errors=_errors(by_set[ERRORS], top_errors),
    )


def _rollup_statement(
    dialect: str, where: list[ColumnElement[bool]], bucket_seconds: int
) -> Select[Any]:
    columns: dict[str, Any] = {
        "bucket": bucket_start(dialect, Job.finished_at, bucket_seconds),
        "day": utc_day(dialect, Job.finished_at),
        "status": Job.status,
        "provider": Job.provider,
        "model": Job.model,
        "api_key_id": Job.api_key_id,
        "error_code": Job.error_code,
    }
    groupings = {
        THROUGHPUT: ("bucket", "status"),
        MODELS: ("day", "provider", "model", "status"),
        KEYS: ("api_key_id",),
        ERRORS: ("error_code",),
    }
    measures = (
        func.count().label("n"),
        func.sum(Job.cost_points).label("points"),
        func.count(Job.cost_points).label("costed"),
        func.max(Job.error_message).label("sample"),
        func.max(Job.finished_at).label("last_at"),
    )
    if dialect == "postgresql":
        which = case(
            (func.grouping(columns["bucket"]) == 0, literal(THROUGHPUT)),
            (func.grouping(columns["day"]) == 0, literal(MODELS)),
            (func.grouping(columns["api_key_id"]) == 0, literal(KEYS)),
            else_=literal(ERRORS),
        )
        sets = (tuple_(*(columns[name] for name in names)) for names in groupings.values())
        outputs = [
            (cast(expr, String) if name == "day" else expr).label(name)
            for name, expr in columns.items()
        ]
        return (
            select(which.label("grouping"), *outputs, *measures)
            .where(*where)
            .group_by(func.grouping_sets(*sets))
        )
    parts = [
        select(
            literal(grouping).label("grouping"),
            *((expr if name in names else null()).label(name) for name, expr in columns.items()),
            *measures,
        )
        .where(*where)
        .group_by(*(columns[name] for name in names))
        for grouping, names in groupings.items()
    ]
    return select(union_all(*parts).subquery("rollup"))


def _status_rows(rows: list[Any]) -> list[StatusCount]:
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in rows:
        counts[(r.provider, r.model, r.status)] += int(r.n)
    return [StatusCount(provider=p, model=m, status=s, count=n) for (p, m, s), n in counts.items()]


def _points(session: Session, model_rows: list[Any], key_rows: list[Any]) -> Points:
    by_model: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    by_day: dict[dt.date, int] = defaultdict(int)
    by_day_model: dict[tuple[dt.date, str], int] = defaultdict(int)
    for r in model_rows:
        if not r.costed:
            continue
        when, points = as_date(r.day), int(r.points)
        by_model[(r.provider, r.model)][0] += points
        by_model[(r.provider, r.model)][1] += int(r.costed)
        by_day[when] += points
        by_day_model[(when, r.model)] += points
    costed_keys = [r for r in key_rows if r.costed]
    names = _key_names(session, [r.api_key_id for r in costed_keys])
    return Points(
        total=sum(by_day.values()),
        by_model=sorted(
            (
                ModelPoints(model=m, provider=p, points=v[0], jobs=v[1])
                for (p, m), v in by_model.items()
            ),
            key=lambda r: (-r.points, r.model),
        ),
        by_day=[DayPoints(day=d, points=v) for d, v in sorted(by_day.items())],
        by_day_model=[
            DayModelPoints(day=d, model=m, points=v) for (d, m), v in sorted(by_day_model.items())
        ],
        by_api_key=sorted(
            (
                KeyPoints(
                    api_key_id=r.api_key_id,
                    name=names.get(r.api_key_id, r.api_key_id),
                    points=int(r.points),
                    jobs=int(r.costed),
                )
                for r in costed_keys
            ),
            key=lambda r: (-r.points, r.api_key_id),
        ),
    )


def _key_names(session: Session, key_ids: list[str]) -> dict[str, str]:
    if not key_ids:
        return {}
    rows = session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(key_ids))).all()
    return {key_id: name for key_id, name in rows}


def _errors(rows: list[Any], limit: int) -> list[ErrorCount]:
    coded = sorted(
        (r for r in rows if r.error_code is not None), key=lambda r: (-r.n, r.error_code)
    )
    return [
        ErrorCount(
            code=r.error_code,
            count=int(r.n),
            sample_message=r.sample or "",
            last_at=as_utc(r.last_at) if r.last_at is not None else None,
        )
        for r in coded[:limit]
    ]


def latency_percentiles(session: Session, *, since: dt.datetime, api_key_id: str | None) -> Latency:
    """Queue wait and upstream time per provider, of the jobs that ended since `since`.

    Upstream time counts jobs that succeeded or failed upstream; cancelled and timed-out jobs
    end on our clock, not MetaChat's.
    """
    dialect = dialect_of(session)
    where = [Job.submitted_at.is_not(None), *ended_filter(since, api_key_id)]
    queue_wait = seconds_between(dialect, Job.created_at, Job.submitted_at)
    upstream = seconds_between(dialect, Job.submitted_at, Job.finished_at)
    answered = Job.status.in_((SUCCEEDED, FAILED))
    if dialect == "postgresql":
        return _pg_latency(session, where, queue_wait, upstream, answered)
    return Latency(
        queue_wait=percentiles_by_group(
            session, select(Job.provider.label("grp"), queue_wait.label("value")).where(*where)
        ),
        upstream=percentiles_by_group(
            session,
            select(Job.provider.label("grp"), upstream.label("value")).where(answered, *where),
        ),
    )


def _pg_latency(
    session: Session,
    where: list[ColumnElement[bool]],
    queue_wait: ColumnElement[float],
    upstream: ColumnElement[float],
    answered: ColumnElement[bool],
) -> Latency:
    # one sort per provider and measure: the array form computes all quantiles from it
    quantiles = postgresql.array([literal(q) for q in QUANTILES])
    rows = session.execute(
        select(
            Job.provider,
            func.count(),
            func.percentile_cont(quantiles).within_group(queue_wait),
            func.count().filter(answered),
            func.percentile_cont(quantiles).within_group(upstream).filter(answered),
        )
        .where(*where)
        .group_by(Job.provider)
        .order_by(Job.provider)
    ).all()
    queue: dict[str, Percentiles] = {}
    answered_by: dict[str, Percentiles] = {}
    for provider, n_queue, p_queue, n_upstream, p_upstream in rows:
        queue[provider] = rounded_percentiles(int(n_queue), p_queue)
        if n_upstream:
            answered_by[provider] = rounded_percentiles(int(n_upstream), p_upstream)
    return Latency(queue_wait=queue, upstream=answered_by)

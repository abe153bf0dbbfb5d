"""The operator statistics as SQL: a handful of aggregate queries over the existing indexes
(`jobs(status, due_at)` for what is active, `jobs(finished_at)` for what ended in the window —
see `window` — and `webhook_deliveries(state, due_at)` for deliveries), never a loop over rows.

The window is "since": active jobs (queued, running) are counted as they are now; everything
else (ended jobs, throughput, latency, points, errors) is about jobs that finished since then.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, func, or_, select, text
from sqlalchemy.orm import Session

from core.stats.shapes import (
    BatchProgress,
    FailingDelivery,
    JobCounts,
    OpsStats,
    RecentFailure,
    StatusCount,
    StuckJob,
    Webhooks,
)
from core.stats.sql import as_utc, dialect_of
from core.stats.window import ended_filter, ended_jobs, latency_percentiles
from core.tables import (
    ACTIVE_STATUSES,
    BATCH_RUNNING,
    DELIVERY_DEAD,
    DELIVERY_PENDING,
    FAILED,
    JOB_STATUSES,
    QUEUED,
    RUNNING,
    TIMED_OUT,
    Batch,
    Job,
    WebhookDelivery,
    utcnow,
)

DEFAULT_STUCK_SECONDS = 900.0
"""How long a job may run upstream before it counts as stuck, for a provider with no history."""


def collect_stats(
    session: Session,
    *,
    since: dt.datetime,
    api_key_id: str | None = None,
    now: dt.datetime | None = None,
    bucket_seconds: int = 60,
    stuck_fallback_seconds: float = DEFAULT_STUCK_SECONDS,
    limit: int = 50,
) -> OpsStats:
    """Every figure of `GET /v1/stats` for the window starting at `since`.

    `api_key_id` narrows everything to one key's jobs and deliveries. Stuck jobs are running
    jobs older than their provider's p99 upstream time in this window (or
    `stuck_fallback_seconds` for a provider with no answered job in it), and active jobs whose
    lease has expired (their worker died).
    """
    now = now or utcnow()
    _give_sorts_memory(session)
    ended = ended_jobs(session, since=since, api_key_id=api_key_id, bucket_seconds=bucket_seconds)
    latency = latency_percentiles(session, since=since, api_key_id=api_key_id)
    stuck, stuck_total = stuck_jobs(
        session,
        now=now,
        thresholds={provider: p.p99 for provider, p in latency.upstream.items()},
        fallback_seconds=stuck_fallback_seconds,
        api_key_id=api_key_id,
        limit=limit,
    )
    return OpsStats(
        since=since,
        generated_at=now,
        api_key_id=api_key_id,
        jobs=job_counts(session, ended.rows, api_key_id=api_key_id, now=now),
        throughput=ended.throughput,
        latency=latency,
        points=ended.points,
        errors=ended.errors,
        stuck=stuck,
        stuck_total=stuck_total,
        webhooks=failing_webhooks(session, since=since, api_key_id=api_key_id, limit=limit),
    )


def _give_sorts_memory(session: Session) -> None:
    # percentiles sort a day of jobs; PostgreSQL's 4 MB default work_mem spills that to disk
    if dialect_of(session) == "postgresql":
        session.execute(text("SET LOCAL work_mem = '64MB'"))


def _for_key(api_key_id: str | None, column: Any) -> list[ColumnElement[bool]]:
    return [] if api_key_id is None else [column == api_key_id]


def job_counts(
    session: Session,
    ended: Sequence[StatusCount],
    *,
    api_key_id: str | None,
    now: dt.datetime,
) -> JobCounts:
    """Queued and running jobs now, next to the `ended` counts of the window."""
    group = (Job.provider, Job.model, Job.status)
    active = session.execute(
        select(*group, func.count())
        .where(Job.status.in_(ACTIVE_STATUSES), *_for_key(api_key_id, Job.api_key_id))
        .group_by(*group)
    ).all()
    rows = [StatusCount(provider=p, model=m, status=s, count=int(n)) for p, m, s, n in active]
    rows.extend(ended)
    rows.sort(key=lambda r: (JOB_STATUSES.index(r.status), r.provider, r.model))
    by_status = dict.fromkeys(JOB_STATUSES, 0)
    for row in rows:
        by_status[row.status] += row.count
    oldest = session.scalar(
        select(func.min(Job.created_at)).where(
            Job.status == QUEUED, *_for_key(api_key_id, Job.api_key_id)
        )
    )
    oldest_age = None
    if oldest is not None:
        oldest_age = round(max(0.0, (now - as_utc(oldest)).total_seconds()), 3)
    return JobCounts(by_status=by_status, rows=rows, oldest_queued_seconds=oldest_age)


def _stuck_filter(
    now: dt.datetime,
    thresholds: Mapping[str, float],
    fallback_seconds: float,
    api_key_id: str | None,
) -> list[ColumnElement[bool]]:
    too_old = [
        and_(Job.provider == provider, Job.submitted_at < now - dt.timedelta(seconds=seconds))
        for provider, seconds in thresholds.items()
    ]
    too_old.append(
        and_(
            Job.provider.not_in(list(thresholds)),
            Job.submitted_at < now - dt.timedelta(seconds=fallback_seconds),
        )
    )
    return [
        Job.status.in_(ACTIVE_STATUSES),
        or_(Job.lease_until < now, and_(Job.status == RUNNING, or_(*too_old))),
        *_for_key(api_key_id, Job.api_key_id),
    ]


def stuck_jobs(
    session: Session,
    *,
    now: dt.datetime,
    thresholds: Mapping[str, float],
    fallback_seconds: float = DEFAULT_STUCK_SECONDS,
    api_key_id: str | None = None,
    limit: int = 50,
) -> tuple[list[StuckJob], int]:
    """Running jobs older than their provider's threshold, and active jobs whose lease expired:
    the oldest `limit` of them, and how many there are.

    `thresholds` maps provider → seconds (the p99 upstream time); other providers use
    `fallback_seconds`.
    """
    where = _stuck_filter(now, thresholds, fallback_seconds, api_key_id)
    rows = session.scalars(
        select(Job)
        .where(*where)
        .order_by(Job.submitted_at.is_(None), Job.submitted_at, Job.created_at)
        .limit(limit)
    ).all()
    total = len(rows)
    if total == limit:
        total = int(session.scalar(select(func.count()).where(*where)) or 0)
    return [_stuck(job, now, thresholds, fallback_seconds) for job in rows], total


def _stuck(
    job: Job, now: dt.datetime, thresholds: Mapping[str, float], fallback_seconds: float
) -> StuckJob:
    started = job.submitted_at or job.created_at
    age = max(0.0, (now - started).total_seconds())
    if job.lease_until is not None and job.lease_until < now:
        late = (now - job.lease_until).total_seconds()
        reason = f"lease expired {late:.0f}s ago; its worker stopped"
    else:
        limit = thresholds.get(job.provider, fallback_seconds)
        basis = f"{job.provider} p99" if job.provider in thresholds else "the default limit"
        reason = f"running {age:.0f}s upstream, past {basis} of {limit:.0f}s"
    return StuckJob(
        id=job.id,
        api_key_id=job.api_key_id,
        status=job.status,
        provider=job.provider,
        model=job.model,
        reason=reason,
        submitted_at=job.submitted_at,
        lease_until=job.lease_until,
        age_seconds=round(age, 3),
    )


def failing_webhooks(
    session: Session, *, since: dt.datetime, api_key_id: str | None, limit: int = 50
) -> Webhooks:
    """Deliveries retrying after a failed attempt, and deliveries that gave up since `since`."""
    key = _for_key(api_key_id, WebhookDelivery.api_key_id)
    failing = [WebhookDelivery.state == DELIVERY_PENDING, WebhookDelivery.attempts > 0, *key]
    dead = [WebhookDelivery.state == DELIVERY_DEAD, WebhookDelivery.updated_at >= since, *key]
    counts = [session.scalar(select(func.count()).where(*where)) or 0 for where in (failing, dead)]
    # two indexed reads (by state) rather than one OR that would scan the whole table
    rows = [
        row
        for where in (failing, dead)
        for row in session.scalars(
            select(WebhookDelivery)
            .where(*where)
            .order_by(WebhookDelivery.updated_at.desc())
            .limit(limit)
        ).all()
    ]
    rows.sort(key=lambda row: row.updated_at, reverse=True)
    return Webhooks(
        failing=int(counts[0]),
        dead=int(counts[1]),
        deliveries=[
            FailingDelivery(
                id=row.id,
                api_key_id=row.api_key_id,
                job_id=row.job_id,
                batch_id=row.batch_id,
                event_type=row.event_type,
                target=webhook_target(row.url),
                state=row.state,
                attempts=row.attempts,
                last_status_code=row.last_status_code,
                last_error=row.last_error,
                due_at=row.due_at,
                updated_at=row.updated_at,
            )
            for row in rows[:limit]
        ],
    )


def webhook_target(url: str) -> str:
    """A webhook URL fit for an operator's screen: no credentials, no query, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def recent_failures(
    session: Session, *, since: dt.datetime, api_key_id: str | None = None, limit: int = 25
) -> list[RecentFailure]:
    """Failed and timed-out jobs that ended since `since`, newest first."""
    rows = session.scalars(
        select(Job)
        .where(Job.status.in_((FAILED, TIMED_OUT)), *ended_filter(since, api_key_id))
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(limit)
    ).all()
    return [
        RecentFailure(
            id=job.id,
            api_key_id=job.api_key_id,
            batch_id=job.batch_id,
            status=job.status,
            provider=job.provider,
            model=job.model,
            error_code=job.error_code,
            error_message=job.error_message,
            finished_at=job.finished_at,
        )
        for job in rows
    ]


def batches_in_progress(
    session: Session, *, api_key_id: str | None = None, limit: int = 20
) -> list[BatchProgress]:
    """Running batches, newest first, with their job counts and cost so far."""
    batches = session.scalars(
        select(Batch)
        .where(Batch.status == BATCH_RUNNING, *_for_key(api_key_id, Batch.api_key_id))
        .order_by(Batch.created_at.desc(), Batch.id.desc())
        .limit(limit)
    ).all()
    if not batches:
        return []
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    costs: dict[str, int] = defaultdict(int)
    costed: set[str] = set()
    for batch_id, status, n, cost in session.execute(
        select(Job.batch_id, Job.status, func.count(), func.sum(Job.cost_points))
        .where(Job.batch_id.in_([b.id for b in batches]))
        .group_by(Job.batch_id, Job.status)
    ).all():
        counts[str(batch_id)][status] = int(n)
        if cost is not None:
            costs[str(batch_id)] += int(cost)
            costed.add(str(batch_id))
    return [
        BatchProgress(
            id=b.id,
            api_key_id=b.api_key_id,
            total=b.total or sum(counts[b.id].values()),
            counts={status: counts[b.id].get(status, 0) for status in JOB_STATUSES},
            cost_points=costs[b.id] if b.id in costed else None,
            max_points=b.max_points,
            created_at=b.created_at,
        )
        for b in batches
    ]

"""Credits seen from MetaChat's side: the cached account balance, and the daily comparison of
the points we recorded per job with MetaChat's usage records.

The balance is read upstream by a periodic pass (the maintenance pump) and kept in Redis, so the
dashboard shows it without calling MetaChat on every page view and without the API process ever
talking to MetaChat.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tables import Job, utcnow

BALANCE_KEY = "mcjobs:upstream:balance"
BALANCE_TTL_SECONDS = 6 * 3600
_CHUNK = 500


@dataclass(frozen=True)
class UpstreamBalance:
    """MetaChat's account balance in points, as last read at `at`."""

    points: int
    at: dt.datetime


def store_upstream_balance(
    client: redis.Redis, points: int, *, at: dt.datetime | None = None
) -> None:
    """Remember the balance just read from MetaChat (the maintenance pass calls this)."""
    at = at or utcnow()
    value = json.dumps({"points": int(points), "at": at.astimezone(dt.UTC).isoformat()})
    client.set(BALANCE_KEY, value, ex=BALANCE_TTL_SECONDS)


def cached_upstream_balance(client: redis.Redis) -> UpstreamBalance | None:
    """The last balance stored, or None when none was read recently (or Redis is down)."""
    try:
        raw = client.get(BALANCE_KEY)
    except redis.RedisError:
        return None
    if raw is None:
        return None
    try:
        data = json.loads(raw if isinstance(raw, str | bytes) else str(raw))
        return UpstreamBalance(points=int(data["points"]), at=dt.datetime.fromisoformat(data["at"]))
    except (ValueError, KeyError, TypeError):
        return None


_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def balance_reader(redis_url: str) -> Callable[[], UpstreamBalance | None]:
    """A function that reads the cached balance from `redis_url` (short timeouts, one shared
    client per URL), for pages and scrapes that must not hang on a slow Redis."""

    def read() -> UpstreamBalance | None:
        with _clients_lock:
            client = _clients.get(redis_url)
            if client is None:
                client = redis.Redis.from_url(
                    redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
                )
                _clients[redis_url] = client
        return cached_upstream_balance(client)

    return read


class UsageLine(Protocol):
    """One charge on the MetaChat account (`metachat` `UsageRecord` fits)."""

    @property
    def task_id(self) -> str: ...
    @property
    def points(self) -> int: ...
    @property
    def created_at(self) -> dt.datetime | None: ...


@dataclass(frozen=True)
class PointsMismatch:
    task_id: str
    job_id: str | None
    recorded: int | None
    upstream: int | None


@dataclass
class UsageReconciliation:
    """Our recorded points for one UTC day next to MetaChat's usage records for it.

    `unrecorded`: charges of the day for tasks we have no cost for (a `submit_uncertain` task,
    a job cancelled while running, a timed-out task that finished late). `missing_upstream`: our
    costed jobs of the day that no usage record of the ones given mentions. `mismatched`: both
    sides know the task but disagree on the points.
    """

    day: dt.date
    recorded_points: int = 0
    upstream_points: int = 0
    matched: int = 0
    mismatched: list[PointsMismatch] = field(default_factory=list)
    unrecorded: list[PointsMismatch] = field(default_factory=list)
    missing_upstream: list[PointsMismatch] = field(default_factory=list)

    @property
    def difference(self) -> int:
        """MetaChat's total minus ours: positive means MetaChat charged more than we recorded."""
        return self.upstream_points - self.recorded_points

    @property
    def agrees(self) -> bool:
        return not (self.mismatched or self.unrecorded or self.missing_upstream)


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    return start, start + dt.timedelta(days=1)


def reconcile_usage(
    session: Session, records: Iterable[UsageLine], *, day: dt.date
) -> UsageReconciliation:
    """Compare the points of jobs that finished on `day` (UTC) with MetaChat's usage records.

    Pass the records around the day too (a task finished at 23:59 here may be charged at 00:00
    there): totals count only each side's own day, but tasks are matched across all records
    given. Records without a time are matched by task id and left out of the totals.
    """
    start, end = _day_bounds(day)
    upstream: dict[str, int] = {}
    todays: list[UsageLine] = []
    for record in records:
        upstream[record.task_id] = upstream.get(record.task_id, 0) + int(record.points)
        if record.created_at is not None and start <= record.created_at < end:
            todays.append(record)
    report = UsageReconciliation(day=day)
    report.upstream_points = sum(int(r.points) for r in todays)

    ours = session.execute(
        select(Job.id, Job.upstream_task_id, Job.cost_points).where(
            Job.finished_at >= start,
            Job.finished_at < end,
            Job.cost_points.is_not(None),
            Job.upstream_task_id.is_not(None),
        )
    ).all()
    recorded: dict[str, tuple[str, int]] = {}
    for job_id, raw_task_id, raw_cost in ours:
        task_id, cost = str(raw_task_id), int(raw_cost or 0)
        recorded[task_id] = (job_id, cost)
        report.recorded_points += cost
        charged = upstream.get(task_id)
        if charged is None:
            report.missing_upstream.append(PointsMismatch(task_id, job_id, cost, None))
        elif charged != cost:
            report.mismatched.append(PointsMismatch(task_id, job_id, cost, charged))
        else:
            report.matched += 1

    elsewhere = _costs_by_task(session, [r.task_id for r in todays if r.task_id not in recorded])
    for record in todays:
        if record.task_id in recorded:
            continue
        owner, known = elsewhere.get(record.task_id, (None, None))
        if known is None:
            charge = PointsMismatch(record.task_id, owner, None, int(record.points))
            report.unrecorded.append(charge)
    return report


def _costs_by_task(session: Session, task_ids: Sequence[str]) -> dict[str, tuple[str, int | None]]:
    """Jobs of any day by upstream task id: (job id, recorded cost)."""
    found: dict[str, tuple[str, int | None]] = {}
    unique = sorted(set(task_ids))
    for offset in range(0, len(unique), _CHUNK):
        chunk = unique[offset : offset + _CHUNK]
        for job_id, task_id, cost in session.execute(
            select(Job.id, Job.upstream_task_id, Job.cost_points).where(
                Job.upstream_task_id.in_(chunk)
            )
        ).all():
            found[str(task_id)] = (job_id, None if cost is None else int(cost))
    return found

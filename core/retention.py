"""Retention: old rows leave in short chunks until a time budget runs out (docs/operations.md).

What goes, oldest first, once older than ``RETENTION_DAYS``:

- **jobs** that are terminal and settled (the budget totals on key and batch rows keep counting
  them, `core.budget`; a job whose hold must still change is settled into them first), with what
  hangs off each job (`JOB_DEPENDENTS`);
- **job events**: on PostgreSQL whole day partitions, dropped once job pruning has passed them,
  and old rows of the default partition (`core.partitions`); on SQLite with their jobs;
- finished **webhook deliveries** with their attempts; emptied **batches**;
- **idempotency keys** older than ``IDEMPOTENCY_TTL_HOURS``.

`prune_within` runs the steps in turn, each chunk (`PRUNE_CHUNK` rows) its own transaction, so
no lock is held for long and a crash loses at most one chunk, until every step is done or the
budget (``PRUNE_BUDGET_SECONDS``) is spent; its report says how many rows went, how fast, and
whether work was left (the worker then prunes again on its next tick). Job rows are taken with
``FOR UPDATE SKIP LOCKED``: a job another transaction holds (a late cost being written, another
worker pruning) is left for a later chunk, and one whose cost changed meanwhile is not taken.

Adding a table that grows per job (archived result files, say): write a function that deletes the
rows of the given job ids and add it to `JOB_DEPENDENTS`; it runs in the transaction that deletes
those jobs, before them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, delete, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core import partitions
from core.budget import settle_costs
from core.db import Database
from core.settings import Settings
from core.tables import (
    BATCH_RUNNING,
    DELIVERY_DEAD,
    DELIVERY_SUCCEEDED,
    POINTS_UNSETTLED,
    TERMINAL_STATUSES,
    Batch,
    IdempotencyKey,
    Job,
    JobEvent,
    ResultFile,
    WebhookAttempt,
    WebhookDelivery,
)

log = logging.getLogger(__name__)

PRUNE_CHUNK = 2000
SETTLED = "settled"
PARTITIONS_DROPPED = "job_event_partitions"
DEFERRED = "deferred"  # a step gave up for this pass (a lock not had in time); work is left


@dataclass(frozen=True)
class PruneWindow:
    """What one prune pass deletes: rows older than the cutoffs, `limit` rows per chunk."""

    now: dt.datetime
    cutoff: dt.datetime
    key_cutoff: dt.datetime
    limit: int
    partitioned: bool

    @classmethod
    def of(
        cls, session: Session, settings: Settings, *, now: dt.datetime, limit: int = PRUNE_CHUNK
    ) -> PruneWindow:
        return cls(
            now=now,
            cutoff=now - dt.timedelta(days=settings.retention_days),
            key_cutoff=now - dt.timedelta(hours=settings.idempotency_ttl_hours),
            limit=limit,
            partitioned=partitions.is_partitioned(session),
        )


@dataclass
class PruneReport:
    """What a prune pass deleted (rows by kind), how long it took, and whether work was left."""

    rows: dict[str, int] = field(default_factory=dict)
    settled: int = 0
    partitions_dropped: int = 0
    seconds: float = 0.0
    more: bool = False

    def add(self, counts: dict[str, int]) -> None:
        for kind, count in counts.items():
            if count:
                self.rows[kind] = self.rows.get(kind, 0) + count

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


# Deletes the rows of these jobs from one table; returns how many (0 if nothing to report).
JobDependent = Callable[[Session, Sequence[str], PruneWindow], int]


def _detach_deliveries(session: Session, job_ids: Sequence[str], window: PruneWindow) -> int:
    # a delivery outlives its job (it is pruned on its own clock); the link goes
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.job_id.in_(job_ids)).values(job_id=None)
    )
    return 0


def _delete_events(session: Session, job_ids: Sequence[str], window: PruneWindow) -> int:
    if window.partitioned:
        return 0  # they leave with their partition (`prune_event_partitions`)
    return _rowcount(session.execute(delete(JobEvent).where(JobEvent.job_id.in_(job_ids))))


# (kind, function): run, in this order, before a chunk of jobs is deleted.
JOB_DEPENDENTS: list[tuple[str, JobDependent]] = [
    ("webhook_deliveries_detached", _detach_deliveries),
    ("job_events", _delete_events),
]

# A step deletes one chunk of its kind: (rows deleted by kind, whether more may be left).
StepResult = tuple[dict[str, int], bool]


def _old_jobs(window: PruneWindow) -> ColumnElement[bool]:
    # a job keeps its row while it has stored files: the archive pump removes those first,
    # objects before rows (`worker.archive.prune_files`), so no object is left unnamed
    has_files = select(ResultFile.id).where(ResultFile.job_id == Job.id).exists()
    return and_(Job.status.in_(TERMINAL_STATUSES), Job.finished_at < window.cutoff, ~has_files)


def settle_old_jobs(session: Session, window: PruneWindow) -> StepResult:
    """Fold into the budget totals the holds of old jobs that must still change."""
    unsettled = session.scalars(
        select(Job.id).where(_old_jobs(window), text(f"({POINTS_UNSETTLED})")).limit(window.limit)
    ).all()
    settled = settle_costs(session, unsettled, now=window.now)
    return {SETTLED: settled}, len(unsettled) == window.limit


def prune_jobs(session: Session, window: PruneWindow) -> StepResult:
    """Delete one chunk of old settled jobs, oldest first, with their dependents."""
    job_ids = list(
        session.scalars(
            select(Job.id)
            .where(_old_jobs(window), text(f"NOT ({POINTS_UNSETTLED})"))
            .order_by(Job.finished_at)
            .limit(window.limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not job_ids:
        return {}, False
    counts = {kind: dependent(session, job_ids, window) for kind, dependent in JOB_DEPENDENTS}
    counts.pop("webhook_deliveries_detached", None)
    counts["jobs"] = _rowcount(session.execute(delete(Job).where(Job.id.in_(job_ids))))
    return counts, len(job_ids) == window.limit


def prune_deliveries(session: Session, window: PruneWindow) -> StepResult:
    """Delete one chunk of finished webhook deliveries with their attempts."""
    delivery_ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.state.in_((DELIVERY_SUCCEEDED, DELIVERY_DEAD)),
                WebhookDelivery.updated_at < window.cutoff,
            )
            .limit(window.limit)
        )
    )
    if not delivery_ids:
        return {}, False
    attempts = session.execute(
        delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids))
    )
    deliveries = session.execute(
        delete(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids))
    )
    counts = {"webhook_attempts": _rowcount(attempts), "webhook_deliveries": _rowcount(deliveries)}
    return counts, len(delivery_ids) == window.limit


def prune_batches(session: Session, window: PruneWindow) -> StepResult:
    """Delete one chunk of finished batches that no job or delivery points to any more."""
    has_jobs = select(Job.id).where(Job.batch_id == Batch.id).exists()
    has_deliveries = select(WebhookDelivery.id).where(WebhookDelivery.batch_id == Batch.id).exists()
    batch_ids = list(
        session.scalars(
            select(Batch.id)
            .where(
                Batch.status != BATCH_RUNNING,
                Batch.finished_at < window.cutoff,
                ~has_jobs,
                ~has_deliveries,
            )
            .limit(window.limit)
        )
    )
    if not batch_ids:
        return {}, False
    deleted = _rowcount(session.execute(delete(Batch).where(Batch.id.in_(batch_ids))))
    return {"batches": deleted}, len(batch_ids) == window.limit


def prune_idempotency_keys(session: Session, window: PruneWindow) -> StepResult:
    key_ids = list(
        session.scalars(
            select(IdempotencyKey.id)
            .where(IdempotencyKey.created_at < window.key_cutoff)
            .limit(window.limit)
        )
    )
    if not key_ids:
        return {}, False
    deleted = _rowcount(
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(key_ids)))
    )
    return {"idempotency_keys": deleted}, len(key_ids) == window.limit


def prune_event_partitions(session: Session, window: PruneWindow) -> StepResult:
    """PostgreSQL: drop the oldest day partition that may go, else delete a chunk of old rows
    from the default partition. Events of jobs deleted on SQLite went with them."""
    if not window.partitioned:
        return {}, False
    droppable = partitions.droppable_partitions(session, cutoff=window.cutoff)
    if droppable:
        try:
            with session.begin_nested():
                rows = partitions.drop_partition(session, droppable[0])
        except OperationalError as error:  # its lock was not had in time: next pass
            # (autovacuum on the partition is one holder: it yields only after deadlock_timeout)
            log.warning("could not drop %s this pass: %s", droppable[0].name, error.orig)
            return {DEFERRED: 1}, False
        log.info("dropped %s (about %d events)", droppable[0].name, rows)
        return {"job_events": rows, PARTITIONS_DROPPED: 1}, True
    deleted = partitions.prune_default_partition(session, cutoff=window.cutoff, limit=window.limit)
    return {"job_events": deleted}, deleted == window.limit


Step = Callable[[Session, PruneWindow], StepResult]
# In this order in each round: settling first so its jobs can go in the same round, events
# after jobs so that a partition is dropped as soon as the jobs before its end are gone.
PRUNE_STEPS: tuple[tuple[str, Step], ...] = (
    ("settle", settle_old_jobs),
    ("jobs", prune_jobs),
    ("webhook_deliveries", prune_deliveries),
    ("batches", prune_batches),
    ("idempotency_keys", prune_idempotency_keys),
    ("job_events", prune_event_partitions),
)

# A step that may find more to do once another step of the same pass has done its work.
WAITS_FOR = {"job_events": "jobs"}


def prune(
    session: Session, *, now: dt.datetime, settings: Settings, limit: int = PRUNE_CHUNK
) -> dict[str, int]:
    """One chunk of every kind in the caller's transaction; rows deleted by kind."""
    window = PruneWindow.of(session, settings, now=now, limit=limit)
    counts: dict[str, int] = {}
    for _, step in PRUNE_STEPS:
        done, _ = step(session, window)
        for kind, count in done.items():
            if count and kind not in (SETTLED, PARTITIONS_DROPPED, DEFERRED):
                counts[kind] = counts.get(kind, 0) + count
    return counts


def prune_within(
    db: Database,
    settings: Settings,
    *,
    now: dt.datetime,
    budget_seconds: float | None = None,
    limit: int = PRUNE_CHUNK,
) -> PruneReport:
    """Prune chunk by chunk, each in its own transaction, until nothing old is left or the
    budget is spent (checked between chunks, so a pass overruns it by at most one chunk)."""
    budget = settings.prune_budget_seconds if budget_seconds is None else budget_seconds
    started = time.monotonic()
    report = PruneReport()
    with db.read_session() as session:
        window = PruneWindow.of(session, settings, now=now, limit=limit)
    if window.partitioned:
        partitions.ensure_partitions(db, now=now)
    pending = list(PRUNE_STEPS)
    chunks = 0
    while pending:
        for name, step in list(pending):
            # at least one round per pass, so a pass always gets somewhere
            if chunks >= len(PRUNE_STEPS) and time.monotonic() - started >= budget:
                report.more = True
                pending = []
                break
            with db.session() as session:
                counts, more = step(session, window)
            chunks += 1
            report.settled += counts.pop(SETTLED, 0)
            report.partitions_dropped += counts.pop(PARTITIONS_DROPPED, 0)
            report.more |= bool(counts.pop(DEFERRED, 0))
            report.add(counts)
            # a day partition waits for the jobs that finished before its end: while job
            # pruning goes on in this pass, the events step looks again each round
            waits = WAITS_FOR.get(name)
            if not more and not any(other == waits for other, _ in pending):
                pending.remove((name, step))
    report.seconds = time.monotonic() - started
    if report.total or report.settled:
        log.info(
            "pruned %d rows in %.2f s (%.0f rows/s)%s: %s",
            report.total,
            report.seconds,
            report.rows_per_second,
            ", more left" if report.more else "",
            ", ".join(f"{kind} {count}" for kind, count in sorted(report.rows.items())),
        )
    return report


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = [
    "JOB_DEPENDENTS",
    "PRUNE_CHUNK",
    "PRUNE_STEPS",
    "PruneReport",
    "PruneWindow",
    "prune",
    "prune_within",
]

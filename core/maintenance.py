"""Housekeeping that keeps the jobs table honest, run by the maintenance tick.

- **Abandoned submits.** A queued job whose lease ran out while ``lease_owner`` is still set was
  being submitted by a worker that died (or lost its database) before recording MetaChat's
  answer. The row itself says how far it got (the submit pump writes it, `worker.submit`):
  without ``submit_sent_at`` its request never left, so it is simply queued again; with an
  ``upstream_task_id`` MetaChat accepted it, so it is running; marked sent with no task id,
  MetaChat may have created, and will charge, a task we cannot know of (it offers no way to
  look a task up by anything but its id), so the job fails with ``submit_uncertain`` (an
  operator may retry it knowingly), unless ``RESUBMIT_ON_UNCERTAIN`` is on, in which case it is
  queued again and may be paid for twice. Nothing outside the database is consulted.
- **Expired leases** on running and timed-out jobs are cleared; the rows are due again.
- **Deadlines.** A running job past ``deadline_at`` gets a last poll (it is made due now): the
  poll pump times it out only on an answer read after the deadline that says the task is still
  going (`worker.poll`). A running job with no task id has nothing to poll and becomes
  ``timed_out`` (``deadline_exceeded``) at once.
- **Batches** with no queued or running job left become ``completed``, with their
  ``batch.completed`` webhook queued in the same transaction.
- **Pruning** (`core.retention`): old terminal jobs and their events, finished webhook
  deliveries, emptied batches and idempotency keys, chunk by chunk within a time budget.

Each step is its own short transaction, so a crash in one loses nothing of the others.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from core import claims
from core.db import Database
from core.outbox import enqueue_batch_completed
from core.retention import PruneReport, prune_within
from core.schedule import PollPlanner
from core.settings import Settings
from core.submission import get_catalogue
from core.tables import (
    BATCH_CANCELLED,
    BATCH_COMPLETED,
    BATCH_RUNNING,
    FAILED,
    QUEUED,
    RUNNING,
    TIMED_OUT,
    Batch,
    Job,
    utcnow,
)
from core.transitions import record_events, transition, transition_held

log = logging.getLogger(__name__)

SUBMIT_UNCERTAIN = "submit_uncertain"
DEADLINE_EXCEEDED = "deadline_exceeded"

SWEEP_LIMIT = 500
# Typical upstream seconds of a model the catalogue no longer knows (for its deadline).
DEFAULT_EXPECTED_SECONDS = 60.0


@dataclass
class AbandonedSubmits:
    """Abandoned submits resolved: failed as uncertain, queued again, or found running."""

    failed: int = 0
    requeued: int = 0
    recovered: int = 0


@dataclass
class MaintenanceReport:
    """What one maintenance run changed."""

    abandoned_failed: int = 0
    abandoned_requeued: int = 0
    abandoned_recovered: int = 0
    leases_cleared: int = 0
    timed_out: int = 0
    last_polls: int = 0
    batches_completed: int = 0
    pruned: dict[str, int] = field(default_factory=dict)
    prune: PruneReport | None = None


def deadline_message(submitted_at: dt.datetime | None, deadline_at: dt.datetime | None) -> str:
    """The ``error_message`` of a timed-out job."""
    allowed = ""
    if deadline_at is not None and submitted_at is not None:
        allowed = f" within {(deadline_at - submitted_at).total_seconds():.0f} s"
    return f"MetaChat did not finish the task{allowed}"


def time_out_job(
    session: Session,
    job_id: str,
    *,
    submitted_at: dt.datetime | None,
    deadline_at: dt.datetime | None,
    upstream_task_id: str | None,
    now: dt.datetime,
    reconcile_at: dt.datetime | None,
    values: Mapping[str, Any] | None = None,
) -> Job | None:
    """Move a running job past its deadline to ``timed_out``; None if it is no longer running.

    ``reconcile_at``: when the reconcile pass should look at the upstream task again.
    """
    return transition(
        session,
        job_id,
        from_status=RUNNING,
        to_status=TIMED_OUT,
        reason=DEADLINE_EXCEEDED,
        values={
            **(values or {}),
            "error_code": DEADLINE_EXCEEDED,
            "error_message": deadline_message(submitted_at, deadline_at),
            "due_at": reconcile_at,
        },
        detail={"upstream_task_id": upstream_task_id},
        now=now,
    )


def settle_abandoned_submits(
    session: Session,
    *,
    now: dt.datetime,
    resubmit: bool,
    planner: PollPlanner,
    limit: int = SWEEP_LIMIT,
) -> AbandonedSubmits:
    """Resolve submits whose worker died holding them, from the rows alone (see the module
    docstring): a constant number of statements however many there are."""
    outcome = AbandonedSubmits()
    abandoned = claims.abandoned_submits(session, now=now, limit=limit)
    recovered = [job for job in abandoned if job.upstream_task_id]
    unknown = [job for job in abandoned if not job.upstream_task_id]
    requeued = [job for job in unknown if job.submit_sent_at is None or resubmit]
    uncertain = [job for job in unknown if job.submit_sent_at is not None and not resubmit]
    outcome.recovered = _recover_submitted(session, recovered, now=now, planner=planner)
    outcome.requeued = _requeue(session, requeued, now=now)
    outcome.failed = transition_held(
        session,
        [
            {
                "id": job.id,
                "detail": {
                    "lease_owner": job.lease_owner,
                    "attempts": job.attempts,
                    "sent_at": _iso(job.submit_sent_at),
                },
            }
            for job in uncertain
        ],
        from_status=QUEUED,
        to_status=FAILED,
        reason=SUBMIT_UNCERTAIN,
        shared={
            "error_code": SUBMIT_UNCERTAIN,
            "error_message": (
                "the worker submitting this job stopped after sending it and before recording "
                "MetaChat's answer; the task may exist upstream and be charged"
            ),
        },
        now=now,
    )
    if outcome.failed or outcome.requeued or outcome.recovered:
        log.warning(
            "abandoned submits: %d failed as %s, %d queued again, %d recovered",
            outcome.failed,
            SUBMIT_UNCERTAIN,
            outcome.requeued,
            outcome.recovered,
        )
    return outcome


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _requeue(session: Session, jobs: list[Job], *, now: dt.datetime) -> int:
    """Abandoned submits that never left (or may be resent): due again, with a fresh trail."""
    if not jobs:
        return 0
    session.execute(
        update(Job)
        .where(Job.id.in_([job.id for job in jobs]), Job.status == QUEUED)
        .values(lease_owner=None, lease_until=None, submit_sent_at=None, due_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    record_events(
        session,
        [
            {
                "job_id": job.id,
                "status": QUEUED,
                "reason": "submit_abandoned",
                "detail": {
                    "lease_owner": job.lease_owner,
                    "attempts": job.attempts,
                    "never_sent": job.submit_sent_at is None,
                },
            }
            for job in jobs
        ],
        now=now,
    )
    return len(jobs)


def _recover_submitted(
    session: Session, jobs: list[Job], *, now: dt.datetime, planner: PollPlanner
) -> int:
    """The dead worker had noted MetaChat's task ids: the jobs are simply running."""
    rows: list[dict[str, Any]] = []
    for job in jobs:
        try:
            expected = get_catalogue().action(job.model, job.action).expected_seconds
        except ValueError:
            expected = DEFAULT_EXPECTED_SECONDS
        deadline = planner.deadline_seconds(
            provider=job.provider,
            model=job.model,
            action=job.action,
            expected_seconds=expected,
            requested=job.deadline_seconds,
        )
        # the request left when its round was marked sent; without the mark, no later than now
        sent = job.submit_sent_at or now
        rows.append(
            {
                "id": job.id,
                "submitted_at": sent,
                "deadline_at": sent + dt.timedelta(seconds=deadline),
                "detail": {
                    "upstream_task_id": job.upstream_task_id,
                    "lease_owner": job.lease_owner,
                },
            }
        )
    return transition_held(
        session,
        rows,
        from_status=QUEUED,
        to_status=RUNNING,
        reason="submit_recovered",
        shared={
            "attempts": Job.attempts + 1,
            "due_at": now,
            "lease_owner": None,
            "lease_until": None,
        },
        now=now,
    )


def ask_last_polls(
    session: Session,
    *,
    now: dt.datetime,
    planner: PollPlanner,
    grace: float,
    limit: int = SWEEP_LIMIT,
) -> tuple[int, int]:
    """Running jobs past their deadline: make those with a task due for a last poll now (the
    poll pump times them out if the answer says they are still going), and time out those
    without a task id, which have nothing to poll. Returns (asked, timed out).

    A poll that failed after the deadline is tried again within ``grace``
    (`claims.last_poll_grace`); such rows are left to the poll pump's own back-off."""
    asked = session.execute(
        update(Job)
        .where(_unpolled_overdue(now, grace))
        .values(due_at=now)
        .execution_options(synchronize_session=False)
    )
    orphans = session.execute(
        select(Job)
        .where(_overdue(now), Job.upstream_task_id.is_(None))
        .order_by(Job.deadline_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).scalars()
    count = 0
    for job in list(orphans):
        reconcile_at = now + dt.timedelta(seconds=planner.reconcile_interval())
        moved = time_out_job(
            session,
            job.id,
            submitted_at=job.submitted_at,
            deadline_at=job.deadline_at,
            upstream_task_id=None,
            now=now,
            reconcile_at=reconcile_at,
        )
        count += moved is not None
    return _rowcount(asked), count


def _unpolled_overdue(now: dt.datetime, grace: float) -> ColumnElement[bool]:
    """Overdue rows with a task whose next poll is not coming (none, or beyond the grace)."""
    return and_(
        _overdue(now),
        Job.upstream_task_id.is_not(None),
        or_(Job.due_at.is_(None), Job.due_at > now + dt.timedelta(seconds=grace)),
    )


def _overdue(now: dt.datetime) -> ColumnElement[bool]:
    """Unleased running jobs past their deadline."""
    return and_(
        Job.status == RUNNING,
        Job.deadline_at.is_not(None),
        Job.deadline_at < now,
        Job.lease_owner.is_(None),
    )


def _unfinished_batch() -> ColumnElement[bool]:
    """Running batches, and cancelled ones whose last running job has not ended yet."""
    return or_(
        Batch.status == BATCH_RUNNING,
        and_(Batch.status == BATCH_CANCELLED, Batch.finished_at.is_(None)),
    )


def _has_active_jobs(batch_id: Any) -> ColumnElement[bool]:
    return (
        select(Job.id).where(Job.batch_id == batch_id, Job.status.in_((QUEUED, RUNNING))).exists()
    )


def complete_batches(session: Session, *, now: dt.datetime) -> int:
    """Finish batches with no queued or running job and queue their `batch.completed`.

    A running batch becomes ``completed``; a cancelled one keeps its status and gets its
    ``finished_at``. The candidates are locked first (cancel and retry lock the batch row too),
    then checked again in a statement of their own: on PostgreSQL that statement reads a fresh
    snapshot, so jobs a concurrent retry committed while we waited are seen and the batch stays
    open.
    """
    candidates = session.scalars(
        select(Batch)
        .where(_unfinished_batch(), ~_has_active_jobs(Batch.id))
        .order_by(Batch.id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    finished = 0
    for candidate in candidates:
        if session.scalar(select(_has_active_jobs(candidate.id))):
            continue
        status = BATCH_COMPLETED if candidate.status == BATCH_RUNNING else BATCH_CANCELLED
        batch = session.execute(
            update(Batch)
            .where(Batch.id == candidate.id, _unfinished_batch())
            .values(status=status, finished_at=now)
            .returning(Batch)
            .execution_options(synchronize_session=False, populate_existing=True)
        ).scalar_one_or_none()
        if batch is not None:
            enqueue_batch_completed(session, batch, at=now)
            finished += 1
    return finished


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def pending_work(session: Session, *, now: dt.datetime, grace: float) -> set[str]:
    """Which steps have anything to do, read in one statement so an idle pass is one read
    and takes no write lock."""
    lease_expired = and_(Job.lease_until.is_not(None), Job.lease_until < now)
    checks = {
        "abandoned": and_(Job.status == QUEUED, Job.lease_owner.is_not(None), lease_expired),
        "leases": and_(Job.status.in_((RUNNING, TIMED_OUT)), lease_expired),
        "deadlines": or_(
            and_(_overdue(now), Job.upstream_task_id.is_(None)), _unpolled_overdue(now, grace)
        ),
    }
    finished = and_(_unfinished_batch(), ~_has_active_jobs(Batch.id))
    probes = [
        select(Job.id).where(where).limit(1).exists().label(name) for name, where in checks.items()
    ]
    probes.append(select(Batch.id).where(finished).limit(1).exists().label("batches"))
    # one statement for every step, each part a LIMIT 1 on its own index
    row = session.execute(select(*probes)).one()
    return {name for name, found in row._mapping.items() if found}


def run_maintenance(
    db: Database,
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    planner: PollPlanner | None = None,
    include_prune: bool = True,
) -> MaintenanceReport:
    """One maintenance pass; every step commits on its own."""
    now = now or utcnow()
    planner = planner or PollPlanner(settings.poll_schedules, time_scale=settings.poll_time_scale)
    report = MaintenanceReport()
    with db.read_session() as session:
        due = pending_work(session, now=now, grace=claims.last_poll_grace(settings))
    if "abandoned" in due:
        with db.session() as session:
            abandoned = settle_abandoned_submits(
                session,
                now=now,
                resubmit=settings.resubmit_on_uncertain,
                planner=planner,
            )
        report.abandoned_failed = abandoned.failed
        report.abandoned_requeued = abandoned.requeued
        report.abandoned_recovered = abandoned.recovered
    if "leases" in due:
        with db.session() as session:
            report.leases_cleared = claims.clear_expired_leases(
                session, statuses=(RUNNING, TIMED_OUT), now=now
            )
    if "deadlines" in due:
        with db.session() as session:
            report.last_polls, report.timed_out = ask_last_polls(
                session, now=now, planner=planner, grace=claims.last_poll_grace(settings)
            )
    if "batches" in due:
        with db.session() as session:
            report.batches_completed = complete_batches(session, now=now)
    if include_prune:
        report.prune = prune_within(db, settings, now=now)
        report.pruned = dict(report.prune.rows)
    return report

"""Stopping and restarting work a client asked for: cancel a job or a batch, retry a batch.

MetaChat has no cancel call. A queued job is cancelled before anything is sent; a running one is
cancelled *locally*: its upstream task may still finish and be charged, and the job says so.

A batch cancel touches up to ten thousand rows, so it is a few bulk statements instead of one
`transition()` per job, with the same effect: a compare-and-set on ``status = 'queued'``, one
`job_events` row each and the webhook outbox row of every job that has a URL, all in the
caller's transaction (`end_queued_jobs`, which the submit claim uses too).

Locks follow the order of `core.budget`: the batch row first (the caller locks it, PostgreSQL
``FOR UPDATE``; SQLite writers are serialised anyway, and a cancel and a retry of one batch
never interleave), then its API key, then the jobs. A job cancelled while it waited in the queue
gives back whatever it held of the budgets; one cancelled while running, or while a pump was
sending it, keeps counting: MetaChat may charge it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, case, exists, insert, null, select, update
from sqlalchemy.orm import Session

from core import ids
from core.budget import open_ledger
from core.outbox import JOB_EVENT_TYPES, enqueue_batch_completed, event_body
from core.submission import insert_job_rows
from core.tables import (
    BATCH_CANCELLED,
    BATCH_RUNNING,
    CANCELLED,
    DELIVERY_PENDING,
    FAILED,
    QUEUED,
    RUNNING,
    TERMINAL_STATUSES,
    TIMED_OUT,
    Batch,
    Job,
    JobEvent,
    metadata,
    utcnow,
)
from core.transitions import transition
from core.views import job_view

CANCELLED_BY_CLIENT: Final = "cancelled_by_client"
CANCELLED_WITH_BATCH: Final = "batch_cancelled"
RETRIED: Final = "retried"
RETRY_OF: Final = "retry"
ERROR_CODE: Final = "cancelled"
RUNNING_NOTE: Final = (
    "cancelled while running upstream; MetaChat cannot stop a task, so its cost may still be "
    "charged"
)
SENDING_NOTE: Final = (
    "cancelled while it was being sent upstream; MetaChat may have created the task, so its "
    "cost may still be charged"
)
RETRYABLE: Final = (FAILED, TIMED_OUT)

# the columns a retry copies from the job it replaces: the spec, not the outcome
_SPEC_COLUMNS: Final = (
    "api_key_id",
    "batch_id",
    "provider",
    "model",
    "action",
    "prompt",
    "params",
    "images",
    "source_job_id",
    "source_index",
    "webhook_url",
    "metadata_",
    "priority",
    "deadline_seconds",
    "estimated_points",
)


class CancelRefused(Exception):
    """The job or batch is already finished (or the batch was cancelled): HTTP 409."""


@dataclass(frozen=True)
class Ending:
    """Why a queued job ends: its `error_code`, `error_message` and event reason."""

    code: str
    message: str
    reason: str


def cancel_job(session: Session, job_id: str, *, now: dt.datetime | None = None) -> Job:
    """Cancel a queued or running job; `CancelRefused` when it has already finished."""
    now = now or utcnow()
    job = session.get_one(Job, job_id, populate_existing=True)
    ledger = None
    if _waiting_with_points(job):
        # It gives its points back: lock its batch and key before the job row (the order of
        # `core.budget`), then read it again as it is now. While we hold them no claim can
        # lease it, so a job still waiting now is still waiting at the compare-and-set.
        ledger = open_ledger(
            session, api_key_ids=[job.api_key_id], batch_ids=[job.batch_id], now=now, settle=False
        )
        job = session.get_one(Job, job_id, populate_existing=True)
    # A worker may move the job between our read and our compare-and-set; follow it once.
    for _ in range(3):
        if job.status in TERMINAL_STATUSES:
            raise CancelRefused(f"the job has already finished ({job.status})")
        running = job.status == RUNNING
        waiting = job.status == QUEUED and job.lease_owner is None
        gives_back = ledger is not None and _waiting_with_points(job)
        if running:
            message = RUNNING_NOTE
        elif waiting:
            message = "cancelled before it was sent upstream"
        else:
            message = SENDING_NOTE
        updated = transition(
            session,
            job_id,
            from_status=job.status,
            to_status=CANCELLED,
            reason=CANCELLED_BY_CLIENT,
            values={"error_code": ERROR_CODE, "error_message": message},
            detail={"cost_may_be_charged": not waiting},
            now=now,
        )
        if updated is not None:
            if ledger is not None and gives_back:
                ledger.release([updated])
                ledger.flush()
            return updated
        job = session.get_one(Job, job_id, populate_existing=True)
    raise CancelRefused(f"the job has already finished ({job.status})")


def _waiting_with_points(job: Job) -> bool:
    return job.status == QUEUED and job.lease_owner is None and (job.points_held or 0) != 0


def end_queued_jobs(
    session: Session,
    where: ColumnElement[bool],
    endings: Ending | Mapping[str, Ending],
    *,
    to_status: str,
    now: dt.datetime,
) -> list[Job]:
    """Move the queued jobs matching `where` to a terminal status in bulk: one UPDATE, one
    insert of their events, one of their webhook rows, whatever the number of jobs.

    `endings` is one `Ending` for all, or one per job id (then only those jobs move). The
    caller holds the rows (locked, or a SQLite write transaction), so none is moved twice.
    """
    if isinstance(endings, Ending):
        values: dict[str, Any] = {"error_code": endings.code, "error_message": endings.message}
    else:
        if not endings:
            return []
        where = where & Job.id.in_(list(endings))
        values = {
            "error_code": case({i: e.code for i, e in endings.items()}, value=Job.id),
            "error_message": case({i: e.message for i, e in endings.items()}, value=Job.id),
        }
    ended = list(
        session.scalars(
            update(Job)
            .where(where, Job.status == QUEUED)
            .values(
                status=to_status,
                updated_at=now,
                finished_at=now,
                due_at=None,
                lease_until=None,
                lease_owner=None,
                **values,
            )
            .returning(Job)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    )
    if not ended:
        return []
    session.execute(
        insert(metadata.tables["job_events"]),
        [
            {
                "job_id": job.id,
                "at": now,
                "from_status": QUEUED,
                "to_status": to_status,
                "reason": (endings if isinstance(endings, Ending) else endings[job.id]).reason,
                "detail": None,
            }
            for job in ended
        ],
    )
    _enqueue_job_events(session, ended, now)
    return ended


def _enqueue_job_events(session: Session, jobs: Sequence[Job], at: dt.datetime) -> int:
    """`outbox.enqueue_job_event` for many terminal jobs in one statement."""
    with_hooks = [job for job in jobs if job.webhook_url and job.status in JOB_EVENT_TYPES]
    if not with_hooks:
        return 0
    delivery_ids = ids.new_ids(ids.DELIVERY, len(with_hooks))
    session.execute(
        insert(metadata.tables["webhook_deliveries"]),
        [
            {
                "id": delivery_id,
                "api_key_id": job.api_key_id,
                "job_id": job.id,
                "batch_id": job.batch_id,
                "event_type": JOB_EVENT_TYPES[job.status],
                "url": job.webhook_url,
                "payload": event_body(JOB_EVENT_TYPES[job.status], job_view(job), at),
                "state": DELIVERY_PENDING,
                "attempts": 0,
                "due_at": at,
                "created_at": at,
                "updated_at": at,
            }
            for delivery_id, job in zip(delivery_ids, with_hooks, strict=True)
        ],
    )
    return len(with_hooks)


def cancel_batch(session: Session, batch: Batch, *, now: dt.datetime | None = None) -> int:
    """Cancel a batch's queued jobs and mark the batch cancelled; returns how many jobs.

    The caller has locked the batch row. Jobs already running keep running. When none is left
    running, the batch is finished now and its `batch.completed` webhook is queued; otherwise
    whoever finishes its last running job does that (maintenance). `CancelRefused` when the
    batch is no longer running.
    """
    now = now or utcnow()
    if batch.status != BATCH_RUNNING:
        raise CancelRefused(f"the batch is already {batch.status}")
    ledger = open_ledger(
        session, api_key_ids=[batch.api_key_id], batch_ids=[batch.id], now=now, settle=False
    )
    in_queue = Job.batch_id == batch.id
    # lock the queued jobs in id order and see which were waiting and what they held
    waiting = [
        row
        for row in session.execute(
            select(
                Job.id,
                Job.api_key_id,
                Job.batch_id,
                Job.lease_owner,
                Job.points_held,
                Job.points_held_on,
            )
            .where(in_queue, Job.status == QUEUED)
            .order_by(Job.id)
            .with_for_update()
        )
        if row.lease_owner is None
    ]
    cancelled = end_queued_jobs(
        session,
        in_queue,
        Ending(
            ERROR_CODE,
            "the batch was cancelled before this job was sent upstream",
            CANCELLED_WITH_BATCH,
        ),
        to_status=CANCELLED,
        now=now,
    )
    ledger.release(waiting)
    ledger.flush()
    batch.status = BATCH_CANCELLED
    still_running = session.scalar(
        select(exists().where(Job.batch_id == batch.id, Job.status == RUNNING))
    )
    if not still_running:
        batch.finished_at = now
        session.flush()
        enqueue_batch_completed(session, batch, at=now)
    session.flush()
    return len(cancelled)


def retry_batch(session: Session, batch: Batch, *, now: dt.datetime | None = None) -> list[str]:
    """Queue a new job for each failed or timed-out job of the batch not retried before.

    The old jobs stay as they are (each gets a `retried` event naming its replacement); the new
    ones join the same batch, which runs again. Returns the new job ids.
    """
    now = now or utcnow()
    if batch.status == BATCH_CANCELLED:
        raise CancelRefused("the batch was cancelled")
    already_retried = exists().where(JobEvent.job_id == Job.id, JobEvent.reason == RETRIED)
    olds = list(
        session.scalars(
            select(Job)
            .where(Job.batch_id == batch.id, Job.status.in_(RETRYABLE), ~already_retried)
            .order_by(Job.created_at, Job.id)
        )
    )
    if not olds:
        return []
    new_ids = ids.new_ids(ids.JOB, len(olds))
    rows: list[dict[str, Any]] = []
    for new_id, old in zip(new_ids, olds, strict=True):
        row = {column.rstrip("_"): getattr(old, column) for column in _SPEC_COLUMNS}
        if row["metadata"] is None:
            row["metadata"] = null()  # SQL NULL, as at submission
        row.update(
            id=new_id,
            status=QUEUED,
            created_at=now,
            updated_at=now,
            due_at=now,
            attempts=0,
            polls=0,
            progress=0,
        )
        rows.append(row)
    insert_job_rows(
        session, rows, now=now, reason=RETRY_OF, details=[{"retry_of": old.id} for old in olds]
    )
    session.execute(
        insert(metadata.tables["job_events"]),
        [
            {
                "job_id": old.id,
                "at": now,
                "from_status": old.status,
                "to_status": old.status,
                "reason": RETRIED,
                "detail": {"retry_job_id": new_id},
            }
            for new_id, old in zip(new_ids, olds, strict=True)
        ],
    )
    batch.total = (batch.total or 0) + len(olds)
    batch.status = BATCH_RUNNING
    batch.finished_at = None
    session.flush()
    return new_ids

"""The job state machine. Every status change is a compare-and-set on the previous status plus a
`job_events` row, so two workers can never both finish, charge or notify the same job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, insert, update
from sqlalchemy.orm import Session

from core.outbox import enqueue_job_event, enqueue_job_events
from core.tables import (
    ARCHIVE_PENDING,
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATUSES,
    TIMED_OUT,
    Job,
    JobEvent,
    utcnow,
)

ALLOWED: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, FAILED, CANCELLED, TIMED_OUT}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, TIMED_OUT}),
    # a reconcile pass may still record the late success of a timed-out task
    TIMED_OUT: frozenset({SUCCEEDED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


class IllegalTransition(ValueError):
    pass


def archive_pending(now: dt.datetime) -> dict[str, Any]:
    """What a move to succeeded sets so the archive pump copies the job's outputs."""
    return {
        "archive_state": ARCHIVE_PENDING,
        "archive_due_at": now,
        "archive_attempts": 0,
        "archive_error": None,
        "archive_lease_until": None,
    }


def transition(
    session: Session,
    job_id: str,
    *,
    from_status: str | Collection[str],
    to_status: str,
    reason: str,
    values: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Job | None:
    """Move `job_id` from `from_status` to `to_status` if it is still there.

    Returns the updated row, or None when another writer got there first (the row's status is no
    longer `from_status`). A terminal transition clears the lease and due time, stamps
    `finished_at`, and queues the job's webhook in the same transaction.
    """
    froms = (from_status,) if isinstance(from_status, str) else tuple(from_status)
    for source in froms:
        if to_status not in ALLOWED[source]:
            raise IllegalTransition(f"{source} -> {to_status}")
    now = now or utcnow()
    changes: dict[str, Any] = {"status": to_status, "updated_at": now}
    if to_status in TERMINAL_STATUSES:
        changes.update(finished_at=now, due_at=None, lease_until=None, lease_owner=None)
    if to_status == SUCCEEDED:
        changes.update(archive_pending(now))
    changes.update(values or {})
    job: Job | None = None
    previous = froms[0]
    # One compare-and-set per candidate status, so the event names the status actually left.
    for previous in froms:
        job = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == previous)
            .values(**changes)
            .returning(Job)
            .execution_options(synchronize_session=False, populate_existing=True)
        ).scalar_one_or_none()
        if job is not None:
            break
    if job is None:
        return None
    session.execute(
        insert(JobEvent).values(
            job_id=job_id,
            at=now,
            from_status=previous,
            to_status=to_status,
            reason=reason,
            detail=dict(detail) if detail else None,
        )
    )
    if to_status in TERMINAL_STATUSES:
        enqueue_job_event(session, job, at=now)
    return job


def transition_held(
    session: Session,
    rows: Sequence[Mapping[str, Any]],
    *,
    from_status: str,
    to_status: str,
    reason: str,
    shared: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Move many rows this transaction already holds: a constant number of statements.

    For rows locked earlier in the same transaction with their status checked (the pumps'
    `claims.hold_leases`), so the compare-and-set cannot lose. Each mapping has the row's `id`,
    its own column values (every mapping the same names) and an optional `detail` for its
    event; `shared` holds values (or SQL expressions) common to all rows. One executemany
    UPDATE, one insert of the events and, for a terminal status, one read of the moved rows
    that have a webhook and one insert of their outbox rows, whatever the number of rows.
    """
    if to_status not in ALLOWED[from_status]:
        raise IllegalTransition(f"{from_status} -> {to_status}")
    if not rows:
        return 0
    now = now or utcnow()
    table = cast(Table, Job.__table__)
    columns = sorted({name for row in rows for name in row if name not in ("id", "detail")})
    changes: dict[str, Any] = {"status": to_status, "updated_at": now}
    if to_status in TERMINAL_STATUSES:
        changes.update(finished_at=now, due_at=None, lease_until=None, lease_owner=None)
    if to_status == SUCCEEDED:
        changes.update(archive_pending(now))
    changes.update(shared or {})
    changes.update({name: bindparam(f"b_{name}", type_=table.c[name].type) for name in columns})
    statement = (
        table.update()
        .where(table.c.id == bindparam("b_id"), table.c.status == from_status)
        .values(**changes)
    )
    params = [
        {"b_id": row["id"], **{f"b_{name}": row.get(name) for name in columns}} for row in rows
    ]
    result = cast(CursorResult[Any], session.execute(statement, params))
    moved = int(result.rowcount)
    if moved != len(rows):
        # a held row moved by someone else would mean the lease protocol is broken
        raise RuntimeError(f"held rows changed under us: {moved} of {len(rows)} moved")
    session.execute(
        cast(Table, JobEvent.__table__).insert(),
        [
            {
                "job_id": row["id"],
                "at": now,
                "from_status": from_status,
                "to_status": to_status,
                "reason": reason,
                "detail": dict(row["detail"]) if row.get("detail") else None,
            }
            for row in rows
        ],
    )
    if to_status in TERMINAL_STATUSES:
        enqueue_job_events(session, [row["id"] for row in rows], at=now)
    return moved


def record_event(
    session: Session,
    job_id: str,
    *,
    status: str,
    reason: str,
    detail: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> None:
    """An audit row for a step that changes no status (a retried submit, a 429 back-off)."""
    session.execute(
        insert(JobEvent).values(
            job_id=job_id,
            at=now or utcnow(),
            from_status=status,
            to_status=status,
            reason=reason,
            detail=dict(detail) if detail else None,
        )
    )


def record_events(
    session: Session, events: Sequence[Mapping[str, Any]], *, now: dt.datetime | None = None
) -> None:
    """`record_event` for many jobs in one insert: each mapping has ``job_id``, ``status``,
    ``reason`` and an optional ``detail``."""
    if not events:
        return
    at = now or utcnow()
    session.execute(
        cast(Table, JobEvent.__table__).insert(),
        [
            {
                "job_id": event["job_id"],
                "at": at,
                "from_status": event["status"],
                "to_status": event["status"],
                "reason": event["reason"],
                "detail": dict(event["detail"]) if event.get("detail") else None,
            }
            for event in events
        ],
    )

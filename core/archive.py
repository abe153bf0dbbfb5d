"""The archive pump's rows: which succeeded jobs still have outputs to copy, and what a copy
round did to them (`worker.archive` does the copying).

A job moves to ``archive_state = pending`` with its move to succeeded (`core.transitions`).
The pump leases due rows with ``archive_lease_until`` (so a worker killed mid-copy leaves
nothing held for long), copies each output that has no file row yet, and records here: file
rows (idempotent on job and index), then the job's archive state, its ``result.files`` and the
payload of its still-unsent ``job.succeeded`` webhook. A copy failure never touches the job's
status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core.files import file_view, files_of, record_file
from core.outbox import JOB_EVENT_TYPES, event_body
from core.tables import (
    ARCHIVE_DONE,
    ARCHIVE_FAILED,
    ARCHIVE_PENDING,
    ARCHIVE_SKIPPED,
    DELIVERY_PENDING,
    SUCCEEDED,
    Job,
    ResultFile,
    WebhookDelivery,
)
from core.views import job_view

SUCCEEDED_EVENT = JOB_EVENT_TYPES[SUCCEEDED]


def output_urls(result: Mapping[str, Any] | None) -> list[str]:
    """A job's outputs in index order: its image URLs, then its video URL(s)."""
    if not result:
        return []
    urls = [str(url) for url in result.get("image_urls") or [] if url]
    videos = result.get("video_urls") or ([result["video_url"]] if result.get("video_url") else [])
    urls.extend(str(url) for url in videos if url)
    return urls


@dataclass(frozen=True)
class ArchiveJob:
    """A leased job: its outputs and the indexes already recorded by an earlier round."""

    id: str
    attempts: int
    urls: tuple[str, ...]
    recorded: frozenset[int]

    @property
    def to_copy(self) -> list[tuple[int, str]]:
        return [(index, url) for index, url in enumerate(self.urls) if index not in self.recorded]


@dataclass(frozen=True)
class CopiedFile:
    index: int
    key: str
    sha256: str
    size: int
    content_type: str
    width: int | None
    height: int | None
    source_url: str


@dataclass
class ArchiveOutcome:
    """What one round did for one job. ``refused`` outputs are not tried again (the link is
    gone, the type or size is not one we keep); ``failed`` ones are, after a pause."""

    job_id: str
    copied: list[CopiedFile] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)


def _due(now: dt.datetime) -> ColumnElement[bool]:
    return and_(
        Job.archive_state == ARCHIVE_PENDING,
        Job.archive_due_at <= now,
        or_(Job.archive_lease_until.is_(None), Job.archive_lease_until <= now),
    )


def claim_archive_jobs(
    session: Session, *, now: dt.datetime, lease_seconds: float, limit: int
) -> list[ArchiveJob]:
    """Lease up to ``limit`` jobs whose outputs are due for copying, oldest first."""
    candidates = select(Job.id).where(_due(now)).order_by(Job.archive_due_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list(session.scalars(candidates))
    if not ids:
        return []
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(ids), _due(now))
        .values(archive_lease_until=now + dt.timedelta(seconds=lease_seconds))
        .returning(Job.id, Job.archive_attempts, Job.result)
        .execution_options(synchronize_session=False)
    ).all()
    recorded: dict[str, set[int]] = {}
    for job_id, index in session.execute(
        select(ResultFile.job_id, ResultFile.output_index).where(
            ResultFile.job_id.in_([row.id for row in rows])
        )
    ):
        recorded.setdefault(job_id, set()).add(int(index))
    return [
        ArchiveJob(
            id=row.id,
            attempts=int(row.archive_attempts or 0),
            urls=tuple(output_urls(row.result)),
            recorded=frozenset(recorded.get(row.id, ())),
        )
        for row in rows
    ]


def record_archive_outcomes(
    session: Session,
    outcomes: Sequence[ArchiveOutcome],
    *,
    now: dt.datetime,
    base_url: str,
    max_attempts: int,
    retry_gaps: Sequence[float],
) -> dict[str, int]:
    """Write a round's file rows and move each job to done, failed or its next try.

    Returns counts by state reached: ``done``, ``failed``, ``retry``.
    """
    counts = {"done": 0, "failed": 0, "retry": 0}
    for outcome in outcomes:
        for copied in outcome.copied:
            record_file(
                session,
                job_id=outcome.job_id,
                index=copied.index,
                key=copied.key,
                sha256=copied.sha256,
                size=copied.size,
                content_type=copied.content_type,
                width=copied.width,
                height=copied.height,
                source_url=copied.source_url,
                copied_at=now,
            )
        job = session.get(Job, outcome.job_id, populate_existing=True)
        if job is None or job.archive_state != ARCHIVE_PENDING:
            continue  # pruned or settled meanwhile
        attempts = int(job.archive_attempts or 0) + 1
        errors = {**outcome.refused, **outcome.failed}
        error = "; ".join(f"output {index}: {why}" for index, why in sorted(errors.items()))
        if outcome.failed and attempts < max_attempts:
            gap = retry_gaps[min(attempts - 1, len(retry_gaps) - 1)] if retry_gaps else 60.0
            job.archive_attempts = attempts
            job.archive_error = error[:2000]
            job.archive_due_at = now + dt.timedelta(seconds=gap)
            job.archive_lease_until = None
            counts["retry"] += 1
            continue
        state = ARCHIVE_FAILED if errors else ARCHIVE_DONE
        counts["done" if state == ARCHIVE_DONE else "failed"] += 1
        _settle(
            session,
            job,
            state=state,
            attempts=attempts,
            error=error or None,
            now=now,
            base_url=base_url,
        )
    session.flush()
    return counts


def _settle(
    session: Session,
    job: Job,
    *,
    state: str,
    attempts: int,
    error: str | None,
    now: dt.datetime,
    base_url: str,
) -> None:
    """A job's archiving ends: its result lists our copies, and its held webhook (if not sent
    yet) is rewritten with them and released."""
    job.archive_state = state
    job.archive_attempts = attempts
    job.archive_error = error[:2000] if error else None
    job.archive_due_at = None
    job.archive_lease_until = None
    result = dict(job.result or {})
    result["files"] = [file_view(row, base_url) for row in files_of(session, job.id)]
    job.result = result
    session.flush()
    _rewrite_unsent_webhooks(session, job, now=now)


def _rewrite_unsent_webhooks(session: Session, job: Job, *, now: dt.datetime) -> None:
    view = job_view(job)
    unsent = session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.job_id == job.id,
            WebhookDelivery.event_type == SUCCEEDED_EVENT,
            WebhookDelivery.state == DELIVERY_PENDING,
            WebhookDelivery.attempts == 0,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until <= now),
        )
    ).all()
    for delivery in unsent:
        delivery.payload = event_body(SUCCEEDED_EVENT, view, delivery.created_at)
        delivery.due_at = min(delivery.due_at or now, now)
        delivery.updated_at = now


def skip_pending(session: Session, *, now: dt.datetime, limit: int) -> int:
    """Archiving is off: settle due rows as skipped so nothing waits on them."""
    ids = list(session.scalars(select(Job.id).where(_due(now)).limit(limit)))
    if not ids:
        return 0
    session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.archive_state == ARCHIVE_PENDING)
        .values(archive_state=ARCHIVE_SKIPPED, archive_due_at=None, archive_lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return len(ids)


def held_for_archive(now: dt.datetime, wait: dt.timedelta) -> ColumnElement[bool]:
    """A ``job.succeeded`` delivery not yet attempted whose job is still being archived, for
    at most ``wait`` after it was written: the deliver claim leaves it alone meanwhile."""
    archiving = exists(
        select(Job.id).where(Job.id == WebhookDelivery.job_id, Job.archive_state == ARCHIVE_PENDING)
    )
    return and_(
        WebhookDelivery.event_type == SUCCEEDED_EVENT,
        WebhookDelivery.attempts == 0,
        WebhookDelivery.created_at > now - wait,
        archiving,
    )


def archive_counts(session: Session, *, api_key_id: str | None = None) -> dict[str, int]:
    """Jobs by archive state (the dashboard and /metrics), of one key or of all."""
    query = select(Job.archive_state, func.count()).where(Job.archive_state.is_not(None))
    if api_key_id is not None:
        query = query.where(Job.api_key_id == api_key_id)
    rows = session.execute(query.group_by(Job.archive_state)).all()
    return {str(state): int(count) for state, count in rows}


def retry_archive(session: Session, job_id: str, *, now: dt.datetime) -> bool:
    """Put a job whose archiving failed back in line (an operator's retry)."""
    moved = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.archive_state == ARCHIVE_FAILED)
        .values(
            archive_state=ARCHIVE_PENDING,
            archive_due_at=now,
            archive_attempts=0,
            archive_lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(moved, "rowcount", 0))


def expired_files(session: Session, *, cutoff: dt.datetime, limit: int) -> list[tuple[str, str]]:
    """(id, key) of files whose jobs finished before ``cutoff``: pruned before their jobs, the
    objects first, so no row is deleted while its object is still in the store."""
    rows = session.execute(
        select(ResultFile.id, ResultFile.key)
        .join(Job, Job.id == ResultFile.job_id)
        .where(Job.finished_at < cutoff)
        .limit(limit)
    ).all()
    return [(str(file_id), str(key)) for file_id, key in rows]


def forget_files(session: Session, file_ids: Sequence[str]) -> int:
    """Delete file rows whose objects are gone from the store."""
    if not file_ids:
        return 0
    result = session.execute(delete(ResultFile).where(ResultFile.id.in_(list(file_ids))))
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = [
    "ArchiveJob",
    "ArchiveOutcome",
    "CopiedFile",
    "archive_counts",
    "claim_archive_jobs",
    "expired_files",
    "forget_files",
    "held_for_archive",
    "output_urls",
    "record_archive_outcomes",
    "retry_archive",
    "skip_pending",
]

"""The webhook outbox: a delivery row written in the same transaction as the change it announces,
so a committed terminal job always has its callback queued and a rolled-back one never does."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from core import ids
from core.tables import (
    DELIVERY_PENDING,
    Batch,
    Job,
    WebhookDelivery,
    utcnow,
)
from core.views import batch_view, job_view, rfc3339

JOB_EVENT_TYPES = {
    "succeeded": "job.succeeded",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
    "timed_out": "job.timed_out",
}
BATCH_COMPLETED = "batch.completed"


def event_body(event_type: str, data: Mapping[str, Any], at: dt.datetime) -> str:
    """The exact bytes (as text) that are signed and POSTed, identical on every attempt."""
    body = {"type": event_type, "timestamp": rfc3339(at), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def enqueue_job_event(session: Session, job: Job, *, at: dt.datetime | None = None) -> str | None:
    """Queue the terminal event of `job` for its webhook URL; returns the delivery id."""
    event_type = JOB_EVENT_TYPES.get(job.status)
    if event_type is None or not job.webhook_url:
        return None
    at = at or utcnow()
    delivery_id = ids.new_id(ids.DELIVERY)
    session.execute(
        insert(WebhookDelivery).values(
            id=delivery_id,
            api_key_id=job.api_key_id,
            job_id=job.id,
            batch_id=job.batch_id,
            event_type=event_type,
            url=job.webhook_url,
            payload=event_body(event_type, job_view(job), at),
            state=DELIVERY_PENDING,
            attempts=0,
            due_at=at,
            created_at=at,
            updated_at=at,
        )
    )
    return delivery_id


def enqueue_job_events(
    session: Session, job_ids: Sequence[str], *, at: dt.datetime | None = None
) -> int:
    """`enqueue_job_event` for many jobs that just became terminal: one read of those with a
    webhook URL and one insert of their delivery rows, however many there are."""
    if not job_ids:
        return 0
    at = at or utcnow()
    jobs = session.scalars(
        select(Job)
        .where(Job.id.in_(list(job_ids)), Job.webhook_url.is_not(None))
        .execution_options(populate_existing=True)
    ).all()
    deliveries = [
        _delivery_row(job, event_type, at)
        for job in jobs
        if (event_type := JOB_EVENT_TYPES.get(job.status)) is not None and job.webhook_url
    ]
    if deliveries:
        session.execute(cast(Table, WebhookDelivery.__table__).insert(), deliveries)
    return len(deliveries)


def _delivery_row(job: Job, event_type: str, at: dt.datetime) -> dict[str, Any]:
    return {
        "id": ids.new_id(ids.DELIVERY),
        "api_key_id": job.api_key_id,
        "job_id": job.id,
        "batch_id": job.batch_id,
        "event_type": event_type,
        "url": job.webhook_url,
        "payload": event_body(event_type, job_view(job), at),
        "state": DELIVERY_PENDING,
        "attempts": 0,
        "due_at": at,
        "created_at": at,
        "updated_at": at,
        "last_status_code": None,
        "last_error": None,
        "lease_until": None,
        "lease_owner": None,
        "delivered_at": None,
    }


def batch_counts(session: Session, batch_id: str) -> tuple[dict[str, int], int | None]:
    """A batch's job counts by status and its summed cost (None when nothing is known yet)."""
    rows = session.execute(
        select(Job.status, func.count(), func.sum(Job.cost_points))
        .where(Job.batch_id == batch_id)
        .group_by(Job.status)
    ).all()
    counts = {status: int(count) for status, count, _ in rows}
    costs = [int(cost) for _, _, cost in rows if cost is not None]
    return counts, (sum(costs) if costs else None)


def enqueue_batch_completed(
    session: Session, batch: Batch, *, at: dt.datetime | None = None
) -> str | None:
    if not batch.webhook_url:
        return None
    at = at or utcnow()
    counts, cost = batch_counts(session, batch.id)
    delivery_id = ids.new_id(ids.DELIVERY)
    session.execute(
        insert(WebhookDelivery).values(
            id=delivery_id,
            api_key_id=batch.api_key_id,
            job_id=None,
            batch_id=batch.id,
            event_type=BATCH_COMPLETED,
            url=batch.webhook_url,
            payload=event_body(BATCH_COMPLETED, batch_view(batch, counts, cost), at),
            state=DELIVERY_PENDING,
            attempts=0,
            due_at=at,
            created_at=at,
            updated_at=at,
        )
    )
    return delivery_id

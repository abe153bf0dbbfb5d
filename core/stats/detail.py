"""One job as an operator inspects it (the job, its audit trail, its webhook deliveries), and
the API keys an operator can filter by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.stats.queries import webhook_target
from core.tables import ApiKey, Job, JobEvent, WebhookDelivery
from core.views import event_view, job_view, rfc3339


@dataclass(frozen=True)
class KeyChoice:
    id: str
    name: str
    admin: bool


@dataclass(frozen=True)
class JobDetail:
    """`job` is the public Job shape; deliveries show their target without query strings."""

    job: dict[str, Any]
    api_key_name: str
    events: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]


def job_detail(session: Session, job_id: str) -> JobDetail | None:
    job = session.get(Job, job_id)
    if job is None:
        return None
    key = session.get(ApiKey, job.api_key_id)
    events = session.scalars(
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    ).all()
    deliveries = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    ).all()
    return JobDetail(
        job=job_view(job),
        api_key_name=key.name if key is not None else job.api_key_id,
        events=[event_view(event) for event in events],
        deliveries=[
            {
                "id": d.id,
                "event_type": d.event_type,
                "target": webhook_target(d.url),
                "state": d.state,
                "attempts": d.attempts,
                "last_status_code": d.last_status_code,
                "last_error": d.last_error,
                "updated_at": rfc3339(d.updated_at),
            }
            for d in deliveries
        ],
    )


def key_choices(session: Session) -> list[KeyChoice]:
    """Live API keys, by name, for the dashboard's filter."""
    rows = session.scalars(
        select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.name, ApiKey.id)
    ).all()
    return [KeyChoice(id=row.id, name=row.name, admin=row.is_admin) for row in rows]

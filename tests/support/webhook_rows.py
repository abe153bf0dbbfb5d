"""Rows for webhook tests: API keys, and finished jobs whose outbox row is waiting to be sent."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from core import ids
from core.db import Database
from core.keys import CreatedKey, create_api_key
from core.tables import RUNNING, SUCCEEDED, Job, WebhookAttempt, WebhookDelivery, utcnow
from core.transitions import transition


def make_key(db: Database, name: str = "tenant", *, admin: bool = False) -> CreatedKey:
    with db.session() as session:
        return create_api_key(session, name=name, admin=admin)


@dataclass(frozen=True)
class FinishedJob:
    job_id: str
    delivery_id: str


def finish_job(
    db: Database,
    key: CreatedKey,
    webhook_url: str,
    *,
    status: str = SUCCEEDED,
    batch_id: str | None = None,
) -> FinishedJob:
    """A running job that ends in `status`; the transition writes its outbox row."""
    job_id = ids.new_id(ids.JOB)
    with db.session() as session:
        session.add(
            Job(
                id=job_id,
                api_key_id=key.id,
                batch_id=batch_id,
                status=RUNNING,
                provider="flux",
                model="flux-dev",
                action="generate",
                prompt="a lighthouse at dawn",
                webhook_url=webhook_url,
                metadata_={"sku": "A-17"},
                created_at=utcnow(),
            )
        )
        session.flush()
        values = {"result": {"image_urls": ["https://cdn.test/1.png"], "video_url": None}}
        job = transition(
            session,
            job_id,
            from_status=RUNNING,
            to_status=status,
            reason="test",
            values=values if status == SUCCEEDED else {"error_code": "upstream_rejected"},
        )
        assert job is not None
        delivery_id = session.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.job_id == job_id)
        ).one()
    return FinishedJob(job_id=job_id, delivery_id=delivery_id)


def delivery(db: Database, delivery_id: str) -> WebhookDelivery:
    with db.read_session() as session:
        row = session.get(WebhookDelivery, delivery_id)
        assert row is not None
        return row


def attempts(db: Database, delivery_id: str) -> list[WebhookAttempt]:
    with db.read_session() as session:
        return list(
            session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery_id)
                .order_by(WebhookAttempt.id)
            )
        )


def set_state(db: Database, delivery_id: str, state: str) -> None:
    with db.session() as session:
        row = session.get(WebhookDelivery, delivery_id)
        assert row is not None
        row.state = state

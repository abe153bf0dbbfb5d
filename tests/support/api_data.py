"""Rows and specs for API tests: move jobs along the state machine as a worker would."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from core.db import Database
from core.tables import QUEUED, RUNNING, Base, Job, WebhookDelivery
from core.transitions import transition


def flux_spec(n: int = 0, **extra: Any) -> dict[str, Any]:
    return {"model": "flux-2-pro", "prompt": f"a lighthouse at dawn, take {n}", **extra}


def mj_spec(**extra: Any) -> dict[str, Any]:
    return {"model": "mj-v7", "prompt": "a lighthouse at dawn", **extra}


def start_job(db: Database, job_id: str, *, upstream_task_id: str = "task-1") -> None:
    """queued → running, as the submit pump does."""
    with db.session() as session:
        moved = transition(
            session,
            job_id,
            from_status=QUEUED,
            to_status=RUNNING,
            reason="test_submitted",
            values={"upstream_task_id": upstream_task_id, "attempts": 1},
        )
        assert moved is not None, f"{job_id} was not queued"


def finish_job(
    db: Database,
    job_id: str,
    status: str,
    *,
    values: Mapping[str, Any] | None = None,
) -> None:
    """Move a job to a terminal `status` (starting it first when it is still queued)."""
    with db.read_session() as session:
        current = session.get_one(Job, job_id).status
    if current == QUEUED:
        start_job(db, job_id)
    defaults: dict[str, Any] = {}
    if status == "succeeded":
        defaults = {"result": {"image_urls": [f"https://oss.test/{job_id}.png"]}, "progress": 100}
    elif status in ("failed", "timed_out"):
        defaults = {"error_code": "upstream_rejected", "error_message": "refused"}
    with db.session() as session:
        moved = transition(
            session,
            job_id,
            from_status=RUNNING,
            to_status=status,
            reason="test_finished",
            values={**defaults, **(values or {})},
        )
        assert moved is not None, f"{job_id} was not running"


def count(db: Database, table: type[Base], **where: Any) -> int:
    with db.read_session() as session:
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return int(session.scalar(query) or 0)


def deliveries(db: Database, **where: Any) -> list[WebhookDelivery]:
    with db.read_session() as session:
        query = select(WebhookDelivery).order_by(WebhookDelivery.created_at)
        for name, value in where.items():
            query = query.where(getattr(WebhookDelivery, name) == value)
        return list(session.scalars(query))

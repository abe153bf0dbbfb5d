"""The public JSON shapes of API.md (Job, Batch, JobEvent), shared by the API and the webhooks,
so a webhook body is exactly what `GET /v1/jobs/{id}` answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from core.tables import JOB_STATUSES, Batch, Job, JobEvent


def rfc3339(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def job_view(job: Job) -> dict[str, Any]:
    error = {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None
    source = {"job_id": job.source_job_id, "index": job.source_index} if job.source_job_id else None
    return {
        "id": job.id,
        "batch_id": job.batch_id,
        "status": job.status,
        "provider": job.provider,
        "model": job.model,
        "action": job.action,
        "prompt": job.prompt,
        "params": job.params or {},
        "images": job.images or [],
        "source": source,
        "progress": job.progress or 0,
        "upstream_task_id": job.upstream_task_id,
        "result": job.result,
        "archive": _archive(job),
        "cost_points": job.cost_points,
        "estimated_points": job.estimated_points,
        "error": error,
        "attempts": job.attempts or 0,
        "polls": job.polls or 0,
        "webhook_url": job.webhook_url,
        "metadata": job.metadata_ or {},
        "priority": job.priority or 0,
        "deadline_at": rfc3339(job.deadline_at),
        "created_at": rfc3339(job.created_at),
        "submitted_at": rfc3339(job.submitted_at),
        "finished_at": rfc3339(job.finished_at),
    }


def _archive(job: Job) -> dict[str, Any] | None:
    """Where copying the job's outputs into our storage stands (None before it succeeded)."""
    if not job.archive_state:
        return None
    return {
        "state": job.archive_state,
        "attempts": job.archive_attempts or 0,
        "error": job.archive_error,
    }


def batch_view(batch: Batch, counts: Mapping[str, int], cost_points: int | None) -> dict[str, Any]:
    return {
        "id": batch.id,
        "status": batch.status,
        "total": batch.total,
        "counts": {status: int(counts.get(status, 0)) for status in JOB_STATUSES},
        "cost_points": cost_points,
        "max_points": batch.max_points,
        "webhook_url": batch.webhook_url,
        "metadata": batch.metadata_ or {},
        "created_at": rfc3339(batch.created_at),
        "finished_at": rfc3339(batch.finished_at),
    }


def event_view(event: JobEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "job_id": event.job_id,
        "at": rfc3339(event.at),
        "from": event.from_status,
        "to": event.to_status,
        "reason": event.reason,
        "detail": event.detail,
    }

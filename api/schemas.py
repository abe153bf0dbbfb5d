"""Response shapes of the HTTP API, for OpenAPI and for checking what the routes return.

The shapes themselves are built by `core.views` (webhook bodies use the same ones);
these models describe them. They allow extra keys so a field added to a view is never dropped.
Request shapes (`JobSpec`, `BatchRequest`) live with the submission logic in
`core.submission`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.errors import PROBLEM_JSON

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
BatchStatus = Literal["running", "completed", "cancelled"]


class _View(BaseModel):
    model_config = ConfigDict(extra="allow")


class SourceOut(_View):
    job_id: str
    index: int | None


class JobErrorOut(_View):
    code: str
    message: str


class ArchiveOut(_View):
    state: Literal["pending", "done", "failed", "skipped"]
    attempts: int
    error: str | None


class FileOut(_View):
    """One output copied into our storage (`GET /v1/files/{id}` serves its bytes)."""

    id: str
    index: int
    url: str
    content_type: str
    bytes: int
    sha256: str
    width: int | None
    height: int | None
    source_url: str | None
    copied_at: str | None


class JobOut(_View):
    """A job as `GET /v1/jobs/{id}` shows it."""

    id: str
    batch_id: str | None
    status: JobStatus
    provider: str
    model: str
    action: str
    prompt: str | None
    params: dict[str, Any]
    images: list[dict[str, Any]]
    source: SourceOut | None
    progress: int
    upstream_task_id: str | None
    result: dict[str, Any] | None = Field(
        description="image_urls / video_url once succeeded; `files`: our stored copies."
    )
    archive: ArchiveOut | None = Field(
        default=None, description="Copying the outputs into our storage, once succeeded."
    )
    cost_points: int | None
    estimated_points: int | None
    error: JobErrorOut | None
    attempts: int
    polls: int
    webhook_url: str | None
    metadata: dict[str, Any]
    priority: int
    deadline_at: str | None
    created_at: str
    submitted_at: str | None
    finished_at: str | None


class BatchOut(_View):
    """A batch with its job counts by status and summed cost."""

    id: str
    status: BatchStatus
    total: int
    counts: dict[str, int]
    cost_points: int | None
    max_points: int | None
    webhook_url: str | None
    metadata: dict[str, Any]
    created_at: str
    finished_at: str | None


class BatchRetryOut(BatchOut):
    """The batch after a retry, and how many jobs were queued again."""

    retried: int
    retried_job_ids: list[str]


class EventOut(_View):
    """One step of a job's history."""

    id: int
    job_id: str
    at: str
    from_: str | None = Field(alias="from")
    to: str
    reason: str
    detail: dict[str, Any] | None

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)


class JobPage(BaseModel):
    data: list[JobOut]
    next_cursor: str | None


class BatchPage(BaseModel):
    data: list[BatchOut]
    next_cursor: str | None


class EventPage(BaseModel):
    data: list[EventOut]
    next_cursor: str | None


class ModelsOut(_View):
    """The catalogue: providers, and every model with its actions and params as JSON Schema."""

    providers: list[str]
    models: list[dict[str, Any]]


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


class ProblemItem(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemItem] | None = None


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, all problem documents."""
    described = {
        400: "The body is not UTF-8 JSON",
        401: "Missing or invalid API key",
        403: "This route needs an admin key",
        404: "Not found (or owned by another key)",
        409: "Conflict with the current state",
        413: "Request too large",
        422: "Invalid request; `errors` points at each bad field",
        503: "A dependency is unreachable",
    }
    return {
        status: {
            "model": Problem,
            "description": described[status],
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }


class DryRunOut(BaseModel):
    """What `POST /v1/batches?dry_run=true` answers."""

    dry_run: bool
    jobs: int
    estimated_points: int
    fits_budget: bool
    remaining: dict[str, int | None]
    unpriced_jobs: int

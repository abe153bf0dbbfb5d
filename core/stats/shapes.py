"""The shapes of the operator statistics (`GET /v1/stats`, the dashboard), as pydantic models so
the route documents them in OpenAPI and the dashboard reads typed fields."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class _Shape(BaseModel):
    model_config = ConfigDict(frozen=True)


class StatusCount(_Shape):
    """Jobs of one provider and model in one status."""

    provider: str
    model: str
    status: str
    count: int


class JobCounts(_Shape):
    """Active jobs (queued, running) as they are now, plus the jobs that ended in the window."""

    by_status: dict[str, int]
    rows: list[StatusCount]
    oldest_queued_seconds: float | None = Field(
        description="age of the oldest queued job: a backlog (or a stopped pump) shows here"
    )


class ThroughputPoint(_Shape):
    """Jobs that reached `status` during the bucket starting at `at`."""

    at: dt.datetime
    status: str
    count: int


class Throughput(_Shape):
    bucket_seconds: int
    points: list[ThroughputPoint]


class Percentiles(_Shape):
    """Seconds; interpolated like PostgreSQL's `percentile_cont`."""

    count: int
    p50: float
    p95: float
    p99: float


class Latency(_Shape):
    """Per provider: queue wait (created → submitted) and upstream time (submitted → finished,
    of jobs that succeeded or failed upstream), over the jobs that finished in the window."""

    queue_wait: dict[str, Percentiles]
    upstream: dict[str, Percentiles]


class ModelPoints(_Shape):
    model: str
    provider: str
    points: int
    jobs: int


class DayPoints(_Shape):
    day: dt.date
    points: int


class DayModelPoints(_Shape):
    day: dt.date
    model: str
    points: int


class KeyPoints(_Shape):
    api_key_id: str
    name: str
    points: int
    jobs: int


class Points(_Shape):
    """Points (MetaChat credits) of jobs that finished in the window."""

    total: int
    by_model: list[ModelPoints]
    by_day: list[DayPoints]
    by_day_model: list[DayModelPoints]
    by_api_key: list[KeyPoints]


class ErrorCount(_Shape):
    code: str
    count: int
    sample_message: str
    last_at: dt.datetime | None


class StuckJob(_Shape):
    id: str
    api_key_id: str
    status: str
    provider: str
    model: str
    reason: str
    submitted_at: dt.datetime | None
    lease_until: dt.datetime | None
    age_seconds: float


class FailingDelivery(_Shape):
    """A webhook delivery that is retrying or gave up. `target` is the URL without its query,
    which may carry the receiver's token."""

    id: str
    api_key_id: str
    job_id: str | None
    batch_id: str | None
    event_type: str
    target: str
    state: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    due_at: dt.datetime | None
    updated_at: dt.datetime


class Webhooks(_Shape):
    failing: int = Field(description="pending deliveries with at least one failed attempt")
    dead: int = Field(description="deliveries that gave up, updated within the window")
    deliveries: list[FailingDelivery]


class RecentFailure(_Shape):
    id: str
    api_key_id: str
    batch_id: str | None
    status: str
    provider: str
    model: str
    error_code: str | None
    error_message: str | None
    finished_at: dt.datetime | None


class BatchProgress(_Shape):
    id: str
    api_key_id: str
    total: int
    counts: dict[str, int]
    cost_points: int | None
    max_points: int | None
    created_at: dt.datetime

    @property
    def done(self) -> int:
        return self.total - self.counts.get("queued", 0) - self.counts.get("running", 0)


class OpsStats(_Shape):
    """Everything an operator asks about one time window, optionally for one API key."""

    since: dt.datetime
    generated_at: dt.datetime
    api_key_id: str | None
    jobs: JobCounts
    throughput: Throughput
    latency: Latency
    points: Points
    errors: list[ErrorCount]
    stuck: list[StuckJob] = Field(description="the oldest stuck jobs, at most `limit`")
    stuck_total: int = Field(description="how many jobs are stuck in all")
    webhooks: Webhooks

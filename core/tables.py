"""The schema: every piece of pending work is a row with a due time (docs/design.md).

Migrations in `migrations` must build exactly this; a test fails when they drift.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
JOB_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT)
ACTIVE_STATUSES = (QUEUED, RUNNING)
TERMINAL_STATUSES = (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT)

BATCH_RUNNING = "running"
BATCH_COMPLETED = "completed"
BATCH_CANCELLED = "cancelled"
BATCH_STATUSES = (BATCH_RUNNING, BATCH_COMPLETED, BATCH_CANCELLED)

ARCHIVE_PENDING = "pending"
ARCHIVE_DONE = "done"
ARCHIVE_FAILED = "failed"
ARCHIVE_SKIPPED = "skipped"
ARCHIVE_STATES = (ARCHIVE_PENDING, ARCHIVE_DONE, ARCHIVE_FAILED, ARCHIVE_SKIPPED)
ARCHIVE_DUE = "archive_state = 'pending'"

DELIVERY_PENDING = "pending"
DELIVERY_SUCCEEDED = "succeeded"
DELIVERY_DEAD = "dead"
DELIVERY_STATES = (DELIVERY_PENDING, DELIVERY_SUCCEEDED, DELIVERY_DEAD)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in Python on every backend; naive UTC text on SQLite, so that
    SQL comparisons on SQLite (text) order the same way as on PostgreSQL (timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]
        return value.astimezone(dt.UTC)  # type: ignore[no-any-return]


JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSONType}


class ApiKey(Base):
    """A client's credential. Only a SHA-256 of the key is stored; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tenant: Mapped[str] = mapped_column(String(200))
    key_prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Needed in the clear to sign webhooks (HMAC); never returned or logged.
    webhook_secret: Mapped[str] = mapped_column(String(100))
    # Kept for a while after a rotation so receivers can verify with either secret.
    webhook_secret_previous: Mapped[str | None] = mapped_column(String(100))
    webhook_secret_rotated_at: Mapped[dt.datetime | None]
    max_points_total: Mapped[int | None] = mapped_column(BigInteger)
    max_points_daily: Mapped[int | None] = mapped_column(BigInteger)
    # Running budget totals (`core.budget`): the points held by every job of the key, ever,
    # and by those held on `points_day` (UTC). Pruning jobs never lowers them.
    points_committed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    points_today: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    points_day: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]

    @property
    def is_admin(self) -> bool:
        return "admin" in (self.scopes or [])


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'completed', 'cancelled')", name="status_known"),
        Index(None, "api_key_id", "created_at"),
        Index(None, "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    status: Mapped[str] = mapped_column(String(16), default=BATCH_RUNNING)
    total: Mapped[int] = mapped_column(Integer, default=0)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    max_points: Mapped[int | None] = mapped_column(BigInteger)
    # the points held by the batch's jobs (`core.budget`)
    points_committed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


# Jobs whose hold in the budget totals is not what it should be yet: their cost arrived, or
# they failed without ever reaching MetaChat. `core.budget` settles them; the index keeps
# finding them cheap however large the table grows.
POINTS_UNSETTLED = (
    "(cost_points IS NOT NULL AND cost_points <> points_held) OR (points_held <> 0 "
    "AND status = 'failed' AND upstream_task_id IS NULL "
    "AND COALESCE(error_code, '') NOT IN ('submit_uncertain', 'invalid_upstream_response'))"
)
COSTED = "cost_points IS NOT NULL"


class Job(Base):
    """One generation. `due_at` is when the next step (submit or poll) is due; a worker holds a
    row while `lease_until` is in the future."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')",
            name="status_known",
        ),
        CheckConstraint("priority BETWEEN -10 AND 10", name="priority_range"),
        # the pumps' claim: due rows of one status, oldest due first
        Index(None, "status", "due_at"),
        # a tenant's jobs by time (lists, stats)
        Index(None, "api_key_id", "created_at"),
        # a batch's jobs by status (counts, completion)
        Index(None, "batch_id", "status"),
        Index(None, "finished_at"),
        Index(None, "source_job_id"),
        # budgets: the holds still to settle, and each model's recent costs
        Index(
            "ix_jobs_points_unsettled",
            "api_key_id",
            postgresql_where=text(POINTS_UNSETTLED),
            sqlite_where=text(POINTS_UNSETTLED),
        ),
        Index(
            "ix_jobs_costed_model_finished_at",
            "model",
            "finished_at",
            postgresql_where=text(COSTED),
            sqlite_where=text(COSTED),
        ),
        # the archive pump's claim: succeeded jobs whose outputs are still to be copied
        Index(
            "ix_jobs_archive_due",
            "archive_due_at",
            postgresql_where=text(ARCHIVE_DUE),
            sqlite_where=text(ARCHIVE_DUE),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    prompt: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    images: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    source_job_id: Mapped[str | None] = mapped_column(String(32))
    source_index: Mapped[int | None] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    deadline_seconds: Mapped[float | None] = mapped_column(Float)

    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    due_at: Mapped[dt.datetime | None]
    lease_until: Mapped[dt.datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    deadline_at: Mapped[dt.datetime | None]

    upstream_task_id: Mapped[str | None] = mapped_column(String(200))
    # The submit trail: set, for a whole round at once, in a transaction committed just before
    # the round's requests go on the wire; cleared by a new submit lease. A leased queued job
    # without it never left (`core.maintenance`).
    submit_sent_at: Mapped[dt.datetime | None]
    submitted_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    progress: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cost_points: Mapped[int | None] = mapped_column(BigInteger)
    # the catalogue price when the job was accepted (null: none configured); never rewritten
    estimated_points: Mapped[int | None] = mapped_column(BigInteger)
    # what this job adds to its key's and batch's budget totals, and the UTC day it was held
    points_held: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    points_held_on: Mapped[dt.date | None] = mapped_column(Date)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    upstream_raw: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    # Copying the outputs into our storage (`worker.archive`): set to pending by the move to
    # succeeded, then done, failed (retries used up) or skipped (archiving off).
    archive_state: Mapped[str | None] = mapped_column(String(16))
    archive_due_at: Mapped[dt.datetime | None]
    archive_lease_until: Mapped[dt.datetime | None]
    archive_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    archive_error: Mapped[str | None] = mapped_column(Text)


class ResultFile(Base):
    """One output of a job copied into our storage: what `GET /v1/files/{id}` serves.

    At most one row per (job, index), so a copy replayed after a crash never adds a second."""

    __tablename__ = "result_files"
    __table_args__ = (
        UniqueConstraint("job_id", "output_index"),
        Index(None, "api_key_id", "copied_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    # the owning tenant's key, copied from the job so serving checks it without a join
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    output_index: Mapped[int] = mapped_column(Integer)
    # the object's key in the store, relative to the store's prefix
    key: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(100))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    source_url: Mapped[str | None] = mapped_column(Text)
    copied_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JobEvent(Base):
    """The audit trail: one row per status change (and per noteworthy step)."""

    __tablename__ = "job_events"
    __table_args__ = (Index(None, "job_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class WebhookDelivery(Base):
    """An outbox row: one event for one URL, written in the transaction that caused it.
    Its id is the Standard Webhooks `webhook-id`, stable across retries."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'succeeded', 'dead')", name="state_known"),
        Index(None, "state", "due_at"),
        Index(None, "api_key_id", "created_at"),
        Index(None, "job_id"),
        Index(None, "batch_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    event_type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    # the exact body bytes (as text) that are signed and sent, identical on every attempt
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DELIVERY_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[dt.datetime | None]
    lease_until: Mapped[dt.datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: the delivery log."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index(None, "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)


class IdempotencyKey(Base):
    """`Idempotency-Key` memory: the request's hash and the response first given for it."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("api_key_id", "key"),
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    key: Mapped[str] = mapped_column(String(255))
    method_path: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


metadata = Base.metadata

__all__ = [
    "ACTIVE_STATUSES",
    "JOB_STATUSES",
    "TERMINAL_STATUSES",
    "ApiKey",
    "Base",
    "Batch",
    "IdempotencyKey",
    "Job",
    "JobEvent",
    "ResultFile",
    "WebhookAttempt",
    "WebhookDelivery",
    "metadata",
    "utcnow",
]

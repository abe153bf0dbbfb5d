"""The delivery outbox in SQL: claim due rows, record attempts, redeliver, list the log.

A claim is a lease: the row stays `pending` with `lease_owner`/`lease_until` set, so a worker
that dies mid-send leaves a row that any pump claims again once the lease runs out. The row's
id never changes, which is what keeps `webhook-id` stable across retries, crashes and
redeliveries. On PostgreSQL the claim skips rows locked by a concurrent claim
(`FOR UPDATE SKIP LOCKED`); on SQLite the write transaction already excludes other writers and
the `UPDATE … WHERE` is itself the compare-and-set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, and_, insert, not_, or_, select, update
from sqlalchemy.orm import Session

from core.archive import held_for_archive
from core.tables import (
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    ApiKey,
    WebhookAttempt,
    WebhookDelivery,
)
from core.webhooks.attempts import AttemptOutcome
from core.webhooks.signing import DEFAULT_ROTATION_OVERLAP, rotation_secrets

# What an attempt log keeps of an answer, and of our own error text.
EXCERPT_CHARS = 2048
ERROR_CHARS = 500


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery leased to one pump: everything needed to send it once more."""

    id: str
    api_key_id: str
    url: str
    payload: str
    attempts: int
    secrets: tuple[str, ...]

    def __repr__(self) -> str:  # the payload is large and the secrets are secret
        return f"ClaimedDelivery(id={self.id!r}, attempts={self.attempts})"


def _due(now: dt.datetime) -> ColumnElement[bool]:
    return and_(
        WebhookDelivery.state == DELIVERY_PENDING,
        WebhookDelivery.due_at <= now,
        or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until <= now),
    )


def claim_due_deliveries(
    session: Session,
    *,
    owner: str,
    now: dt.datetime,
    lease_seconds: float,
    limit: int,
    rotation_overlap: dt.timedelta = DEFAULT_ROTATION_OVERLAP,
    archive_wait: dt.timedelta | None = None,
) -> list[ClaimedDelivery]:
    """Lease up to `limit` due pending deliveries to `owner`, oldest due first.

    With ``archive_wait``, a ``job.succeeded`` delivery waits (at most that long) while its
    job's outputs are being copied, so it goes out carrying our file URLs (`core.archive`)."""
    due = _due(now)
    if archive_wait is not None and archive_wait > dt.timedelta(0):
        due = and_(due, not_(held_for_archive(now, archive_wait)))
    candidates = (
        select(WebhookDelivery.id)
        .where(due)
        .order_by(WebhookDelivery.due_at, WebhookDelivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list(session.scalars(candidates))
    if not ids:
        return []
    claimed = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), due)
        .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=lease_seconds))
        .returning(
            WebhookDelivery.id,
            WebhookDelivery.api_key_id,
            WebhookDelivery.url,
            WebhookDelivery.payload,
            WebhookDelivery.attempts,
        )
        .execution_options(synchronize_session=False)
    ).all()
    key_ids = {row.api_key_id for row in claimed}
    keys = {
        key.id: rotation_secrets(
            key.webhook_secret,
            key.webhook_secret_previous,
            key.webhook_secret_rotated_at,
            now=now,
            overlap=rotation_overlap,
        )
        for key in session.execute(
            select(
                ApiKey.id,
                ApiKey.webhook_secret,
                ApiKey.webhook_secret_previous,
                ApiKey.webhook_secret_rotated_at,
            ).where(ApiKey.id.in_(key_ids))
        )
    }
    result = [
        ClaimedDelivery(
            id=row.id,
            api_key_id=row.api_key_id,
            url=row.url,
            payload=row.payload,
            attempts=row.attempts or 0,
            secrets=tuple(keys.get(row.api_key_id, ())),
        )
        for row in claimed
    ]
    result.sort(key=lambda delivery: ids.index(delivery.id))
    return result


def record_outcomes(
    session: Session, outcomes: Sequence[AttemptOutcome], *, owner: str, now: dt.datetime
) -> int:
    """Log every attempt and move each delivery on; returns how many rows moved.

    A failure moves the row only while `owner` still holds it (after a lost lease another pump
    owns the retry). A success moves any pending row: it was delivered, whoever sent it.
    """
    moved = 0
    for outcome in outcomes:
        result = outcome.result
        session.execute(
            insert(WebhookAttempt).values(
                delivery_id=outcome.delivery_id,
                at=result.at,
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                error=_clip(result.error, ERROR_CHARS),
                response_excerpt=_clip(result.response_excerpt, EXCERPT_CHARS),
                succeeded=outcome.succeeded,
            )
        )
        condition = [
            WebhookDelivery.id == outcome.delivery_id,
            WebhookDelivery.state == DELIVERY_PENDING,
        ]
        if not outcome.succeeded:
            condition.append(WebhookDelivery.lease_owner == owner)
        changes: dict[str, object] = {
            "state": outcome.state,
            "attempts": WebhookDelivery.attempts + 1,
            "due_at": outcome.due_at,
            "lease_owner": None,
            "lease_until": None,
            "updated_at": now,
            "last_status_code": result.status_code,
            "last_error": _clip(result.error, ERROR_CHARS),
        }
        if outcome.state == DELIVERY_SUCCEEDED:
            changes["delivered_at"] = result.at
        updated: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(WebhookDelivery)
            .where(*condition)
            .values(**changes)
            .execution_options(synchronize_session=False)
        )
        moved += updated.rowcount or 0
    return moved


def release_claims(session: Session, delivery_ids: Sequence[str], *, owner: str) -> None:
    """Hand leased rows back untouched (a pump that could not send them, e.g. shutting down)."""
    if delivery_ids:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )


def redeliver(
    session: Session, delivery_id: str, *, api_key: ApiKey, now: dt.datetime
) -> WebhookDelivery | None:
    """Queue a delivery again under the same id: pending, due now, a fresh retry schedule.

    None when there is no such delivery for this key (an admin key may redeliver any). The
    attempt log keeps every earlier attempt; `attempts` restarts for the new round.
    """
    condition = [WebhookDelivery.id == delivery_id]
    if not api_key.is_admin:
        condition.append(WebhookDelivery.api_key_id == api_key.id)
    return session.execute(
        update(WebhookDelivery)
        .where(*condition)
        .values(
            state=DELIVERY_PENDING,
            due_at=now,
            attempts=0,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
        .returning(WebhookDelivery)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).scalar_one_or_none()


@dataclass(frozen=True)
class DeliveryFilter:
    """What `GET /v1/webhooks/deliveries` may narrow by. `api_key_id` None means every key."""

    api_key_id: str | None
    job_id: str | None = None
    batch_id: str | None = None
    state: str | None = None


def list_deliveries(
    session: Session, where: DeliveryFilter, *, limit: int, before_id: str | None = None
) -> tuple[list[WebhookDelivery], str | None]:
    """Newest first; returns a page and the id to continue before (None on the last page)."""
    query = select(WebhookDelivery)
    if where.api_key_id is not None:
        query = query.where(WebhookDelivery.api_key_id == where.api_key_id)
    if where.job_id is not None:
        query = query.where(WebhookDelivery.job_id == where.job_id)
    if where.batch_id is not None:
        query = query.where(WebhookDelivery.batch_id == where.batch_id)
    if where.state is not None:
        query = query.where(WebhookDelivery.state == where.state)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    rows = list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


def attempts_of(session: Session, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
    """Each delivery's attempt log, oldest first."""
    log: dict[str, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if delivery_ids:
        query = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.id)
        )
        for attempt in session.scalars(query):
            log[attempt.delivery_id].append(attempt)
    return log


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"

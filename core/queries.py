"""Reads for the API: one job or batch as its owner sees it, and lists with keyset pagination.

Every read takes `owner_id`: the calling key's id, or None for an admin key, which sees all. A row
of another owner is simply not found (the API answers 404, never 403).

Lists page on ``(created_at, id)``, the order of the ``(api_key_id, created_at)`` index; ids are
time-sortable and break ties (a batch's jobs share one `created_at`). A cursor is opaque to
clients: base64 of the last row's sort key and the direction it was read in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.tables import Batch, Job, JobEvent

T = TypeVar("T")
Order = Literal["asc", "desc"]

# the shape of every id this service makes (`job_…`, `bat_…`): a cursor naming anything else
# was not handed out here
_ID_SHAPE = re.compile(r"[a-z]{2,8}_[0-9a-z]{1,40}")


class InvalidCursor(ValueError):
    """A cursor this service did not hand out (or one for another ordering)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class JobFilters:
    """The filters of `GET /v1/jobs` (all optional; statuses match any of them)."""

    statuses: tuple[str, ...] = ()
    model: str | None = None
    provider: str | None = None
    batch_id: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None


def encode_cursor(order: Order, created_at: dt.datetime, row_id: str) -> str:
    raw = json.dumps({"o": order, "t": created_at.isoformat(), "i": row_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: Order) -> tuple[dt.datetime, str]:
    """The sort key a cursor points after; `InvalidCursor` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        created_at = dt.datetime.fromisoformat(data["t"])
        row_id = data["i"]
        cursor_order = data["o"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidCursor("not a cursor from this API") from None
    if (
        not isinstance(row_id, str)
        or not _ID_SHAPE.fullmatch(row_id)
        or created_at.tzinfo is None
        or cursor_order != order
    ):
        raise InvalidCursor("not a cursor for this list")
    try:
        return created_at.astimezone(dt.UTC), row_id
    except OverflowError:  # an offset that moves the time out of the calendar's range
        raise InvalidCursor("not a cursor for this list") from None


def _keyset(
    query: Select[Any],
    created: InstrumentedAttribute[dt.datetime],
    ident: InstrumentedAttribute[str],
    *,
    order: Order,
    cursor: str | None,
    limit: int,
) -> Select[Any]:
    if cursor is not None:
        at, last_id = decode_cursor(cursor, order)
        if order == "desc":
            query = query.where(or_(created < at, and_(created == at, ident < last_id)))
        else:
            query = query.where(or_(created > at, and_(created == at, ident > last_id)))
    ordering = (created.desc(), ident.desc()) if order == "desc" else (created.asc(), ident.asc())
    return query.order_by(*ordering).limit(limit + 1)


def _page(rows: Sequence[Any], limit: int, order: Order) -> Page[Any]:
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return Page(items, None)
    last = items[-1]
    return Page(items, encode_cursor(order, last.created_at, last.id))


def visible_job(session: Session, job_id: str, owner_id: str | None) -> Job | None:
    job = session.get(Job, job_id)
    if job is None or (owner_id is not None and job.api_key_id != owner_id):
        return None
    return job


def visible_batch(
    session: Session, batch_id: str, owner_id: str | None, *, for_update: bool = False
) -> Batch | None:
    query = select(Batch).where(Batch.id == batch_id)
    if owner_id is not None:
        query = query.where(Batch.api_key_id == owner_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def _job_conditions(filters: JobFilters, owner_id: str | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if owner_id is not None:
        conditions.append(Job.api_key_id == owner_id)
    if filters.statuses:
        conditions.append(Job.status.in_(filters.statuses))
    if filters.model is not None:
        conditions.append(Job.model == filters.model)
    if filters.provider is not None:
        conditions.append(Job.provider == filters.provider)
    if filters.batch_id is not None:
        conditions.append(Job.batch_id == filters.batch_id)
    if filters.created_after is not None:
        conditions.append(Job.created_at > filters.created_after)
    if filters.created_before is not None:
        conditions.append(Job.created_at < filters.created_before)
    return conditions


def list_jobs(
    session: Session,
    owner_id: str | None,
    filters: JobFilters,
    *,
    limit: int,
    cursor: str | None = None,
    order: Order = "desc",
) -> Page[Job]:
    """Jobs matching `filters`, newest first by default."""
    query = select(Job).where(*_job_conditions(filters, owner_id))
    query = _keyset(query, Job.created_at, Job.id, order=order, cursor=cursor, limit=limit)
    return _page(session.scalars(query).all(), limit, order)


def list_batches(
    session: Session,
    owner_id: str | None,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
) -> Page[Batch]:
    """Batches, newest first."""
    query = select(Batch)
    if owner_id is not None:
        query = query.where(Batch.api_key_id == owner_id)
    if status is not None:
        query = query.where(Batch.status == status)
    query = _keyset(query, Batch.created_at, Batch.id, order="desc", cursor=cursor, limit=limit)
    return _page(session.scalars(query).all(), limit, "desc")


def list_job_events(
    session: Session, job_id: str, *, limit: int, after_id: int | None = None
) -> Page[JobEvent]:
    """A job's events in the order they happened; the cursor is the last event's id."""
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if after_id is not None:
        query = query.where(JobEvent.id > after_id)
    rows = session.scalars(query.order_by(JobEvent.id).limit(limit + 1)).all()
    items = list(rows[:limit])
    if len(rows) > limit and items:
        return Page(items, str(items[-1].id))
    return Page(items, None)


def batch_counts_many(
    session: Session, batch_ids: Sequence[str]
) -> dict[str, tuple[dict[str, int], int | None]]:
    """`outbox.batch_counts` for many batches in one query."""
    found: dict[str, tuple[dict[str, int], int | None]] = {
        batch_id: ({}, None) for batch_id in batch_ids
    }
    if not batch_ids:
        return found
    rows = session.execute(
        select(Job.batch_id, Job.status, func.count(), func.sum(Job.cost_points))
        .where(Job.batch_id.in_(list(batch_ids)))
        .group_by(Job.batch_id, Job.status)
    ).all()
    for batch_id, status, count, cost in rows:
        counts, total = found[str(batch_id)]
        counts[status] = int(count)
        if cost is not None:
            total = (total or 0) + int(cost)
        found[str(batch_id)] = (counts, total)
    return found

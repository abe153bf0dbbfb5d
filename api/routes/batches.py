"""Routes: submit a batch, read and list batches, list a batch's jobs, cancel, retry."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.accepting import accept, host_lookups, judge_webhooks, refusal_problem
from api.bodies import JsonBodyRoute
from api.deps import (
    CatalogueDep,
    CurrentKey,
    DbDep,
    IdempotencyKeyDep,
    SettingsDep,
    owner_scope,
    reject_unknown_query,
)
from api.errors import ProblemError
from api.listing import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    OrderParam,
    batch_job_filters,
    cursor_problem,
    is_plausible_id,
)
from api.schemas import (
    BatchOut,
    BatchPage,
    BatchRetryOut,
    BatchStatus,
    DryRunOut,
    JobPage,
    problems,
)
from core import nudge
from core.budget import estimate
from core.cancel import CancelRefused, cancel_batch, retry_batch
from core.db import Database
from core.outbox import batch_counts
from core.queries import (
    InvalidCursor,
    JobFilters,
    batch_counts_many,
    list_batches,
    list_jobs,
    visible_batch,
)
from core.settings import Settings
from core.submission import (
    BatchRequest,
    SubmissionRefused,
    WebhookVerdicts,
    check_batch,
    create_batch,
    webhook_urls,
)
from core.tables import QUEUED, ApiKey, Batch, utcnow
from core.views import batch_view, job_view
from metachat import Catalogue

router = APIRouter(
    prefix="/v1",
    tags=["batches"],
    dependencies=[Depends(reject_unknown_query)],
    route_class=JsonBodyRoute,
)

BatchId = Annotated[str, Path(description="A batch id (`bat_…`).")]


def _visible(
    session: Session, batch_id: str, owner_id: str | None, *, for_update: bool = False
) -> Batch:
    batch = (
        visible_batch(session, batch_id, owner_id, for_update=for_update)
        if is_plausible_id(batch_id)
        else None
    )
    if batch is None:
        raise ProblemError(404, "Not Found", "no such batch")
    return batch


def _view(session: Session, batch: Batch) -> dict[str, Any]:
    counts, cost = batch_counts(session, batch.id)
    return batch_view(batch, counts, cost)


@router.post(
    "/batches",
    status_code=202,
    response_model=BatchOut,
    responses={
        200: {"model": DryRunOut, "description": "The estimate of a dry run"},
        **problems(400, 401, 404, 409, 413, 422),
    },
    summary="Submit a batch",
)
async def submit_batch(
    request: BatchRequest,
    key: CurrentKey,
    db: DbDep,
    settings: SettingsDep,
    catalogue: CatalogueDep,
    idempotency_key: IdempotencyKeyDep,
    http_request: Request,
    response: Response,
    background: BackgroundTasks,
    dry_run: Annotated[
        bool,
        Query(description="Validate and estimate the cost against the budgets; create nothing."),
    ] = False,
) -> dict[str, Any]:
    """Validate every spec (with `defaults` merged in) and queue them all, or nothing: one bad
    spec answers 422 naming its index, e.g. `["jobs", 17, "params", "aspect"]`. Jobs without a
    `webhook_url` get the batch's, and the batch gets `batch.completed`.

    With `dry_run=true` the answer is 200 `{dry_run, jobs, estimated_points, fits_budget,
    remaining, unpriced_jobs}` and nothing is stored."""
    if len(request.jobs) > settings.max_batch_jobs:
        # before any lookup: a batch refused for its size costs no DNS
        raise ProblemError(
            413,
            "Batch too large",
            f"a batch may hold at most {settings.max_batch_jobs} jobs, got {len(request.jobs)}",
        )
    verdicts = await judge_webhooks(
        webhook_urls(request.jobs, request.defaults, request.webhook_url),
        settings=settings,
        lookups=host_lookups(http_request),
    )
    if dry_run:
        dry_run_now = functools.partial(_dry_run, request, key, db, settings, catalogue, verdicts)
        estimate_answer = await anyio.to_thread.run_sync(dry_run_now)
        return estimate_answer  # type: ignore[return-value]

    def create(session: Session) -> tuple[int, dict[str, Any]]:
        batch = create_batch(
            session,
            catalogue,
            request,
            api_key_id=key.id,
            owner_id=owner_scope(key),
            webhook_verdicts=verdicts,
            max_jobs=settings.max_batch_jobs,
            now=utcnow(),
        )
        return 202, batch_view(batch, {QUEUED: batch.total}, None)

    return await accept(
        db=db,
        settings=settings,
        key=key,
        idempotency_key=idempotency_key,
        method_path="POST /v1/batches",
        body=lambda: request.model_dump(mode="json", exclude_unset=True),
        create=create,
        response=response,
        background=background,
    )


class _PricedRow:
    """A validated job row as the budget estimate reads it."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.model: str = row["model"]
        self.action: str = row["action"]
        self.price_points: int | None = row["estimated_points"]


def _dry_run(
    request: BatchRequest,
    key: ApiKey,
    db: Database,
    settings: Settings,
    catalogue: Catalogue,
    webhook_verdicts: WebhookVerdicts,
) -> JSONResponse:
    with db.read_session() as session:
        try:
            rows = check_batch(
                session,
                catalogue,
                request,
                batch_id=None,
                api_key_id=key.id,
                owner_id=owner_scope(key),
                webhook_verdicts=webhook_verdicts,
                max_jobs=settings.max_batch_jobs,
                now=utcnow(),
            )
        except SubmissionRefused as exc:
            raise refusal_problem(exc) from None
        verdict = estimate(
            session,
            key,
            [_PricedRow(row) for row in rows],
            max_points=request.max_points,
            catalogue=catalogue,
        )
    body = DryRunOut(dry_run=True, jobs=len(rows), **verdict.as_json())
    return JSONResponse(body.model_dump(), status_code=200)


@router.get(
    "/batches", response_model=BatchPage, responses=problems(401, 422), summary="List batches"
)
def get_batches(
    key: CurrentKey,
    db: DbDep,
    status: Annotated[BatchStatus | None, Query()] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The caller's batches (an admin's: everyone's), newest first."""
    try:
        with db.read_session() as session:
            page = list_batches(
                session, owner_scope(key), limit=limit, cursor=cursor, status=status
            )
            counts = batch_counts_many(session, [batch.id for batch in page.items])
            data = [batch_view(batch, *counts[batch.id]) for batch in page.items]
    except InvalidCursor as exc:
        raise cursor_problem(exc) from None
    return {"data": data, "next_cursor": page.next_cursor}


@router.get(
    "/batches/{batch_id}",
    response_model=BatchOut,
    responses=problems(401, 404),
    summary="Get a batch",
)
def get_batch(batch_id: BatchId, key: CurrentKey, db: DbDep) -> dict[str, Any]:
    with db.read_session() as session:
        return _view(session, _visible(session, batch_id, owner_scope(key)))


@router.get(
    "/batches/{batch_id}/jobs",
    response_model=JobPage,
    responses=problems(401, 404, 422),
    summary="List a batch's jobs",
)
def get_batch_jobs(
    batch_id: BatchId,
    key: CurrentKey,
    db: DbDep,
    filters: Annotated[JobFilters, Depends(batch_job_filters)],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    order: OrderParam = "asc",
) -> dict[str, Any]:
    """The batch's jobs in submission order unless `order=desc`; same filters as `/v1/jobs`."""
    try:
        with db.read_session() as session:
            batch = _visible(session, batch_id, owner_scope(key))
            scoped = replace(filters, batch_id=batch.id)
            page = list_jobs(session, None, scoped, limit=limit, cursor=cursor, order=order)
            data = [job_view(job) for job in page.items]
    except InvalidCursor as exc:
        raise cursor_problem(exc) from None
    return {"data": data, "next_cursor": page.next_cursor}


@router.post(
    "/batches/{batch_id}/cancel",
    response_model=BatchOut,
    responses=problems(401, 404, 409),
    summary="Cancel a batch",
)
def cancel(
    batch_id: BatchId,
    key: CurrentKey,
    db: DbDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Cancel every queued job of the batch and mark it cancelled; running jobs finish."""
    try:
        with db.session() as session:
            batch = _visible(session, batch_id, owner_scope(key), for_update=True)
            cancel_batch(session, batch)
            view = _view(session, batch)
    except CancelRefused as exc:
        raise ProblemError(409, "Batch not running", str(exc)) from None
    background.add_task(nudge.nudge, settings.broker_url, nudge.DELIVER_TICK)
    return view


@router.post(
    "/batches/{batch_id}/retry",
    status_code=202,
    response_model=BatchRetryOut,
    responses=problems(401, 404, 409),
    summary="Retry a batch's failures",
)
def retry(
    batch_id: BatchId,
    key: CurrentKey,
    db: DbDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Queue a new job in the batch for each failed or timed-out job not retried before; the
    old jobs stay as they were. The batch runs again. A cancelled batch: 409."""
    try:
        with db.session() as session:
            batch = _visible(session, batch_id, owner_scope(key), for_update=True)
            new_ids = retry_batch(session, batch)
            view = _view(session, batch)
    except CancelRefused as exc:
        raise ProblemError(409, "Batch cancelled", str(exc)) from None
    if new_ids:
        background.add_task(nudge.nudge, settings.broker_url, nudge.SUBMIT_TICK)
    return {**view, "retried": len(new_ids), "retried_job_ids": new_ids}

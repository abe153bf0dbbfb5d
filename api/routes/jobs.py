"""Routes: submit one job, read it, list jobs, cancel one, read its events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request, Response
from sqlalchemy.orm import Session

from api.accepting import accept, host_lookups, judge_webhooks
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
    cursor_problem,
    is_plausible_id,
    job_filters,
)
from api.schemas import EventPage, JobOut, JobPage, problems
from core import nudge
from core.cancel import CancelRefused, cancel_job
from core.queries import InvalidCursor, JobFilters, list_job_events, list_jobs, visible_job
from core.submission import JobSpec, create_job, webhook_urls
from core.tables import Job, utcnow
from core.views import event_view, job_view

router = APIRouter(
    prefix="/v1",
    tags=["jobs"],
    dependencies=[Depends(reject_unknown_query)],
    route_class=JsonBodyRoute,
)

JobId = Annotated[str, Path(description="A job id (`job_…`).")]


def not_found(what: str = "job") -> ProblemError:
    return ProblemError(404, "Not Found", f"no such {what}")


def _visible(session: Session, job_id: str, owner_id: str | None) -> Job:
    job = visible_job(session, job_id, owner_id) if is_plausible_id(job_id) else None
    if job is None:
        raise not_found()
    return job


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    responses=problems(400, 401, 404, 409, 413, 422),
    summary="Submit one job",
)
async def submit_job(
    spec: JobSpec,
    key: CurrentKey,
    db: DbDep,
    settings: SettingsDep,
    catalogue: CatalogueDep,
    idempotency_key: IdempotencyKeyDep,
    request: Request,
    response: Response,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Validate the spec against the catalogue and queue it (202). A Midjourney follow-up names
    its `source` job, which must have succeeded (409 otherwise)."""
    verdicts = await judge_webhooks(
        webhook_urls([spec]), settings=settings, lookups=host_lookups(request)
    )

    def create(session: Session) -> tuple[int, dict[str, Any]]:
        job = create_job(
            session,
            catalogue,
            spec,
            api_key_id=key.id,
            owner_id=owner_scope(key),
            webhook_verdicts=verdicts,
            now=utcnow(),
        )
        return 202, job_view(job)

    return await accept(
        db=db,
        settings=settings,
        key=key,
        idempotency_key=idempotency_key,
        method_path="POST /v1/jobs",
        body=lambda: spec.model_dump(mode="json", exclude_unset=True),
        create=create,
        response=response,
        background=background,
    )


@router.get("/jobs", response_model=JobPage, responses=problems(401, 422), summary="List jobs")
def get_jobs(
    key: CurrentKey,
    db: DbDep,
    filters: Annotated[JobFilters, Depends(job_filters)],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    order: OrderParam = "desc",
) -> dict[str, Any]:
    """The caller's jobs (an admin's: everyone's), newest first unless `order=asc`."""
    try:
        with db.read_session() as session:
            page = list_jobs(
                session, owner_scope(key), filters, limit=limit, cursor=cursor, order=order
            )
            data = [job_view(job) for job in page.items]
    except InvalidCursor as exc:
        raise cursor_problem(exc) from None
    return {"data": data, "next_cursor": page.next_cursor}


@router.get(
    "/jobs/{job_id}", response_model=JobOut, responses=problems(401, 404), summary="Get a job"
)
def get_job(job_id: JobId, key: CurrentKey, db: DbDep) -> dict[str, Any]:
    with db.read_session() as session:
        return job_view(_visible(session, job_id, owner_scope(key)))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses=problems(401, 404, 409),
    summary="Cancel a job",
)
def cancel(
    job_id: JobId,
    key: CurrentKey,
    db: DbDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """A queued job is cancelled before anything is sent. A running one is cancelled locally:
    MetaChat cannot stop a task, so its cost may still be charged. Finished jobs: 409."""
    try:
        with db.session() as session:
            _visible(session, job_id, owner_scope(key))
            view = job_view(cancel_job(session, job_id))
    except CancelRefused as exc:
        raise ProblemError(409, "Job already finished", str(exc)) from None
    if view["webhook_url"]:
        background.add_task(nudge.nudge, settings.broker_url, nudge.DELIVER_TICK)
    return view


@router.get(
    "/jobs/{job_id}/events",
    response_model=EventPage,
    responses=problems(401, 404, 422),
    summary="A job's history",
)
def get_job_events(
    job_id: JobId,
    key: CurrentKey,
    db: DbDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=18, pattern=r"^[0-9]+$")] = None,
) -> dict[str, Any]:
    """Every status change (and noteworthy step) of the job, oldest first."""
    with db.read_session() as session:
        _visible(session, job_id, owner_scope(key))
        page = list_job_events(
            session, job_id, limit=limit, after_id=int(cursor) if cursor else None
        )
        data = [event_view(event) for event in page.items]
    return {"data": data, "next_cursor": page.next_cursor}

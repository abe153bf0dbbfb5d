"""Routes: `GET /v1/stats`, what an operator asks (admin keys only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import AdminKey, DbDep, reject_unknown_query
from api.errors import ProblemError
from api.schemas import problems
from core.stats import BadSince, OpsStats, collect_stats, parse_since
from core.tables import utcnow

MAX_BUCKETS = 10_000

router = APIRouter(tags=["operations"], dependencies=[Depends(reject_unknown_query)])


@router.get(
    "/v1/stats",
    response_model=OpsStats,
    responses=problems(401, 403, 422),
    summary="Counts, throughput, latency, points, errors, stuck jobs and failing webhooks",
)
def get_stats(
    db: DbDep,
    _admin: AdminKey,
    since: Annotated[
        str | None,
        Query(description="Window start: RFC 3339 time or a span back from now (90m, 24h, 7d)"),
    ] = None,
    api_key_id: Annotated[str | None, Query(description="Only this API key's jobs")] = None,
    bucket_seconds: Annotated[
        int, Query(ge=10, le=86_400, description="Width of a throughput bucket")
    ] = 60,
    limit: Annotated[
        int, Query(ge=1, le=500, description="Most stuck jobs and failing webhooks listed")
    ] = 50,
) -> OpsStats:
    now = utcnow()
    try:
        start = parse_since(since, now=now)
    except BadSince as exc:
        raise ProblemError(
            422, "Invalid request", "bad since", errors=[(("query", "since"), f"expected {exc}")]
        ) from None
    if (now - start).total_seconds() / bucket_seconds > MAX_BUCKETS:
        raise ProblemError(
            422,
            "Invalid request",
            "too many throughput buckets",
            errors=[(("query", "bucket_seconds"), f"at most {MAX_BUCKETS} buckets per window")],
        )
    with db.read_session() as session:
        return collect_stats(
            session,
            since=start,
            api_key_id=api_key_id,
            now=now,
            bucket_seconds=bucket_seconds,
            limit=limit,
        )

"""Query parameters shared by the list routes: filters, `limit`, `cursor`, `order`."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from typing import Annotated, Final, Literal

from fastapi import Depends, Query
from pydantic import AfterValidator, BeforeValidator, Field

from api.errors import ProblemError
from api.schemas import JobStatus
from core.queries import InvalidCursor, JobFilters
from core.submission import text_problem
from metachat import Provider

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
# ids are `job_…` / `bat_…` / `key_…` in Crockford base32; anything else cannot exist
ID_PATTERN: Final = re.compile(r"[a-z]{2,8}_[0-9a-z]{1,40}")


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


QueryText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    Query(max_length=1000, description="`next_cursor` of the previous page."),
]


def _rfc3339_only(value: object) -> object:
    # pydantic would also read "0.5" as a Unix timestamp; the API speaks RFC 3339 only.
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


Timestamp = Annotated[dt.datetime, BeforeValidator(_rfc3339_only)]


def is_plausible_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def _as_utc(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except OverflowError:
        raise ProblemError(
            422,
            "Invalid request",
            "the request failed validation",
            errors=[(("query", name), "is out of range")],
        ) from None


def batch_job_filters(
    status: Annotated[
        list[JobStatus] | None, Query(description="Any of these statuses (repeatable).")
    ] = None,
    model: Annotated[QueryText | None, Query()] = None,
    provider: Annotated[Provider | None, Query()] = None,
    created_after: Annotated[
        Timestamp | None, Query(description="RFC 3339; without an offset, UTC.")
    ] = None,
    created_before: Annotated[
        Timestamp | None, Query(description="RFC 3339; without an offset, UTC.")
    ] = None,
) -> JobFilters:
    """The filters of `GET /v1/batches/{id}/jobs` (the batch is in the path)."""
    return JobFilters(
        statuses=tuple(status or ()),
        model=model,
        provider=provider,
        created_after=_as_utc(created_after, "created_after"),
        created_before=_as_utc(created_before, "created_before"),
    )


def job_filters(
    filters: Annotated[JobFilters, Depends(batch_job_filters)],
    batch_id: Annotated[QueryText | None, Query()] = None,
) -> JobFilters:
    """The filters of `GET /v1/jobs`: those of a batch's jobs plus `batch_id`."""
    return replace(filters, batch_id=batch_id)


def cursor_problem(exc: InvalidCursor) -> ProblemError:
    return ProblemError(
        422,
        "Invalid request",
        "the cursor is not valid here",
        errors=[(("query", "cursor"), str(exc))],
    )


OrderParam = Annotated[Literal["asc", "desc"], Query(description="By creation time.")]

"""Accepting work: job specs checked against the catalogue, then jobs and batches stored in bulk.

A spec passes two gates. Its JSON shape (`JobSpec`, `BatchRequest`) is checked by pydantic; its
meaning (model, action, params, images, source) by the catalogue in `metachat`. Either
gate refuses with `(loc, msg)` pairs; for a batch every loc starts with ``("jobs", index)``.
Nothing is written unless every spec passes: the caller's transaction holds all the inserts.

Webhook URLs are judged before that transaction opens (`judge_webhook_urls`), because judging one
means a DNS lookup, and a lookup must not run while the transaction holds locks (on SQLite, the
one write lock of the whole database). The transaction then only reads the verdicts.

Rows go in with one Core ``insert()`` and a list of parameter dicts (executemany: psycopg
pipelines it, so there is no round trip per row and no ORM object per row), and their first
events are copied by the database itself with one INSERT … SELECT.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictInt, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import ColumnElement, String, insert, literal, null, select
from sqlalchemy.orm import Session

from core import ids
from core.tables import (
    BATCH_RUNNING,
    QUEUED,
    SUCCEEDED,
    Batch,
    Job,
    UTCDateTime,
    metadata,
)
from core.webhooks.ssrf import DestinationRefused, Lookup, check_destination, resolve
from metachat import Catalogue, CatalogueOverrides, SpecError, build_catalogue

Loc = tuple[str | int, ...]

MAX_METADATA_BYTES: Final = 16 * 1024
MAX_JSON_DEPTH: Final = 32
MAX_URL_CHARS: Final = 2048
MAX_DEADLINE_SECONDS: Final = 7 * 24 * 3600.0
MAX_PROMPT_CHARS: Final = 20_000  # the catalogue's per-model limits are lower; this caps the body
MAX_ERRORS_SHOWN: Final = 100
# Python writes floats this large with an exponent (1e+16); PostgreSQL's jsonb keeps numbers as
# decimals and gives them back as long integers (1e308 as 309 digits), so they cannot round-trip.
FLOAT_KEPT_BELOW: Final = 1e16
SUBMITTED_REASON: Final = "submitted"


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored as text on every backend, or None when it can."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def float_problem(value: float) -> str | None:
    """Why a JSON number read as a float would not come back from the database as it was sent
    (docs/api.md, "Job spec"), or None when it would."""
    if not math.isfinite(value):
        return "must be a finite number"
    if abs(value) >= FLOAT_KEPT_BELOW:
        return (
            "a number with a fraction or exponent must be below 1e16 in size to be kept as sent; "
            "send it as an integer or a string"
        )
    if value == 0 and math.copysign(1.0, value) < 0:
        return "-0.0 would be kept as 0.0; send 0"
    return None


def json_problem(value: Any) -> tuple[Loc, str] | None:
    """The first place in a JSON tree that cannot be stored (bad text, too deep), if any."""
    stack: list[tuple[Any, Loc]] = [(value, ())]
    while stack:
        node, loc = stack.pop()
        if len(loc) > MAX_JSON_DEPTH:
            return loc, f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(node, str):
            problem = text_problem(node)
            if problem:
                return loc, problem
        elif isinstance(node, float) and (problem := float_problem(node)):
            return loc, problem
        elif isinstance(node, dict):
            for key, item in node.items():
                problem = text_problem(str(key))
                if problem:
                    return (*loc, str(key)), f"key {problem}"
                stack.append((item, (*loc, str(key))))
        elif isinstance(node, list):
            stack.extend((item, (*loc, index)) for index, item in enumerate(node))
    return None


def _stored_text(value: str | None) -> str | None:
    if value is not None and (problem := text_problem(value)):
        raise PydanticCustomError("stored_text", problem)
    return value


def _stored_json(value: Any) -> Any:
    found = json_problem(value)
    if found:
        loc, msg = found
        where = ".".join(map(str, loc))
        raise PydanticCustomError("stored_json", f"{where}: {msg}" if loc else msg)
    return value


# Strict: `true` is not 1 and `"5"` is not 5 (pydantic's lax mode would read them so).
Priority = Annotated[StrictInt, Field(ge=-10, le=10, description="Higher first within a tenant.")]
DeadlineSeconds = Annotated[
    float,
    Strict(),
    Field(gt=0, le=MAX_DEADLINE_SECONDS, allow_inf_nan=False, description="Seconds to finish."),
]


class SourceRef(BaseModel):
    """The earlier job a Midjourney follow-up works on, and which tile (1..4) when it needs one."""

    model_config = ConfigDict(extra="forbid")

    job_id: Annotated[str, Field(min_length=1, max_length=64)]
    index: StrictInt | None = None

    check_text = field_validator("job_id")(_stored_text)


class _SpecFields(BaseModel):
    """Fields shared by a job spec and a batch's `defaults`."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    action: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | None = None
    params: dict[str, Any] | None = None
    images: Annotated[list[dict[str, Any]], Field(max_length=16)] | None = None
    webhook_url: Annotated[str, Field(max_length=MAX_URL_CHARS)] | None = None
    metadata: dict[str, Any] | None = Field(
        default=None, description="Free JSON returned untouched; at most 16 KiB serialized."
    )
    priority: Priority = 0
    deadline_seconds: DeadlineSeconds | None = None

    check_text = field_validator("model", "action", "prompt", "webhook_url")(_stored_text)
    check_json = field_validator("params", "images", "metadata")(_stored_json)


class JobSpec(_SpecFields):
    """What a client submits for one job (docs/api.md, "Job spec")."""

    source: SourceRef | None = None


class SpecDefaults(_SpecFields):
    """Fields merged into every spec of a batch that does not set them (params and metadata
    merge key by key, the spec's keys winning)."""


class BatchRequest(BaseModel):
    """`POST /v1/batches`: many specs accepted or refused together."""

    model_config = ConfigDict(extra="forbid")

    jobs: Annotated[list[JobSpec], Field(min_length=1)]
    defaults: SpecDefaults | None = None
    webhook_url: Annotated[str, Field(max_length=MAX_URL_CHARS)] | None = None
    metadata: dict[str, Any] | None = None
    max_points: Annotated[StrictInt, Field(ge=0, le=2**62)] | None = None

    check_text = field_validator("webhook_url")(_stored_text)
    check_json = field_validator("metadata")(_stored_json)


class SubmissionRefused(Exception):
    """Nothing was created. `status` is the HTTP status the refusal deserves (413, 422 for bad
    specs, 404 for a source job the caller cannot see, 409 for one that has not succeeded)."""

    def __init__(
        self, status: int, title: str, detail: str, errors: Sequence[tuple[Loc, str]] = ()
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors)


@functools.lru_cache(maxsize=8)
def _catalogue_from_json(overrides_json: str) -> Catalogue:
    return build_catalogue(CatalogueOverrides.model_validate_json(overrides_json))


def get_catalogue(overrides: Mapping[str, Any] | None = None) -> Catalogue:
    """The catalogue with the operator's overrides (`METACHAT_CATALOGUE_OVERRIDES`), cached."""
    return _catalogue_from_json(json.dumps(dict(overrides or {}), sort_keys=True))


WebhookVerdicts = Mapping[str, str | None]


def webhook_url_problem(url: str, *, allow_private: bool, lookup: Lookup = resolve) -> str | None:
    """Why `url` cannot receive webhooks, or None: http(s) only, no credentials, and no private,
    loopback or link-local destination unless the operator allows them
    (`WEBHOOK_ALLOW_PRIVATE`). The sender checks again before every attempt."""
    try:
        check_destination(url, allow_private, lookup=lookup)
    except DestinationRefused as exc:
        return str(exc) or "is not an allowed webhook destination"
    return None


def webhook_urls(
    specs: Iterable[JobSpec],
    defaults: SpecDefaults | None = None,
    batch_webhook_url: str | None = None,
) -> set[str]:
    """Every webhook URL a request names: its specs', its defaults' and its batch's."""
    urls = {spec.webhook_url for spec in specs if spec.webhook_url is not None}
    for url in (defaults.webhook_url if defaults is not None else None, batch_webhook_url):
        if url is not None:
            urls.add(url)
    return urls


def judge_webhook_urls(
    urls: Iterable[str], *, allow_private: bool, lookup: Lookup = resolve
) -> dict[str, str | None]:
    """Each URL's `webhook_url_problem` (None: accepted). Blocks on DNS: call it before the
    write transaction, and from a thread in async code; pass `HostLookups.addresses` as
    `lookup` so a host named by many URLs is looked up once."""
    return {
        url: webhook_url_problem(url, allow_private=allow_private, lookup=lookup) for url in urls
    }


def metadata_problem(metadata: Mapping[str, Any] | None) -> str | None:
    if metadata is None:
        return None
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        return f"must be at most {MAX_METADATA_BYTES} bytes as JSON, got {size}"
    return None


def _with_defaults(
    spec: JobSpec, defaults: SpecDefaults | None, fallback_webhook: str | None
) -> JobSpec:
    """`spec` with a batch's defaults filled in; params and metadata merge key by key."""
    update: dict[str, Any] = {}
    for name in defaults.model_fields_set if defaults is not None else ():
        default, mine = getattr(defaults, name), getattr(spec, name)
        if name in ("params", "metadata") and isinstance(default, dict):
            update[name] = {**default, **(mine or {})}
        elif name not in spec.model_fields_set or mine is None:
            update[name] = default
    if update.get("webhook_url", spec.webhook_url) is None and fallback_webhook is not None:
        update["webhook_url"] = fallback_webhook
    return spec.model_copy(update=update) if update else spec


def _visible_sources(
    session: Session, source_ids: Iterable[str], owner_id: str | None
) -> dict[str, Job]:
    wanted = sorted(set(source_ids))
    if not wanted:
        return {}
    query = select(Job).where(Job.id.in_(wanted))
    if owner_id is not None:
        query = query.where(Job.api_key_id == owner_id)
    return {job.id: job for job in session.scalars(query)}


def _refusal(errors: list[tuple[int, Loc, str]]) -> SubmissionRefused:
    # A malformed spec outranks a missing source, which outranks one that is not ready yet.
    status = min(errors, key=lambda item: {422: 0, 404: 1, 409: 2}[item[0]])[0]
    shown = [(loc, msg) for _, loc, msg in errors[:MAX_ERRORS_SHOWN]]
    more = len(errors) - len(shown)
    detail = {
        422: "the job spec is invalid",
        404: "a source job does not exist",
        409: "a source job has not succeeded yet",
    }[status]
    if more > 0:
        detail += f" ({more} more errors not shown)"
    title = {422: "Invalid job spec", 404: "Source job not found", 409: "Source job not ready"}
    return SubmissionRefused(status, title[status], detail, shown)


def build_job_rows(
    session: Session,
    catalogue: Catalogue,
    specs: Sequence[JobSpec],
    *,
    api_key_id: str,
    owner_id: str | None,
    batch_id: str | None,
    defaults: SpecDefaults | None = None,
    batch_webhook_url: str | None = None,
    webhook_verdicts: WebhookVerdicts,
    now: dt.datetime,
    loc_prefix: Callable[[int], Loc] = lambda _index: (),
) -> list[dict[str, Any]]:
    """Check every spec and return the `jobs` rows to insert; `SubmissionRefused` lists every
    fault. `owner_id` limits which source jobs are visible (None: an admin sees all).
    `webhook_verdicts` holds `judge_webhook_urls` of every URL the specs may end up with."""
    resolved = [_with_defaults(spec, defaults, batch_webhook_url) for spec in specs]
    sources = _visible_sources(
        session, (r.source.job_id for r in resolved if r.source is not None), owner_id
    )
    job_ids = ids.new_ids(ids.JOB, len(resolved))
    errors: list[tuple[int, Loc, str]] = []
    rows: list[dict[str, Any]] = []
    for index, item in enumerate(resolved):
        prefix = loc_prefix(index)
        source_job = sources.get(item.source.job_id) if item.source is not None else None
        if item.source is not None:
            if source_job is None:
                errors.append((404, (*prefix, "source", "job_id"), "no such job"))
                continue
            if source_job.status != SUCCEEDED:
                errors.append(
                    (
                        409,
                        (*prefix, "source", "job_id"),
                        f"the source job is {source_job.status}; it must have succeeded",
                    )
                )
                continue
        try:
            checked = catalogue.validate(
                model=item.model,
                action=item.action,
                prompt=item.prompt,
                params=item.params,
                images=item.images,
                has_source=item.source is not None,
                source_index=item.source.index if item.source is not None else None,
                source_model=source_job.model if source_job is not None else None,
                source_action=source_job.action if source_job is not None else None,
            )
        except SpecError as exc:
            errors.extend((422, (*prefix, *loc), msg) for loc, msg in exc.errors)
            continue
        if item.webhook_url is not None:
            problem = webhook_verdicts[item.webhook_url]
            if problem:
                errors.append((422, (*prefix, "webhook_url"), problem))
                continue
        problem = metadata_problem(item.metadata)
        if problem:
            errors.append((422, (*prefix, "metadata"), problem))
            continue
        rows.append(
            {
                "id": job_ids[index],
                "api_key_id": api_key_id,
                "batch_id": batch_id,
                "status": QUEUED,
                "provider": checked.provider,
                "model": checked.model,
                "action": checked.action,
                "prompt": checked.prompt,
                "params": checked.params,
                "images": checked.images,
                "source_job_id": source_job.id if source_job is not None else None,
                "source_index": checked.source_index,
                "webhook_url": item.webhook_url,
                # SQL NULL, not JSON null, when absent
                "metadata": item.metadata if item.metadata is not None else null(),
                "priority": item.priority,
                "deadline_seconds": item.deadline_seconds,
                "estimated_points": checked.price_points,
                "created_at": now,
                "updated_at": now,
                "due_at": now,
                "attempts": 0,
                "polls": 0,
                "progress": 0,
            }
        )
    if errors:
        raise _refusal(errors)
    return rows


def insert_job_rows(
    session: Session,
    rows: Sequence[dict[str, Any]],
    *,
    now: dt.datetime,
    reason: str = SUBMITTED_REASON,
    details: Sequence[dict[str, Any] | None] | None = None,
    only_new: ColumnElement[bool] | None = None,
) -> None:
    """Insert prepared `jobs` rows and the first `job_events` row of each, in bulk.

    `only_new` is a condition matching exactly the rows just inserted (`Job.batch_id == <the
    new batch>`): the database then writes the events itself with one INSERT … SELECT.
    """
    if not rows:
        return
    session.execute(insert(metadata.tables["jobs"]), list(rows))
    events = metadata.tables["job_events"]
    if only_new is not None and details is None:
        picked = select(
            Job.id,
            literal(now, UTCDateTime()),
            literal(None, String()),
            literal(QUEUED),
            literal(reason),
        ).where(only_new)
        session.execute(
            insert(events).from_select(
                ["job_id", "at", "from_status", "to_status", "reason"], picked
            )
        )
        return
    session.execute(
        insert(events),
        [
            {
                "job_id": row["id"],
                "at": now,
                "from_status": None,
                "to_status": QUEUED,
                "reason": reason,
                "detail": details[n] if details is not None else null(),
            }
            for n, row in enumerate(rows)
        ],
    )


def create_job(
    session: Session,
    catalogue: Catalogue,
    spec: JobSpec,
    *,
    api_key_id: str,
    owner_id: str | None,
    webhook_verdicts: WebhookVerdicts,
    now: dt.datetime,
) -> Job:
    """Store one queued job (`SubmissionRefused` when the spec is refused)."""
    [row] = build_job_rows(
        session,
        catalogue,
        [spec],
        api_key_id=api_key_id,
        owner_id=owner_id,
        batch_id=None,
        webhook_verdicts=webhook_verdicts,
        now=now,
    )
    insert_job_rows(session, [row], now=now, only_new=Job.id == row["id"])
    return session.get_one(Job, row["id"])


def check_batch(
    session: Session,
    catalogue: Catalogue,
    request: BatchRequest,
    *,
    batch_id: str | None,
    api_key_id: str,
    owner_id: str | None,
    webhook_verdicts: WebhookVerdicts,
    max_jobs: int,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """Validate a whole batch and return its job rows (not inserted); `SubmissionRefused` names
    every bad field. Shared by `create_batch` and the dry run, so both judge alike."""
    if len(request.jobs) > max_jobs:
        raise SubmissionRefused(
            413,
            "Batch too large",
            f"a batch may hold at most {max_jobs} jobs, got {len(request.jobs)}",
        )
    errors: list[tuple[Loc, str]] = []
    if request.webhook_url is not None:
        problem = webhook_verdicts[request.webhook_url]
        if problem:
            errors.append((("webhook_url",), problem))
    problem = metadata_problem(request.metadata)
    if problem:
        errors.append((("metadata",), problem))
    if errors:
        raise SubmissionRefused(422, "Invalid batch", "the batch is invalid", errors)
    return build_job_rows(
        session,
        catalogue,
        request.jobs,
        api_key_id=api_key_id,
        owner_id=owner_id,
        batch_id=batch_id,
        defaults=request.defaults,
        batch_webhook_url=request.webhook_url,
        webhook_verdicts=webhook_verdicts,
        now=now,
        loc_prefix=lambda index: ("jobs", index),
    )


def create_batch(
    session: Session,
    catalogue: Catalogue,
    request: BatchRequest,
    *,
    api_key_id: str,
    owner_id: str | None,
    webhook_verdicts: WebhookVerdicts,
    max_jobs: int,
    now: dt.datetime,
) -> Batch:
    """Store a batch and all its queued jobs, or nothing (`SubmissionRefused`)."""
    batch_id = ids.new_id(ids.BATCH)
    rows = check_batch(
        session,
        catalogue,
        request,
        batch_id=batch_id,
        api_key_id=api_key_id,
        owner_id=owner_id,
        webhook_verdicts=webhook_verdicts,
        max_jobs=max_jobs,
        now=now,
    )
    batch = Batch(
        id=batch_id,
        api_key_id=api_key_id,
        status=BATCH_RUNNING,
        total=len(rows),
        webhook_url=request.webhook_url,
        metadata_=request.metadata,
        max_points=request.max_points,
        created_at=now,
    )
    session.add(batch)
    session.flush()
    insert_job_rows(session, rows, now=now, only_new=Job.batch_id == batch_id)
    return batch

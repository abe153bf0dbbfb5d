"""The archive pump: copy succeeded jobs' outputs from upstream's short-lived URLs into our
storage, so a batch's results outlive the CDN's links.

Each round leases due jobs (`core.archive.claim_archive_jobs`), streams every output not yet
recorded from its URL into the store (``ARCHIVE_CONCURRENCY`` copies at a time, each bounded
by ``ARCHIVE_TIMEOUT_SECONDS`` and ``ARCHIVE_MAX_BYTES``, image and video types only), then
records file rows and each job's archive state in one transaction. A copy's key is fixed by
job and index, so a round killed mid-copy is simply redone when its lease runs out: the object
is overwritten and the row upserted, never duplicated. A failed copy never fails the job.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from core import metrics
from core.archive import (
    ArchiveJob,
    ArchiveOutcome,
    CopiedFile,
    claim_archive_jobs,
    expired_files,
    forget_files,
    next_archive_due,
    record_archive_outcomes,
    skip_pending,
)
from core.db import Database
from core.files import image_dimensions
from core.settings import Settings
from core.storage import ResultStore, file_key
from core.tables import utcnow
from core.webhooks.ssrf import DestinationRefused, resolve_destination
from worker.offload import Offload

log = logging.getLogger(__name__)

# Pillow reads an image's size from its first bytes; keep at most this much to find it.
IMAGE_HEAD_BYTES = 4 * 1024 * 1024
# On top of twice a copy's time budget: time to record the round.
WRITE_MARGIN_SECONDS = 5.0
# Upstream answers that say the file will never come (retrying cannot help).
GONE_STATUSES = frozenset({400, 401, 403, 404, 410, 451})


class CopyRefused(Exception):
    """An output we will not keep, whatever the retries: gone, wrong type, too large."""


class CopyFailed(Exception):
    """An output that may copy on a later try (a 5xx, a timeout, the store unreachable)."""


def lease_seconds(settings: Settings) -> float:
    """A lease outlives a round (each copy is bounded, the round too) with room to spare, so
    a live pump is never overtaken and a dead one's jobs come back soon."""
    return 2 * settings.archive_timeout_seconds + WRITE_MARGIN_SECONDS


def make_download_client(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The client that fetches result files: no MetaChat credentials, redirects followed (CDNs
    redirect to their edge), a connection per concurrent copy."""
    timeout = httpx.Timeout(
        settings.archive_timeout_seconds, connect=settings.storage_connect_timeout
    )
    limits = httpx.Limits(
        max_connections=settings.archive_concurrency,
        max_keepalive_connections=settings.archive_concurrency,
    )
    hooks = [] if settings.archive_allow_private else [_refuse_private_destination]
    return httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        follow_redirects=True,
        event_hooks={"request": hooks},
        transport=transport,
    )


async def _refuse_private_destination(request: httpx.Request) -> None:
    """Refuse a result URL, or any redirect on the way, whose host is not on the public
    internet (the webhooks' rule, `core.webhooks.ssrf`): a result URL comes from upstream, and
    what it names is fetched by us and served to the tenant, so it must not reach our network.
    The lookup runs in a thread (it blocks)."""
    try:
        await asyncio.to_thread(resolve_destination, str(request.url), allow_private=False)
    except DestinationRefused as exc:
        # what the name resolves to is not said: the message reaches the tenant
        raise CopyRefused(
            f"the host {request.url.host!r} is not a public address; result files are copied "
            "only from public addresses (ARCHIVE_ALLOW_PRIVATE)"
        ) from exc


@dataclass
class ArchiveContext:
    """What an archive round needs; the worker process keeps one, tests build their own."""

    db: Database
    settings: Settings
    store: ResultStore
    http: httpx.AsyncClient
    owner: str
    offload: Offload = field(default_factory=Offload)


@dataclass
class ArchiveReport:
    jobs: int = 0
    copied: int = 0
    refused: int = 0
    failed: int = 0
    bytes: int = 0
    states: dict[str, int] = field(default_factory=dict)


async def run_archive_pump(ctx: ArchiveContext, *, window_seconds: float = 0.0) -> ArchiveReport:
    """Archive rounds until nothing is due or ``window_seconds`` have passed (one round at
    least)."""
    settings = ctx.settings
    report = ArchiveReport()
    deadline = time.monotonic() + window_seconds
    if settings.archive_enabled and not await ctx.offload.database(_has_due, ctx):
        return report  # an idle tick: one indexed read, no write transaction
    while True:
        if not settings.archive_enabled:
            await ctx.offload.write(_skip, ctx)
            return report
        round_report = await archive_round(ctx)
        _add(report, round_report)
        if round_report.jobs < settings.archive_batch_size or time.monotonic() >= deadline:
            return report


def _has_due(ctx: ArchiveContext) -> bool:
    with ctx.db.read_session() as session:
        due = next_archive_due(session)
    return due is not None and due <= utcnow()


def _skip(ctx: ArchiveContext) -> int:
    with ctx.db.session() as session:
        return skip_pending(session, now=utcnow(), limit=ctx.settings.archive_batch_size * 10)


async def archive_round(ctx: ArchiveContext) -> ArchiveReport:
    """Claim due jobs, copy their outputs, record the outcomes."""
    settings = ctx.settings
    started = time.perf_counter()
    claimed = await ctx.offload.database(_claim, ctx)
    metrics.record_claim("archive", len(claimed), time.perf_counter() - started)
    report = ArchiveReport(jobs=len(claimed))
    if not claimed:
        return report
    gate = asyncio.Semaphore(settings.archive_concurrency)
    outcomes = [ArchiveOutcome(job.id) for job in claimed]
    work = [
        _copy_into(ctx, gate, job, index, url, outcome)
        for job, outcome in zip(claimed, outcomes, strict=True)
        for index, url in job.to_copy
    ]
    # the whole round is bounded too: copies still waiting for the gate then count as failed
    try:
        async with asyncio.timeout(1.5 * settings.archive_timeout_seconds):
            await asyncio.gather(*work)
    except TimeoutError:
        log.warning("archive round ran out of time; unfinished copies are tried again later")
    for job, outcome in zip(claimed, outcomes, strict=True):
        done = {copied.index for copied in outcome.copied} | set(outcome.refused)
        for index, _ in job.to_copy:
            if index not in done and index not in outcome.failed:
                outcome.failed[index] = "round ran out of time"
    report.states = await ctx.offload.write(_record, ctx, outcomes)
    for outcome in outcomes:
        report.copied += len(outcome.copied)
        report.refused += len(outcome.refused)
        report.failed += len(outcome.failed)
        report.bytes += sum(copied.size for copied in outcome.copied)
    if report.refused or report.failed:
        log.warning(
            "archive: %d copied, %d refused, %d to retry",
            report.copied,
            report.refused,
            report.failed,
        )
    return report


def _claim(ctx: ArchiveContext) -> list[ArchiveJob]:
    with ctx.db.session() as session:
        return claim_archive_jobs(
            session,
            now=utcnow(),
            lease_seconds=lease_seconds(ctx.settings),
            limit=ctx.settings.archive_batch_size,
        )


def _record(ctx: ArchiveContext, outcomes: list[ArchiveOutcome]) -> dict[str, int]:
    settings = ctx.settings
    with ctx.db.session() as session:
        return record_archive_outcomes(
            session,
            outcomes,
            now=utcnow(),
            base_url=settings.file_base_url,
            max_attempts=settings.archive_max_attempts,
            retry_gaps=settings.archive_retry_seconds,
        )


async def _copy_into(
    ctx: ArchiveContext,
    gate: asyncio.Semaphore,
    job: ArchiveJob,
    index: int,
    url: str,
    outcome: ArchiveOutcome,
) -> None:
    async with gate:
        try:
            async with asyncio.timeout(ctx.settings.archive_timeout_seconds):
                copied = await copy_output(ctx, job.id, index, url)
        except CopyRefused as exc:
            outcome.refused[index] = str(exc)
            metrics.record_archive_copy("refused")
        except (CopyFailed, TimeoutError, httpx.HTTPError, OSError) as exc:
            outcome.failed[index] = str(exc) or type(exc).__name__
            metrics.record_archive_copy("failed")
        except Exception as exc:  # the store's own errors; a bug in one copy fails only it
            log.warning("archive %s/%d: %s", job.id, index, type(exc).__name__)
            outcome.failed[index] = f"storage error: {type(exc).__name__}"
            metrics.record_archive_copy("failed")
        else:
            outcome.copied.append(copied)
            metrics.record_archive_copy("copied", copied.size)


def _content_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()


async def copy_output(ctx: ArchiveContext, job_id: str, index: int, url: str) -> CopiedFile:
    """Stream one output from ``url`` into the store under its fixed key."""
    settings = ctx.settings
    cap = settings.archive_max_bytes
    async with ctx.http.stream("GET", url) as response:
        status = response.status_code
        if status in GONE_STATUSES:
            raise CopyRefused(f"upstream answered {status}")
        if status != 200:
            raise CopyFailed(f"upstream answered {status}")
        content_type = _content_type(response)
        if not content_type.startswith(tuple(settings.archive_content_types)):
            raise CopyRefused(f"content type {content_type or 'missing'} is not kept")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise CopyRefused(f"{declared} bytes is over the {cap}-byte cap")
        key = file_key(job_id, index, content_type)
        digest = hashlib.sha256()
        head = bytearray()
        size = 0
        oversized = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal size, oversized
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    oversized = True
                    raise CopyRefused(f"over the {cap}-byte cap")
                digest.update(chunk)
                if len(head) < IMAGE_HEAD_BYTES:
                    head.extend(chunk[: IMAGE_HEAD_BYTES - len(head)])
                yield chunk

        try:
            await ctx.store.put_stream(key, body(), content_type)
        except Exception as exc:
            if oversized:
                await ctx.store.delete(key)
                raise CopyRefused(f"over the {cap}-byte cap") from exc
            raise
    width, height = (
        image_dimensions(bytes(head)) if content_type.startswith("image/") else (None, None)
    )
    return CopiedFile(
        index=index,
        key=key,
        sha256=digest.hexdigest(),
        size=size,
        content_type=content_type,
        width=width,
        height=height,
        source_url=url,
    )


async def prune_files(ctx: ArchiveContext, *, limit: int = 1000) -> int:
    """Remove the files of jobs past ``RETENTION_DAYS``: objects first, then their rows, so a
    crash in between leaves rows to retry, never objects nobody knows of. Returns the count."""
    cutoff = utcnow() - dt.timedelta(days=ctx.settings.retention_days)
    expired = await ctx.offload.database(_expired, ctx, cutoff, limit)
    if not expired:
        return 0
    gate = asyncio.Semaphore(ctx.settings.archive_concurrency)

    async def remove(key: str) -> bool:
        async with gate:
            try:
                await ctx.store.delete(key)
            except Exception as exc:  # left for the next pass; the row stays
                log.warning("pruning a stored file failed: %s", type(exc).__name__)
                return False
            return True

    removed = await asyncio.gather(*(remove(key) for _, key in expired))
    gone = [file_id for (file_id, _), ok in zip(expired, removed, strict=True) if ok]
    await ctx.offload.write(_forget, ctx, gone)
    return len(gone)


def _expired(ctx: ArchiveContext, cutoff: dt.datetime, limit: int) -> list[tuple[str, str]]:
    with ctx.db.read_session() as session:
        return expired_files(session, cutoff=cutoff, limit=limit)


def _forget(ctx: ArchiveContext, file_ids: list[str]) -> int:
    with ctx.db.session() as session:
        return forget_files(session, file_ids)


def _add(total: ArchiveReport, part: ArchiveReport) -> None:
    total.jobs += part.jobs
    total.copied += part.copied
    total.refused += part.refused
    total.failed += part.failed
    total.bytes += part.bytes
    for state, n in part.states.items():
        total.states[state] = total.states.get(state, 0) + n


__all__ = [
    "ArchiveContext",
    "ArchiveReport",
    "CopyFailed",
    "CopyRefused",
    "archive_round",
    "copy_output",
    "lease_seconds",
    "make_download_client",
    "prune_files",
    "run_archive_pump",
]

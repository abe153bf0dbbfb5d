"""The synchronous lane: jobs on the OpenAI-compatible host, where one call is the whole job.

A GPT Image, Gemini image, Imagen or chat job has no task id to poll: the answer to its one
request (10-120 s) is the result. Those calls must not hold up the submit pump's rounds, so
each worker process runs them on a thread of its own (`SyncLane`) with its own event loop, its
own HTTP client (a long read timeout, ``METACHAT_SYNC_READ_TIMEOUT``) and its own cap on calls
in flight (``METACHAT_SYNC_MAX_IN_FLIGHT``); the providers' shared limits in Redis apply
across processes as for every other provider.

Each job goes through the same trail as a submit, so a crash is handled the same way:

1. **Claim** (`worker.submit_claim.claim_submits` with ``sync=True``): fair order, budgets,
   the limiter, and a lease longer than the whole call plus the storing of its output.
2. **Mark sent** (`claims.mark_submits_sent`) in one statement just before the calls leave.
   A worker dying mid-call leaves the job marked sent with no answer: maintenance fails it
   as ``submit_uncertain`` once its lease runs out, like any other call that was on the wire.
3. **Call**; an answer's images (decoded from base64 by the client) are written to result
   storage (``store``) before anything is recorded.
4. **Record** in one transaction that first checks the job is still queued and leased by us:
   ``queued → running → succeeded`` with the result, the token usage and the cost, or the
   submit pump's verdicts for a failure (`worker.verdicts`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from core import claims, metrics
from core.files import file_view, files_of, image_dimensions, record_file
from core.settings import Settings
from core.storage import ResultStore, file_key
from core.tables import ARCHIVE_DONE, QUEUED, RUNNING, SUCCEEDED, Job
from core.transitions import transition_held
from metachat.client import make_http_client
from metachat.openai import SyncAnswer
from worker import codes, observe
from worker.context import PumpContext
from worker.submit import (
    SubmitReport,
    _fail,
    _Plan,
    _release,
    _retry,
    _RoundState,
    _tell_limiter,
)
from worker.submit_claim import ClaimTally, SubmitWork, claim_submits
from worker.verdicts import Action, Verdict, judge_submit_error

log = logging.getLogger(__name__)

# On top of twice the call's own budget: writing its images to storage and the outcome to the
# database. A live lane is never overtaken by maintenance.
STORE_MARGIN_SECONDS = 60.0
# A write to storage that fails is tried again this many times in all, after these pauses.
STORE_ATTEMPTS = 3
STORE_PAUSES = (0.5, 2.0)


@dataclass(frozen=True)
class StoredImage:
    """One decoded image written to result storage, ready for its file row."""

    index: int
    key: str
    sha256: str
    size: int
    content_type: str
    width: int | None
    height: int | None


StoreOutput = Callable[[SubmitWork, SyncAnswer], Awaitable[list[StoredImage]]]
"""Writes an answer's images somewhere lasting (`store_images` over a `ResultStore`)."""


def sync_call_budget_seconds(settings: Settings) -> float:
    """The longest one synchronous call may take before we stop waiting for it."""
    return settings.metachat_connect_timeout + settings.metachat_sync_read_timeout + 2.0


def sync_lease_seconds(settings: Settings) -> float:
    return max(
        settings.lease_seconds, 2 * sync_call_budget_seconds(settings) + STORE_MARGIN_SECONDS
    )


async def no_store(item: SubmitWork, answer: SyncAnswer) -> list[StoredImage]:
    """Without result storage an image answer cannot be kept: refuse rather than lose it
    silently (the job fails with the reason, its cost still recorded)."""
    if answer.images:
        raise ResultNotStored("no result storage is configured for image answers")
    return []


def store_images(store: ResultStore) -> StoreOutput:
    """The lane's writer: each image under its stable key (`core.storage.file_key`), so a
    retried write replaces its own object; hashing and reading dimensions off the loop."""

    async def write(item: SubmitWork, answer: SyncAnswer) -> list[StoredImage]:
        stored: list[StoredImage] = []
        for index, image in enumerate(answer.images):
            key = file_key(item.job_id, index, image.content_type)
            digest, (width, height) = await asyncio.to_thread(_describe, image.data)
            for attempt in range(STORE_ATTEMPTS):
                try:
                    await store.put(key, image.data, image.content_type)
                    break
                except Exception as exc:  # obstore raises its own error tree
                    if attempt + 1 >= STORE_ATTEMPTS:
                        raise ResultNotStored(f"{type(exc).__name__}: {exc}") from exc
                    await asyncio.sleep(STORE_PAUSES[attempt])
            stored.append(
                StoredImage(index, key, digest, len(image.data), image.content_type, width, height)
            )
        return stored

    return write


def _describe(data: bytes) -> tuple[str, tuple[int | None, int | None]]:
    return hashlib.sha256(data).hexdigest(), image_dimensions(data)


class ResultNotStored(RuntimeError):
    """The answer came back but its output could not be written to storage."""


def result_of(answer: SyncAnswer) -> dict[str, Any]:
    """The job's ``result`` for a synchronous answer: the usual keys plus ``text`` and
    ``finish_reason`` for chat, and ``usage``; ``files`` are added when they are recorded."""
    result: dict[str, Any] = {"image_urls": [], "video_url": None}
    if answer.text is not None:
        result["text"] = answer.text
        result["finish_reason"] = answer.finish_reason
    result["usage"] = dict(answer.usage)
    return result


@dataclass
class _Done:
    item: SubmitWork
    outcome: SyncAnswer | BaseException
    files: list[StoredImage] = field(default_factory=list)
    # what an answer whose output could not be stored cost all the same
    paid_points: int | None = None


async def run_sync_job(
    ctx: PumpContext, item: SubmitWork, store: StoreOutput = no_store
) -> SubmitReport:
    """Call, store and record one claimed job already marked sent."""
    started = time.monotonic()
    outcome: SyncAnswer | BaseException
    try:
        async with asyncio.timeout(sync_call_budget_seconds(ctx.settings)):
            outcome = await ctx.client.call(item.request)
    except Exception as exc:  # every failure becomes a verdict, never a crashed lane
        outcome = exc
    observe.upstream_call("submit", item.provider, outcome, time.monotonic() - started)
    done = _Done(item, outcome)
    if isinstance(outcome, SyncAnswer):
        try:
            done.files = await store(item, outcome)
        except Exception as exc:
            log.error("job %s: the answer's output could not be stored: %s", item.job_id, exc)
            done.outcome = ResultNotStored(f"the answer's output could not be stored: {exc}")
            done.paid_points = outcome.points
    report = SubmitReport()
    state = _RoundState()
    await ctx.offload.write(record_sync, ctx, [done], report=report, state=state)
    plans = _plans(ctx, [done])
    await ctx.offload.best_effort(
        "updating the limiter", lambda: _tell_limiter(ctx, plans, state), None
    )
    return report


def _plans(ctx: PumpContext, done: Sequence[_Done]) -> list[_Plan]:
    plans: list[_Plan] = []
    for entry in done:
        if isinstance(entry.outcome, SyncAnswer):
            plans.append(_Plan(entry.item, "", None))
            continue
        if isinstance(entry.outcome, ResultNotStored):
            verdict = Verdict(
                Action.FAIL,
                str(entry.outcome),
                code=codes.RESULT_NOT_STORED,
                spends_attempt=True,
            )
        else:
            verdict = judge_submit_error(
                entry.outcome,
                attempts=entry.item.attempts,
                max_attempts=ctx.settings.submit_max_attempts,
                resubmit_on_uncertain=ctx.settings.resubmit_on_uncertain,
            )
        plans.append(_Plan(entry.item, entry.outcome, verdict))
    return plans


def record_sync(
    ctx: PumpContext, done: Sequence[_Done], *, report: SubmitReport, state: _RoundState
) -> None:
    """Step 4 on the database thread: every outcome in one transaction."""
    now = ctx.clock()
    counts = SubmitReport()
    with ctx.db.session() as session:
        held = claims.hold_leases(
            session, [d.item.job_id for d in done], status=QUEUED, owner=ctx.owner
        )
        for entry in done:
            if entry.item.job_id not in held and isinstance(entry.outcome, SyncAnswer):
                log.warning(
                    "job %s was answered by MetaChat after it left our hands (cancelled or "
                    "taken over); the answer is dropped",
                    entry.item.job_id,
                )
        mine = [d for d in done if d.item.job_id in held]
        counts.lost = len(done) - len(mine)
        answered = [d for d in mine if isinstance(d.outcome, SyncAnswer)]
        transition_held(
            session,
            [
                {"id": d.item.job_id, "submitted_at": now, "detail": {"synchronous": True}}
                for d in answered
            ],
            from_status=QUEUED,
            to_status=RUNNING,
            reason="submitted",
            shared={"attempts": Job.attempts + 1},
            now=now,
        )
        counts.submitted = transition_held(
            session,
            [_success_values(session, d, base_url=ctx.settings.file_base_url) for d in answered],
            from_status=RUNNING,
            to_status=SUCCEEDED,
            reason="upstream_succeeded",
            now=now,
        )
        plans = _plans(ctx, [d for d in mine if not isinstance(d.outcome, SyncAnswer)])
        failing = [p for p in plans if p.verdict and p.verdict.action is Action.FAIL]
        _fail(session, failing, now, counts)
        _retry(
            ctx,
            session,
            [p for p in plans if p.verdict and p.verdict.action is not Action.FAIL],
            now=now,
            state=state,
            counts=counts,
        )
        paid = [
            {"p_id": d.item.job_id, "p_points": d.paid_points}
            for d in mine
            if d.paid_points is not None
        ]
        if paid:
            table = cast(Table, Job.__table__)
            session.execute(
                update(table)
                .where(table.c.id == bindparam("p_id"))
                .values(cost_points=bindparam("p_points")),
                paid,
            )
    report.merge(counts)
    for entry in answered:
        assert isinstance(entry.outcome, SyncAnswer)
        if entry.outcome.points:
            metrics.record_points(entry.item.provider, entry.item.model, entry.outcome.points)


def _success_values(session: Session, done: _Done, *, base_url: str) -> dict[str, Any]:
    """The row values of an answered job: its file rows are written first (idempotent on job
    and index) and named in ``result.files``; nothing is left for the archive pump."""
    answer = done.outcome
    assert isinstance(answer, SyncAnswer)
    for image in done.files:
        record_file(
            session,
            job_id=done.item.job_id,
            index=image.index,
            key=image.key,
            sha256=image.sha256,
            size=image.size,
            content_type=image.content_type,
            width=image.width,
            height=image.height,
            source_url=None,
        )
    result = result_of(answer)
    if done.files:
        result["files"] = [file_view(row, base_url) for row in files_of(session, done.item.job_id)]
    return {
        "id": done.item.job_id,
        "result": result,
        "archive_state": ARCHIVE_DONE,
        "archive_due_at": None,
        "cost_points": answer.points,
        "upstream_raw": answer.raw,
        "progress": 100,
        "error_code": None,
        "error_message": None,
    }


class SyncLane:
    """One worker process's synchronous calls, on a thread with its own event loop.

    ``wake()`` (from any thread; the submit tick calls it) claims as many due jobs as there are
    free slots; each finished call frees its slot and claims again, so the lane keeps itself
    busy while work is due. ``build_context`` gets the lane's HTTP client, made on the lane's
    loop (where it must live); ``close`` cancels nothing on the wire: it waits for the calls
    in flight.
    """

    def __init__(
        self,
        settings: Settings,
        build_context: Callable[[httpx.AsyncClient], PumpContext],
        *,
        store: StoreOutput = no_store,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._cap = settings.metachat_sync_max_in_flight
        self._lease = sync_lease_seconds(settings)
        self._store = store
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mcjobs-sync", daemon=True
        )
        self._thread.start()

        async def start() -> tuple[httpx.AsyncClient, PumpContext]:
            http = make_http_client(
                connect_timeout=settings.metachat_connect_timeout,
                read_timeout=settings.metachat_sync_read_timeout,
                max_connections=self._cap,
                max_keepalive_connections=self._cap,
                transport=transport,
            )
            return http, build_context(http)

        self._http, self.ctx = asyncio.run_coroutine_threadsafe(start(), self._loop).result()
        self._in_flight = 0
        self._claiming = False
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.report = SubmitReport()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def wake(self) -> None:
        """Claim due synchronous jobs if a slot is free (safe from any thread)."""
        if not self._closed:
            self._loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        if self._closed or self._claiming or self._in_flight >= self._cap:
            return
        self._claiming = True
        self._spawn(self._claim())

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _claim(self) -> None:
        ctx = self.ctx
        free = self._cap - self._in_flight
        again = False
        try:
            tally = ClaimTally()
            work = await ctx.offload.database(
                claim_submits,
                ctx,
                now=ctx.clock(),
                report=tally,
                sync=True,
                limit=free,
                lease_for=self._lease,
            )
            self.report.failed += tally.failed
            if not work:
                return
            marked = await ctx.offload.database(_mark_sent, ctx, [w.job_id for w in work])
            unsent = [w for w in work if w.job_id not in marked]
            if unsent:
                await ctx.offload.best_effort(
                    "releasing in-flight reservations", lambda: _release(ctx.limiter, unsent), None
                )
            for item in work:
                if item.job_id in marked:
                    self._in_flight += 1
                    self._spawn(self._run(item))
            again = len(work) == free
        except Exception:
            log.exception("sync lane: claiming failed; the next wake-up tries again")
        finally:
            self._claiming = False
        if again:
            self._kick()

    async def _run(self, item: SubmitWork) -> None:
        try:
            self.report.merge(await run_sync_job(self.ctx, item, self._store))
        except Exception:
            log.exception("sync lane: job %s could not be recorded", item.job_id)
        finally:
            self._in_flight -= 1
            self._kick()

    def close(self, timeout: float | None = None) -> None:
        """Stop claiming, wait for the calls in flight, close the client and the loop."""
        self._closed = True

        async def drain() -> None:
            while self._tasks:
                await asyncio.wait(set(self._tasks))
            await self._http.aclose()

        try:
            asyncio.run_coroutine_threadsafe(drain(), self._loop).result(timeout)
        finally:
            self.ctx.offload.close()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            if not self._thread.is_alive():
                self._loop.close()


def _mark_sent(ctx: PumpContext, job_ids: list[str]) -> set[str]:
    with ctx.db.session() as session:
        return claims.mark_submits_sent(session, job_ids, owner=ctx.owner, now=ctx.clock())

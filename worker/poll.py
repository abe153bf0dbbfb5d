"""The poll pump: running jobs → their upstream state (running → running | terminal), and the
reconcile pass that keeps looking at timed-out jobs for a late success.

One round claims due rows, fetches their tasks concurrently, and records each answer as it
lands. A task still running gets its progress stored and its next poll from its `PollSchedule`
(a plain ``UPDATE`` guarded by status and lease, no event row per poll); a finished one moves
through `transition`. Errors on a poll never fail a job: they only reschedule it, and the
deadline bounds how long that can go on. A job cancelled meanwhile simply makes the guarded
writes match nothing.

Within a tick the pump keeps watching for rows falling due until the next tick
(``window_seconds``), so a poll lands when it is due rather than up to a beat interval later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from core import claims, metrics
from core.limiter import ALL
from core.maintenance import time_out_job
from core.schedule import DEFAULT_RATE_LIMIT_PAUSE
from core.tables import FAILED, RUNNING, SUCCEEDED, TIMED_OUT, Job
from core.transitions import record_event, transition
from metachat.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTaskNotFound,
)
from metachat.tasks import UpstreamTask
from worker import codes, observe
from worker.concurrency import bounded, settle_as_completed
from worker.context import PumpContext, call_budget_seconds, lease_seconds

log = logging.getLogger(__name__)

# Reconcile rounds are small: timed-out jobs are rare and never urgent.
RECONCILE_LIMIT = 50
# Within a tick's window the pump looks for newly due rows this often (jobs submitted meanwhile
# by another process have first polls the pump has not seen yet).
RECHECK_SECONDS = 0.1
# When due rows are all held by other pumps, look again after this long rather than spinning.
IDLE_RECHECK_SECONDS = 0.02


@dataclass(frozen=True)
class PollWork:
    """One leased job and what its schedule needs to know."""

    job_id: str
    status: str
    provider: str
    model: str
    action: str
    upstream_task_id: str
    submitted_at: dt.datetime
    deadline_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress: int
    last_seen_at: dt.datetime
    expected_seconds: float


@dataclass
class PollReport:
    """What one tick did."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    rescheduled: int = 0
    late_successes: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def merge(self, other: PollReport) -> None:
        self.claimed += other.claimed
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.timed_out += other.timed_out
        self.rescheduled += other.rescheduled
        self.late_successes += other.late_successes
        for name, count in other.errors.items():
            self.errors[name] += count


Outcome = UpstreamTask | BaseException


async def run_poll_pump(ctx: PumpContext, *, window_seconds: float = 0.0) -> PollReport:
    """One tick: poll what is due, then keep polling what falls due within ``window_seconds``."""
    started = time.monotonic()
    report = PollReport()
    try:
        await _poll_until(ctx, report, started=started, window_seconds=window_seconds)
    finally:
        if report.claimed:
            log.info(
                "poll: %d polled, %d succeeded, %d failed, %d timed out, %d late successes",
                report.claimed,
                report.succeeded,
                report.failed,
                report.timed_out,
                report.late_successes,
            )
    return report


async def _poll_until(
    ctx: PumpContext, report: PollReport, *, started: float, window_seconds: float
) -> None:
    while True:
        round_report = await poll_round(ctx, status=RUNNING, limit=ctx.settings.poll_batch_size)
        round_report.merge(await poll_round(ctx, status=TIMED_OUT, limit=RECONCILE_LIMIT))
        report.merge(round_report)
        remaining = window_seconds - (time.monotonic() - started)
        if remaining <= 0:
            return
        if round_report.claimed >= ctx.settings.poll_batch_size:
            continue
        with ctx.db.read_session() as session:
            next_due = claims.next_due_at(session, status=RUNNING)
        wait = RECHECK_SECONDS
        if next_due is not None:
            wait = min(wait, (next_due - ctx.clock()).total_seconds())
        if round_report.claimed == 0:
            wait = max(wait, IDLE_RECHECK_SECONDS)
        await asyncio.sleep(max(0.0, min(wait, remaining)))


async def poll_round(ctx: PumpContext, *, status: str, limit: int) -> PollReport:
    """Claim, fetch and record one batch of due ``status`` rows (running, or timed_out)."""
    report = PollReport()
    now = ctx.clock()
    with ctx.db.read_session() as session:
        if not claims.any_due(session, status=status, now=now):
            return report
    claim_started = time.monotonic()
    work = claim_polls(ctx, status=status, now=now, limit=limit)
    metrics.record_claim("poll", len(work), time.monotonic() - claim_started)
    if not work:
        return report
    report.claimed = len(work)
    budget = call_budget_seconds(ctx.settings)
    gate = asyncio.Semaphore(ctx.settings.metachat_max_connections)

    async def call(item: PollWork) -> tuple[PollWork, Outcome]:
        started = time.monotonic()
        outcome: Outcome
        try:
            async with asyncio.timeout(budget):
                outcome = await ctx.client.fetch(item.model, item.action, item.upstream_task_id)
        except Exception as exc:  # a malformed answer or a bug must never crash the pump
            outcome = exc
        observe.upstream_call("poll", item.provider, outcome, time.monotonic() - started)
        return item, outcome

    await settle_as_completed(
        (bounded(gate, call(item)) for item in work),
        lambda results: record_polls(ctx, results, report=report),
    )
    return report


def claim_polls(ctx: PumpContext, *, status: str, now: dt.datetime, limit: int) -> list[PollWork]:
    until = now + dt.timedelta(seconds=lease_seconds(ctx.settings))
    catalogue = ctx.client.catalogue
    with ctx.db.session() as session:
        jobs = claims.claim_due(
            session, status=status, owner=ctx.owner, now=now, until=until, limit=limit
        )
        work: list[PollWork] = []
        orphans: list[str] = []
        for job in jobs:
            if not job.upstream_task_id or job.submitted_at is None:
                orphans.append(job.id)
                continue
            try:
                expected = catalogue.action(job.model, job.action).expected_seconds
            except ValueError:
                expected = 60.0
            work.append(
                PollWork(
                    job_id=job.id,
                    status=job.status,
                    provider=job.provider,
                    model=job.model,
                    action=job.action,
                    upstream_task_id=job.upstream_task_id,
                    submitted_at=job.submitted_at,
                    deadline_at=job.deadline_at,
                    finished_at=job.finished_at,
                    progress=job.progress or 0,
                    last_seen_at=job.updated_at or job.submitted_at,
                    expected_seconds=expected,
                )
            )
        # Nothing to poll without a task id: stop scheduling polls for such a row.
        claims.release_jobs(
            session, orphans, status=status, owner=ctx.owner, values={"due_at": None}
        )
    return work


def record_polls(
    ctx: PumpContext, results: Sequence[tuple[PollWork, Outcome]], *, report: PollReport
) -> None:
    """Write the answers of finished polls in one transaction."""
    now = ctx.clock()
    with ctx.db.session() as session:
        for item, outcome in results:
            if isinstance(outcome, BaseException):
                _note_error(ctx, item, outcome, report)
            if item.status == RUNNING:
                _record_running(ctx, session, item, outcome, now=now, report=report)
            else:
                _record_reconcile(ctx, session, item, outcome, now=now, report=report)


def result_of(task: UpstreamTask) -> dict[str, Any]:
    """The job's ``result``: image URLs (Midjourney's grid is one), video URL, prompts."""
    result: dict[str, Any] = {"image_urls": list(task.image_urls), "video_url": task.video_url}
    if len(task.video_urls) > 1:  # a Midjourney video batch: every clip, the first as video_url
        result["video_urls"] = list(task.video_urls)
    if task.prompts:
        result["prompts"] = list(task.prompts)
    return result


def _success_values(task: UpstreamTask) -> dict[str, Any]:
    return {
        "result": result_of(task),
        "cost_points": task.points,
        "upstream_raw": task.raw,
        "progress": 100,
        "polls": Job.polls + 1,
        "error_code": None,
        "error_message": None,
    }


def _failure_reason(item: PollWork, outcome: Outcome) -> str | None:
    """MetaChat's reason when the task ended badly; None while it may still finish."""
    if isinstance(outcome, UpstreamTask) and outcome.status == "failed":
        return outcome.failure_reason or "MetaChat reported the task as failed"
    if isinstance(outcome, UpstreamTaskNotFound):
        return f"MetaChat no longer knows task {item.upstream_task_id}: {outcome.message}"
    return None


def _record_running(
    ctx: PumpContext,
    session: Session,
    item: PollWork,
    outcome: Outcome,
    *,
    now: dt.datetime,
    report: PollReport,
) -> None:
    if isinstance(outcome, UpstreamTask) and outcome.status == "succeeded":
        moved = transition(
            session,
            item.job_id,
            from_status=RUNNING,
            to_status=SUCCEEDED,
            reason="upstream_succeeded",
            values=_success_values(outcome),
            now=now,
        )
        if moved is not None:
            report.succeeded += 1
            if outcome.points:
                metrics.record_points(item.provider, item.model, outcome.points)
            ctx.planner.estimator.observe(
                item.model, item.action, (now - item.submitted_at).total_seconds()
            )
        return
    reason = _failure_reason(item, outcome)
    if reason is not None:
        raw = outcome.raw if isinstance(outcome, UpstreamTask) else None
        points = outcome.points if isinstance(outcome, UpstreamTask) else None
        moved = transition(
            session,
            item.job_id,
            from_status=RUNNING,
            to_status=FAILED,
            reason=codes.UPSTREAM_FAILED,
            values={
                "error_code": codes.UPSTREAM_FAILED,
                "error_message": reason,
                "upstream_raw": raw,
                "cost_points": points,
                "polls": Job.polls + 1,
            },
            now=now,
        )
        report.failed += moved is not None
        return
    if item.deadline_at is not None and now >= item.deadline_at:
        reconcile_at = now + dt.timedelta(seconds=ctx.planner.reconcile_interval())
        moved = time_out_job(
            session,
            item.job_id,
            submitted_at=item.submitted_at,
            deadline_at=item.deadline_at,
            upstream_task_id=item.upstream_task_id,
            now=now,
            reconcile_at=reconcile_at,
            values={"polls": Job.polls + 1, **_progress_values(outcome, item)},
        )
        report.timed_out += moved is not None
        return
    delay = _next_delay(ctx, item, outcome, now=now)
    due = now + dt.timedelta(seconds=delay)
    if item.deadline_at is not None:
        due = min(due, item.deadline_at)
    values: dict[str, Any] = {
        "polls": Job.polls + 1,
        "due_at": due,
        **_progress_values(outcome, item),
    }
    if isinstance(outcome, UpstreamTask):
        # updated_at doubles as "when progress was last read", which the schedule extrapolates.
        values["updated_at"] = now
    claims.release_jobs(session, [item.job_id], status=RUNNING, owner=ctx.owner, values=values)
    report.rescheduled += 1


def _progress_values(outcome: Outcome, item: PollWork) -> dict[str, Any]:
    if isinstance(outcome, UpstreamTask) and outcome.progress is not None:
        return {"progress": max(0, min(99, outcome.progress))}
    return {}


def _next_delay(ctx: PumpContext, item: PollWork, outcome: Outcome, *, now: dt.datetime) -> float:
    schedule = ctx.planner.schedule(
        provider=item.provider,
        model=item.model,
        action=item.action,
        expected_seconds=item.expected_seconds,
    )
    elapsed = (now - item.submitted_at).total_seconds()
    if isinstance(outcome, UpstreamRateLimited):
        wait = outcome.retry_after if outcome.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
        return max(wait, schedule.min_interval)
    if isinstance(outcome, UpstreamTask):
        return schedule.next_delay(
            elapsed=elapsed,
            progress=outcome.progress,
            previous_elapsed=(item.last_seen_at - item.submitted_at).total_seconds(),
            previous_progress=item.progress,
            rng=ctx.planner.rng,
        )
    return schedule.next_delay(elapsed=elapsed, rng=ctx.planner.rng)


def _record_reconcile(
    ctx: PumpContext,
    session: Session,
    item: PollWork,
    outcome: Outcome,
    *,
    now: dt.datetime,
    report: PollReport,
) -> None:
    """A timed-out job looked at again: record a late success, or keep looking a while."""
    if isinstance(outcome, UpstreamTask) and outcome.status == "succeeded":
        moved = transition(
            session,
            item.job_id,
            from_status=TIMED_OUT,
            to_status=SUCCEEDED,
            reason="late_success",
            values=_success_values(outcome),
            detail={"timed_out_at": item.finished_at.isoformat() if item.finished_at else None},
            now=now,
        )
        report.late_successes += moved is not None
        if moved is not None and outcome.points:
            metrics.record_points(item.provider, item.model, outcome.points)
        return
    values: dict[str, Any] = {"polls": Job.polls + 1}
    reason = _failure_reason(item, outcome)
    window_end = (item.finished_at or now) + dt.timedelta(seconds=ctx.planner.reconcile_window())
    if reason is not None or now >= window_end:
        values["due_at"] = None
        if isinstance(outcome, UpstreamTask):
            values["upstream_raw"] = outcome.raw
    else:
        values["due_at"] = now + dt.timedelta(seconds=ctx.planner.reconcile_interval())
    released = claims.release_jobs(
        session, [item.job_id], status=TIMED_OUT, owner=ctx.owner, values=values
    )
    if released and reason is not None:
        record_event(
            session,
            item.job_id,
            status=TIMED_OUT,
            reason="upstream_failed_after_timeout",
            detail={"reason": reason},
            now=now,
        )
    report.rescheduled += released


def _note_error(ctx: PumpContext, item: PollWork, error: BaseException, report: PollReport) -> None:
    report.errors[type(error).__name__] += 1
    if isinstance(error, UpstreamRateLimited):
        pause = error.retry_after if error.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
        ctx.limiter.slow_down(item.provider, pause)
    elif isinstance(error, UpstreamAuthError):
        ctx.limiter.pause(ALL, 60.0 * ctx.settings.poll_time_scale)
        log.error("MetaChat refused our credentials while polling: %s", error.message)
    elif isinstance(error, UpstreamError | TimeoutError):
        log.info("poll of job %s: %s", item.job_id, error)
    else:
        log.warning("poll of job %s failed unexpectedly", item.job_id, exc_info=error)

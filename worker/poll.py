"""The poll pump: running jobs → their upstream state (running → running | terminal), and the
reconcile pass that keeps looking at timed-out jobs for a late success.

One round claims due rows, fetches their tasks concurrently, and records the answers as they
land, on the database thread (`worker.offload`). A task still running gets its progress stored
and its next poll from its `PollSchedule` (one executemany ``UPDATE`` guarded by status and
lease, no event row per poll); finished ones move through `transition_held`, one set-based
transition per outcome with its events and webhook rows. Errors on a poll never fail a job:
they only reschedule it, and the deadline bounds how long that can go on. A job cancelled
meanwhile is not held by the record's transaction, so nothing is written for it.

**Deadlines get a last poll.** A job times out only on an answer read at or after its
deadline that says the task is still going; a poll that fails after the deadline is tried again
until `claims.last_poll_grace` has passed, and only then does the job time out unseen.

Within a tick the pump keeps watching for rows falling due until the next tick
(``window_seconds``), so a poll lands when it is due rather than up to a beat interval later;
when nothing falls due within the window the tick returns at once after one indexed read.
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
from core.claims import call_budget_seconds
from core.db import Database
from core.limiter import ALL
from core.maintenance import DEADLINE_EXCEEDED, deadline_message
from core.schedule import DEFAULT_RATE_LIMIT_PAUSE
from core.tables import FAILED, RUNNING, SUCCEEDED, TIMED_OUT, Job
from core.transitions import record_events, transition_held
from metachat.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTaskNotFound,
)
from metachat.tasks import UpstreamTask
from worker import codes, observe
from worker.concurrency import bounded, settle_as_completed
from worker.context import PumpContext, lease_seconds

log = logging.getLogger(__name__)

# Reconcile rounds are small: timed-out jobs are rare and never urgent.
RECONCILE_LIMIT = 50
# While rows fall due within a tick's window the pump looks for newly due rows this often (jobs
# submitted meanwhile by another process have first polls the pump has not seen yet).
RECHECK_SECONDS = 0.1
# Never look again sooner than this, so rows due "now" but held elsewhere are not spun on.
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
        now = ctx.clock()
        due = await ctx.offload.database(_next_due, ctx.db, now)
        ready = [status for status, at in due.items() if at <= now]
        full = False
        for status in ready:
            limit = ctx.settings.poll_batch_size if status == RUNNING else RECONCILE_LIMIT
            round_report = await poll_round(ctx, status=status, limit=limit)
            report.merge(round_report)
            full = full or round_report.claimed >= limit
        remaining = window_seconds - (time.monotonic() - started)
        if remaining <= 0:
            return
        if full:
            continue
        upcoming = min(due.values(), default=None)
        if not ready:
            if upcoming is None or (upcoming - now).total_seconds() > remaining:
                return  # idle: nothing falls due within this tick
            wait = (upcoming - now).total_seconds()
        else:
            wait = RECHECK_SECONDS
        wait = max(IDLE_RECHECK_SECONDS, min(wait, RECHECK_SECONDS))
        await asyncio.sleep(min(wait, remaining))


def _next_due(db: Database, now: dt.datetime) -> dict[str, dt.datetime]:
    with db.read_session() as session:
        return claims.next_poll_due(session, now=now)


@dataclass(frozen=True)
class _Answer:
    item: PollWork
    outcome: Outcome
    # when the answer was read (the pump's clock): a deadline is judged by it, not by the write
    at: dt.datetime


async def poll_round(ctx: PumpContext, *, status: str, limit: int) -> PollReport:
    """Claim, fetch and record one batch of due ``status`` rows (running, or timed_out)."""
    report = PollReport()
    now = ctx.clock()
    claim_started = time.monotonic()
    work = await ctx.offload.database(claim_polls, ctx, status=status, now=now, limit=limit)
    metrics.record_claim("poll", len(work), time.monotonic() - claim_started)
    if not work:
        return report
    report.claimed = len(work)
    budget = call_budget_seconds(ctx.settings)
    gate = asyncio.Semaphore(ctx.settings.metachat_max_connections)

    async def call(item: PollWork) -> _Answer:
        started = time.monotonic()
        outcome: Outcome
        try:
            async with asyncio.timeout(budget):
                outcome = await ctx.client.fetch(item.model, item.action, item.upstream_task_id)
        except Exception as exc:  # a malformed answer or a bug must never crash the pump
            outcome = exc
        observe.upstream_call("poll", item.provider, outcome, time.monotonic() - started)
        return _Answer(item, outcome, ctx.clock())

    await settle_as_completed(
        [bounded(gate, call(item)) for item in work],
        lambda answers: _record(ctx, answers, status=status, report=report),
    )
    return report


async def _record(
    ctx: PumpContext, answers: Sequence[_Answer], *, status: str, report: PollReport
) -> None:
    await ctx.offload.write(record_polls, ctx, answers, status=status, report=report)
    errors = [a for a in answers if isinstance(a.outcome, BaseException)]
    for answer in errors:
        report.errors[type(answer.outcome).__name__] += 1
        _log_error(answer.item, answer.outcome)
    if any(isinstance(a.outcome, UpstreamRateLimited | UpstreamAuthError) for a in errors):
        await ctx.offload.best_effort(
            "updating the limiter after failed polls", lambda: _tell_limiter(ctx, errors), None
        )


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
    ctx: PumpContext, answers: Sequence[_Answer], *, status: str, report: PollReport
) -> None:
    """Write the answers of finished polls in one transaction, a constant number of statements
    whatever their number (on the database thread)."""
    now = ctx.clock()
    counts = PollReport()
    with ctx.db.session() as session:
        held = claims.hold_leases(
            session, [a.item.job_id for a in answers], status=status, owner=ctx.owner
        )
        mine = [a for a in answers if a.item.job_id in held]
        if status == RUNNING:
            _record_running(ctx, session, mine, now=now, counts=counts)
        else:
            _record_reconcile(ctx, session, mine, now=now, counts=counts)
    # only once committed: a write tried again must not count (or learn) twice
    for answer in mine:
        task = answer.outcome
        if isinstance(task, UpstreamTask) and task.status == "succeeded":
            if task.points:
                metrics.record_points(answer.item.provider, answer.item.model, task.points)
            if status == RUNNING:
                ctx.planner.estimator.observe(
                    answer.item.model,
                    answer.item.action,
                    (now - answer.item.submitted_at).total_seconds(),
                )
    report.merge(counts)


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
    answers: Sequence[_Answer],
    *,
    now: dt.datetime,
    counts: PollReport,
) -> None:
    """Running jobs: one transition per kind of ending, one UPDATE for all the others."""
    succeeded: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    timed_out: list[dict[str, Any]] = []
    later: list[dict[str, Any]] = []
    grace = dt.timedelta(seconds=claims.last_poll_grace(ctx.settings))
    for answer in answers:
        item, outcome = answer.item, answer.outcome
        if isinstance(outcome, UpstreamTask) and outcome.status == "succeeded":
            succeeded.append({"id": item.job_id, **_success_values(outcome)})
            continue
        reason = _failure_reason(item, outcome)
        if reason is not None:
            failed.append(
                {
                    "id": item.job_id,
                    "error_code": codes.UPSTREAM_FAILED,
                    "error_message": reason,
                    "upstream_raw": outcome.raw if isinstance(outcome, UpstreamTask) else None,
                    "cost_points": outcome.points if isinstance(outcome, UpstreamTask) else None,
                }
            )
            continue
        deadline = item.deadline_at
        if deadline is not None and _past_deadline(answer, deadline, grace):
            timed_out.append(
                {
                    "id": item.job_id,
                    "error_code": DEADLINE_EXCEEDED,
                    "error_message": deadline_message(item.submitted_at, deadline),
                    "due_at": now + dt.timedelta(seconds=ctx.planner.reconcile_interval()),
                    "progress": _progress(outcome, item),
                    "detail": {"upstream_task_id": item.upstream_task_id},
                }
            )
            continue
        later.append(_next_poll_values(ctx, answer, grace, now=now))
    polled = {"polls": Job.polls + 1}
    moves = (
        (succeeded, SUCCEEDED, "upstream_succeeded"),
        (failed, FAILED, codes.UPSTREAM_FAILED),
        (timed_out, TIMED_OUT, DEADLINE_EXCEEDED),
    )
    for rows, to_status, reason in moves:
        transition_held(
            session,
            rows,
            from_status=RUNNING,
            to_status=to_status,
            reason=reason,
            shared=polled,
            now=now,
        )
    counts.succeeded += len(succeeded)
    counts.failed += len(failed)
    counts.timed_out += len(timed_out)
    counts.rescheduled += claims.release_each(
        session, later, status=RUNNING, owner=ctx.owner, shared=polled
    )


def _past_deadline(answer: _Answer, deadline: dt.datetime, grace: dt.timedelta) -> bool:
    """Whether this answer ends the job as timed out: it was read at or after the deadline and
    says the task is still going, or the polls have failed for the whole grace after it."""
    if isinstance(answer.outcome, UpstreamTask):
        return answer.at >= deadline
    return answer.at >= deadline + grace


def _next_poll_values(
    ctx: PumpContext, answer: _Answer, grace: dt.timedelta, *, now: dt.datetime
) -> dict[str, Any]:
    item, outcome = answer.item, answer.outcome
    due = now + dt.timedelta(seconds=_next_delay(ctx, item, outcome, now=now))
    if item.deadline_at is not None:
        # the last poll lands on the deadline; past it (a failed poll) within the grace
        last = item.deadline_at if now < item.deadline_at else item.deadline_at + grace
        due = min(due, last)
    return {
        "id": item.job_id,
        "due_at": due,
        "progress": _progress(outcome, item),
        # updated_at doubles as "when progress was last read", which the schedule extrapolates
        "updated_at": now if isinstance(outcome, UpstreamTask) else item.last_seen_at,
    }


def _progress(outcome: Outcome, item: PollWork) -> int:
    if isinstance(outcome, UpstreamTask) and outcome.progress is not None:
        return max(0, min(99, outcome.progress))
    return item.progress


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
    answers: Sequence[_Answer],
    *,
    now: dt.datetime,
    counts: PollReport,
) -> None:
    """Timed-out jobs looked at again: late successes, ended reconciles, and the rest later."""
    late: list[dict[str, Any]] = []
    ended: list[dict[str, Any]] = []
    ended_seen: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    failed_events: list[dict[str, Any]] = []
    for answer in answers:
        item, outcome = answer.item, answer.outcome
        if isinstance(outcome, UpstreamTask) and outcome.status == "succeeded":
            timed_out_at = item.finished_at.isoformat() if item.finished_at else None
            late.append(
                {
                    "id": item.job_id,
                    **_success_values(outcome),
                    "detail": {"timed_out_at": timed_out_at},
                }
            )
            continue
        reason = _failure_reason(item, outcome)
        window_end = (item.finished_at or now) + dt.timedelta(
            seconds=ctx.planner.reconcile_window()
        )
        if reason is not None or now >= window_end:
            if isinstance(outcome, UpstreamTask):
                ended_seen.append({"id": item.job_id, "due_at": None, "upstream_raw": outcome.raw})
            else:
                ended.append({"id": item.job_id, "due_at": None})
            if reason is not None:
                failed_events.append(
                    {
                        "job_id": item.job_id,
                        "status": TIMED_OUT,
                        "reason": "upstream_failed_after_timeout",
                        "detail": {"reason": reason},
                    }
                )
        else:
            next_at = now + dt.timedelta(seconds=ctx.planner.reconcile_interval())
            again.append({"id": item.job_id, "due_at": next_at})
    polled = {"polls": Job.polls + 1}
    counts.late_successes += transition_held(
        session,
        late,
        from_status=TIMED_OUT,
        to_status=SUCCEEDED,
        reason="late_success",
        shared=polled,
        now=now,
    )
    for rows in (ended, ended_seen, again):
        counts.rescheduled += claims.release_each(
            session, rows, status=TIMED_OUT, owner=ctx.owner, shared=polled
        )
    record_events(session, failed_events, now=now)


def _log_error(item: PollWork, error: Outcome) -> None:
    if not isinstance(error, BaseException):
        return
    if isinstance(error, UpstreamAuthError):
        log.error("MetaChat refused our credentials while polling: %s", error.message)
    elif isinstance(error, UpstreamError | TimeoutError):
        log.info("poll of job %s: %s", item.job_id, error)
    else:
        log.warning("poll of job %s failed unexpectedly", item.job_id, exc_info=error)


def _tell_limiter(ctx: PumpContext, errors: Sequence[_Answer]) -> None:
    """Slow a provider down after a 429 on a poll; pause everything after a refused key."""
    slowed: dict[str, float] = {}
    paused = False
    for answer in errors:
        error = answer.outcome
        if isinstance(error, UpstreamRateLimited):
            pause = error.retry_after if error.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
            slowed[answer.item.provider] = max(pause, slowed.get(answer.item.provider, 0.0))
        elif isinstance(error, UpstreamAuthError) and not paused:
            paused = True
            ctx.limiter.pause(ALL, 60.0 * ctx.settings.poll_time_scale)
    for provider, pause in slowed.items():
        ctx.limiter.slow_down(provider, pause)

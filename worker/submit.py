"""The submit pump: queued jobs → MetaChat tasks (queued → running).

One round:

1. **Claim** (one write transaction, `worker.submit_claim`): take due queued jobs in fair
   order, settle follow-ups whose source is not ready and jobs over budget, ask the shared
   limiter how many of each provider may go now, and lease exactly those (``lease_owner`` = this
   process, ``lease_until`` well beyond the longest call).
2. **Call** MetaChat for all of them concurrently on the process's event loop.
3. **Record** each answer as it lands, in a short transaction that first checks the job is
   still queued *and* still leased by us (`claims.hold_leases`): a job cancelled meanwhile, or
   taken over after our lease ran out, is never moved twice.

Crash safety: between MetaChat accepting a task and step 3 committing, a SIGKILL loses the
answer. The lease then runs out with ``lease_owner`` still set, and maintenance fails the job as
``submit_uncertain`` rather than submitting it a second time (see `core.maintenance`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import claims, metrics
from core.limiter import ALL
from core.schedule import DEFAULT_RATE_LIMIT_PAUSE
from core.tables import FAILED, QUEUED, RUNNING, Job
from core.transitions import record_event, transition, transition_held
from worker import observe
from worker.concurrency import settle_as_completed
from worker.context import PumpContext, call_budget_seconds
from worker.sending import sending_job
from worker.submit_claim import ClaimTally, SubmitWork, claim_limit, claim_submits
from worker.verdicts import Action, Verdict, judge_submit_error

log = logging.getLogger(__name__)

# After a refused API key or an empty account nothing is submitted for this long (time-scaled).
AUTH_PAUSE_SECONDS = 60.0
QUOTA_PAUSE_SECONDS = 60.0


@dataclass
class SubmitReport:
    """What one tick did (for logs and tests)."""

    claimed: int = 0
    submitted: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    lost: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def merge(self, other: SubmitReport) -> None:
        self.claimed += other.claimed
        self.submitted += other.submitted
        self.retried += other.retried
        self.failed += other.failed
        self.deferred += other.deferred
        self.lost += other.lost
        for reason, count in other.by_reason.items():
            self.by_reason[reason] += count


async def run_submit_pump(ctx: PumpContext, *, window_seconds: float = 0.0) -> SubmitReport:
    """One tick: submit rounds until nothing more can go or ``window_seconds`` have passed."""
    started = time.monotonic()
    report = SubmitReport()
    while True:
        round_report = await submit_round(ctx)
        report.merge(round_report)
        full = round_report.claimed >= claim_limit(ctx)
        if not full or time.monotonic() - started >= window_seconds:
            if report.claimed or report.failed or report.deferred:
                log.info(
                    "submit: %d claimed, %d submitted, %d retried, %d failed, %d deferred",
                    report.claimed,
                    report.submitted,
                    report.retried,
                    report.failed,
                    report.deferred,
                )
            return report


async def submit_round(ctx: PumpContext) -> SubmitReport:
    """Claim, call and record one batch of queued jobs."""
    report = SubmitReport()
    now = ctx.clock()
    with ctx.db.read_session() as session:
        if not claims.any_due(session, status=QUEUED, now=now):
            return report
    claim_started = time.monotonic()
    tally = ClaimTally()
    work = claim_submits(ctx, now=now, report=tally)
    report.failed += tally.failed
    report.deferred += tally.deferred
    for reason, count in tally.by_reason.items():
        report.by_reason[reason] += count
    metrics.record_claim("submit", len(work), time.monotonic() - claim_started)
    if not work:
        return report
    report.claimed = len(work)
    budget = call_budget_seconds(ctx.settings)

    async def call(item: SubmitWork) -> tuple[SubmitWork, str | BaseException]:
        started = time.monotonic()
        outcome: str | BaseException
        sending_job.set(item.job_id)
        try:
            async with asyncio.timeout(budget):
                outcome = await ctx.client.submit(item.request)
            if ctx.trail is not None:
                # before anything else: from here a crash recovers the job instead of failing it
                ctx.trail.accepted(item.job_id, outcome)
        except Exception as exc:  # every failure becomes a verdict, never a crashed pump
            outcome = exc
        observe.upstream_call("submit", item.provider, outcome, time.monotonic() - started)
        return item, outcome

    state = _RoundState()
    try:
        await settle_as_completed(
            (call(item) for item in work),
            lambda results: record_submits(ctx, results, report=report, state=state),
        )
    finally:
        _release_reservations(ctx, work)
    if state.any_submitted:
        ctx.limiter.note_reachable()
    return report


@dataclass
class _RoundState:
    any_submitted: bool = False
    # One shared back-off per round however many calls found MetaChat unreachable.
    unreachable_delay: float | None = None


def record_submits(
    ctx: PumpContext,
    results: Sequence[tuple[SubmitWork, str | BaseException]],
    *,
    report: SubmitReport,
    state: _RoundState,
) -> None:
    """Write the outcome of finished calls (step 3) in one transaction."""
    accepted = [(item.job_id, outcome) for item, outcome in results if isinstance(outcome, str)]
    if accepted:
        with ctx.db.session() as session:
            claims.note_upstream_ids(session, accepted, owner=ctx.owner)
    now = ctx.clock()
    plans = [(item, _plan(ctx, item, outcome, state)) for item, outcome in results]
    with ctx.db.session() as session:
        held = claims.hold_leases(
            session, [item.job_id for item, _ in plans], status=QUEUED, owner=ctx.owner
        )
        running: list[dict[str, Any]] = []
        for item, (outcome, verdict) in plans:
            if item.job_id not in held:
                _lost(session, item, outcome, now=now)
                report.lost += 1
            elif isinstance(outcome, str):
                running.append(_running_values(ctx, item, outcome, now=now))
            else:
                assert verdict is not None
                _apply_verdict(ctx, session, item, verdict, now=now, report=report, state=state)
        if running:
            # every row here is held (locked above), so one set-based move is safe
            report.submitted += transition_held(
                session,
                running,
                from_status=QUEUED,
                to_status=RUNNING,
                reason="submitted",
                shared={"attempts": Job.attempts + 1},
                now=now,
            )
            state.any_submitted = True
    for provider, job_ids in _by_provider(item for item, _ in results).items():
        ctx.limiter.release(provider, job_ids)
    if ctx.trail is not None:
        ctx.trail.forget(item.job_id for item, _ in results)


def _plan(
    ctx: PumpContext, item: SubmitWork, outcome: str | BaseException, state: _RoundState
) -> tuple[str | BaseException, Verdict | None]:
    if isinstance(outcome, str):
        return outcome, None
    verdict = judge_submit_error(
        outcome,
        attempts=item.attempts,
        max_attempts=ctx.settings.submit_max_attempts,
        resubmit_on_uncertain=ctx.settings.resubmit_on_uncertain,
    )
    scale = ctx.settings.poll_time_scale
    if verdict.action is Action.RATE_LIMITED:
        pause = verdict.retry_after if verdict.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
        ctx.limiter.slow_down(item.provider, pause)
    elif verdict.action is Action.UNREACHABLE and state.unreachable_delay is None:
        state.unreachable_delay = ctx.planner.submit_backoff(ctx.limiter.note_unreachable())
        ctx.limiter.pause(ALL, state.unreachable_delay)
    elif verdict.action is Action.AUTH:
        paused = ctx.limiter.pause(ALL, AUTH_PAUSE_SECONDS * scale)
        log.error(
            "MetaChat refused our credentials (%s); submits paused for %.0f s — check "
            "METACHAT_API_KEY / METACHAT_APP_ID",
            verdict.message,
            paused,
        )
    elif verdict.pause_all:
        paused = ctx.limiter.pause(ALL, QUOTA_PAUSE_SECONDS * scale)
        log.error("MetaChat account is out of points; submits paused for %.0f s", paused)
    return outcome, verdict


def _running_values(
    ctx: PumpContext, item: SubmitWork, task_id: str, *, now: dt.datetime
) -> dict[str, Any]:
    """The row values (and event detail) of a job MetaChat accepted as task `task_id`."""
    planner = ctx.planner
    first_poll = planner.first_poll_delay(
        provider=item.provider,
        model=item.model,
        action=item.action,
        expected_seconds=item.expected_seconds,
    )
    deadline = planner.deadline_seconds(
        provider=item.provider,
        model=item.model,
        action=item.action,
        expected_seconds=item.expected_seconds,
        requested=item.deadline_seconds,
    )
    return {
        "id": item.job_id,
        "upstream_task_id": task_id,
        "submitted_at": now,
        "deadline_at": now + dt.timedelta(seconds=deadline),
        "due_at": now + dt.timedelta(seconds=min(first_poll, deadline)),
        "lease_owner": None,
        "lease_until": None,
        "progress": 0,
        "error_code": None,
        "error_message": None,
        "detail": {"upstream_task_id": task_id},
    }


def _apply_verdict(
    ctx: PumpContext,
    session: Session,
    item: SubmitWork,
    verdict: Verdict,
    *,
    now: dt.datetime,
    report: SubmitReport,
    state: _RoundState,
) -> None:
    report.by_reason[verdict.action.value if verdict.code is None else verdict.code] += 1
    attempts = item.attempts + (1 if verdict.spends_attempt else 0)
    if verdict.action is Action.FAIL:
        assert verdict.code is not None
        transition(
            session,
            item.job_id,
            from_status=QUEUED,
            to_status=FAILED,
            reason=verdict.code,
            values={
                "error_code": verdict.code,
                "error_message": verdict.message,
                "attempts": attempts,
            },
            detail={"attempts": attempts},
            now=now,
        )
        report.failed += 1
        return
    scale = ctx.settings.poll_time_scale
    if verdict.action is Action.RATE_LIMITED:
        delay = verdict.retry_after if verdict.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
    elif verdict.action is Action.UNREACHABLE:
        delay = state.unreachable_delay or ctx.planner.submit_backoff(1)
    elif verdict.action is Action.AUTH:
        delay = AUTH_PAUSE_SECONDS * scale
    else:
        delay = ctx.planner.submit_backoff(attempts)
    claims.release_jobs(
        session,
        [item.job_id],
        status=QUEUED,
        owner=ctx.owner,
        values={
            "attempts": attempts,
            "due_at": now + dt.timedelta(seconds=delay),
            "updated_at": now,
        },
    )
    record_event(
        session,
        item.job_id,
        status=QUEUED,
        reason=f"submit_{verdict.action.value}",
        detail={"error": verdict.message, "attempts": attempts, "retry_in": round(delay, 3)},
        now=now,
    )
    report.retried += 1


def _lost(
    session: Session, item: SubmitWork, outcome: str | BaseException, *, now: dt.datetime
) -> None:
    """The job left our hands mid-call (cancelled, or our lease ran out)."""
    status = session.execute(select(Job.status).where(Job.id == item.job_id)).scalar_one_or_none()
    if status is None or not isinstance(outcome, str):
        return
    # MetaChat made a task nobody will poll; keep its id so the cost can be traced.
    session.execute(
        update(Job)
        .where(Job.id == item.job_id, Job.upstream_task_id.is_(None), Job.status != QUEUED)
        .values(upstream_task_id=outcome)
    )
    record_event(
        session,
        item.job_id,
        status=status,
        reason="submitted_after_release",
        detail={"upstream_task_id": outcome},
        now=now,
    )
    log.warning(
        "job %s was %s by the time MetaChat accepted it as task %s", item.job_id, status, outcome
    )


def _by_provider(items: Iterable[SubmitWork]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for item in items:
        grouped[item.provider].append(item.job_id)
    return grouped


def _release_reservations(ctx: PumpContext, work: Sequence[SubmitWork]) -> None:
    try:
        for provider, job_ids in _by_provider(work).items():
            ctx.limiter.release(provider, job_ids)
    except Exception:  # a reservation left behind only expires a little later
        log.warning("could not release in-flight reservations", exc_info=True)

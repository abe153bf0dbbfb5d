"""The submit pump: queued jobs → MetaChat tasks (queued → running).

One round:

1. **Claim** (one write transaction, `worker.submit_claim`): take due queued jobs in fair
   order, settle follow-ups whose source is not ready and jobs over budget, ask the shared
   limiter how many of each provider may go now, and lease exactly those (``lease_owner`` = this
   process, ``lease_until`` well beyond the longest call).
2. **Mark sent** (`claims.mark_submits_sent`), part by part (`worker.sending`): one UPDATE
   stamps ``submit_sent_at`` on a part of the round and commits; its requests start the moment
   it returns, and the next part is marked once they have all started to leave.
3. **Call** MetaChat for all of them concurrently on the process's event loop (the claim never
   takes more jobs than the HTTP pool has connections, so none waits in the pool).
4. **Record** the answers as they land: the task ids first, in a statement of their own
   (`claims.note_upstream_ids`), then every outcome in one transaction that first checks the
   jobs are still queued *and* still leased by us (`claims.hold_leases`): a job cancelled
   meanwhile, or taken over after our lease ran out, is never moved twice. Each kind of outcome
   is one set-based statement, whatever the number of jobs.

Every database call runs on the process's database thread (`worker.offload`); the limiter's
Redis calls run after the record, on the Redis thread, and a Redis error never changes an
outcome.

Crash safety: a job abandoned without ``submit_sent_at`` never left and is queued again; one
with a task id is running; only one marked sent with no task id noted may have been created
upstream unseen, and fails as ``submit_uncertain`` rather than being sent twice (see
`core.maintenance` and docs/pipeline.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from core import claims, metrics
from core.claims import call_budget_seconds
from core.db import Database
from core.limiter import ALL, ProviderLimiter
from core.schedule import DEFAULT_RATE_LIMIT_PAUSE
from core.tables import FAILED, QUEUED, RUNNING, Job
from core.transitions import record_events, transition_held
from worker import observe
from worker.concurrency import settle_as_completed
from worker.context import PumpContext
from worker.sending import NotSent, RoundSender
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
    """Claim, mark, call and record one batch of queued jobs."""
    report = SubmitReport()
    now = ctx.clock()
    if not await ctx.offload.database(_anything_due, ctx.db, now):
        return report
    claim_started = time.monotonic()
    tally = ClaimTally()
    work = await ctx.offload.database(claim_submits, ctx, now=now, report=tally)
    report.failed += tally.failed
    report.deferred += tally.deferred
    for reason, count in tally.by_reason.items():
        report.by_reason[reason] += count
    metrics.record_claim("submit", len(work), time.monotonic() - claim_started)
    if not work:
        return report
    report.claimed = len(work)
    state = _RoundState()
    sender = RoundSender([item.job_id for item in work])
    marking = asyncio.ensure_future(
        sender.run(lambda job_ids: ctx.offload.database(_mark_sent, ctx, job_ids))
    )
    try:
        await settle_as_completed(
            [_submit_call(ctx, item, sender) for item in work],
            lambda results: _record(ctx, results, report=report, state=state),
            on_write_failure=sender.stop,
        )
        await marking  # a mark that failed fails the round, once the rest is recorded
    finally:
        sender.stop()
        if not marking.done():
            # a mark being written finishes (its part then stays home); no later part starts
            await asyncio.wait([marking])
        await ctx.offload.best_effort(
            "releasing in-flight reservations",
            lambda: _release(ctx.limiter, work),
            None,
        )
    if state.any_submitted:
        await ctx.offload.best_effort("noting MetaChat reachable", ctx.limiter.note_reachable, None)
    return report


def _anything_due(db: Database, now: dt.datetime) -> bool:
    with db.read_session() as session:
        return claims.any_due(session, status=QUEUED, now=now)


def _mark_sent(ctx: PumpContext, job_ids: list[str]) -> set[str]:
    with ctx.db.session() as session:
        return claims.mark_submits_sent(session, job_ids, owner=ctx.owner, now=ctx.clock())


async def _submit_call(
    ctx: PumpContext, item: SubmitWork, sender: RoundSender
) -> tuple[SubmitWork, str | BaseException]:
    """One submit, once its part of the round is marked sent. Its time budget covers the
    upstream call alone, and nothing else (no database, no Redis) happens between the answer
    and its return."""
    if not await sender.my_turn(item.job_id):
        return item, NotSent(item.job_id)
    started = time.monotonic()
    outcome: str | BaseException
    leaving = sender.leaving(item.job_id)
    try:
        async with asyncio.timeout(call_budget_seconds(ctx.settings)):
            outcome = await ctx.client.submit(item.request)
    except Exception as exc:  # every failure becomes a verdict, never a crashed pump
        outcome = exc
    finally:
        sender.done_leaving(leaving)
        sender.left(item.job_id)
    observe.upstream_call("submit", item.provider, outcome, time.monotonic() - started)
    return item, outcome


@dataclass
class _RoundState:
    any_submitted: bool = False
    # One shared back-off per round however many calls found MetaChat unreachable.
    unreachable_delay: float | None = None
    paused: bool = False


@dataclass(frozen=True)
class _Plan:
    item: SubmitWork
    outcome: str | BaseException
    verdict: Verdict | None


async def _record(
    ctx: PumpContext,
    results: Sequence[tuple[SubmitWork, str | BaseException]],
    *,
    report: SubmitReport,
    state: _RoundState,
) -> None:
    """Write the outcome of finished calls (step 4), then tell the limiter, best effort."""
    plans = [_plan(ctx, item, outcome) for item, outcome in results]
    unreachable = any(p.verdict and p.verdict.action is Action.UNREACHABLE for p in plans)
    if unreachable and state.unreachable_delay is None:
        failures = await ctx.offload.best_effort(
            "counting unreachable rounds", ctx.limiter.note_unreachable, 1
        )
        state.unreachable_delay = ctx.planner.submit_backoff(failures)
    try:
        await ctx.offload.write(record_submits, ctx, plans, report=report, state=state)
    except BaseException:
        for plan in plans:
            if isinstance(plan.outcome, str):
                log.error(
                    "job %s was accepted by MetaChat as task %s, but the answer could not be "
                    "recorded",
                    plan.item.job_id,
                    plan.outcome,
                )
        raise
    await ctx.offload.best_effort(
        "updating the limiter", lambda: _tell_limiter(ctx, plans, state), None
    )


def _plan(ctx: PumpContext, item: SubmitWork, outcome: str | BaseException) -> _Plan:
    if isinstance(outcome, str | NotSent):
        return _Plan(item, outcome, None)
    verdict = judge_submit_error(
        outcome,
        attempts=item.attempts,
        max_attempts=ctx.settings.submit_max_attempts,
        resubmit_on_uncertain=ctx.settings.resubmit_on_uncertain,
    )
    return _Plan(item, outcome, verdict)


def record_submits(
    ctx: PumpContext, plans: Sequence[_Plan], *, report: SubmitReport, state: _RoundState
) -> None:
    """Step 4 on the database thread: task ids first, then every outcome in one transaction."""
    accepted = [(p.item.job_id, p.outcome) for p in plans if isinstance(p.outcome, str)]
    if accepted:
        with ctx.db.session() as session:
            claims.note_upstream_ids(session, accepted, owner=ctx.owner)
    now = ctx.clock()
    counts = SubmitReport()
    with ctx.db.session() as session:
        held = claims.hold_leases(
            session, [p.item.job_id for p in plans], status=QUEUED, owner=ctx.owner
        )
        mine = [p for p in plans if p.item.job_id in held]
        _lost(session, [p for p in plans if p.item.job_id not in held], now=now)
        counts.lost = len(plans) - len(mine)
        running = [
            _running_values(ctx, p.item, p.outcome, now=now)
            for p in mine
            if isinstance(p.outcome, str)
        ]
        counts.submitted = transition_held(
            session,
            running,
            from_status=QUEUED,
            to_status=RUNNING,
            reason="submitted",
            shared={"attempts": Job.attempts + 1},
            now=now,
        )
        _fail(
            session, [p for p in mine if p.verdict and p.verdict.action is Action.FAIL], now, counts
        )
        _retry(
            ctx,
            session,
            [p for p in mine if p.verdict and p.verdict.action is not Action.FAIL],
            now=now,
            state=state,
            counts=counts,
        )
        # claimed but never marked sent (a mark failed): due again at once, nothing spent
        claims.release_each(
            session,
            [
                {"id": p.item.job_id, "due_at": now, "updated_at": now, "submit_sent_at": None}
                for p in mine
                if isinstance(p.outcome, NotSent)
            ],
            status=QUEUED,
            owner=ctx.owner,
        )
    # only once the transaction committed: a retried write must not count twice
    report.merge(counts)
    state.any_submitted = state.any_submitted or counts.submitted > 0


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


def _fail(session: Session, plans: Sequence[_Plan], now: dt.datetime, counts: SubmitReport) -> None:
    """Failed submits, one set-based transition per failure code."""
    by_code: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for plan in plans:
        verdict = plan.verdict
        assert verdict is not None and verdict.code is not None
        attempts = plan.item.attempts + (1 if verdict.spends_attempt else 0)
        by_code[verdict.code].append(
            {
                "id": plan.item.job_id,
                "error_code": verdict.code,
                "error_message": verdict.message,
                "attempts": attempts,
                "detail": {"attempts": attempts},
            }
        )
        counts.by_reason[verdict.code] += 1
    for code, rows in by_code.items():
        counts.failed += transition_held(
            session, rows, from_status=QUEUED, to_status=FAILED, reason=code, now=now
        )


def _retry(
    ctx: PumpContext,
    session: Session,
    plans: Sequence[_Plan],
    *,
    now: dt.datetime,
    state: _RoundState,
    counts: SubmitReport,
) -> None:
    """Submits to try again later: one release with each row's own due time, one event insert."""
    if not plans:
        return
    releases: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for plan in plans:
        verdict = plan.verdict
        assert verdict is not None
        counts.by_reason[verdict.action.value] += 1
        attempts = plan.item.attempts + (1 if verdict.spends_attempt else 0)
        delay = _retry_delay(ctx, verdict, attempts, state)
        releases.append(
            {
                "id": plan.item.job_id,
                "attempts": attempts,
                "due_at": now + dt.timedelta(seconds=delay),
                "updated_at": now,
                # back in the queue: the next lease starts a new trail
                "submit_sent_at": None,
            }
        )
        events.append(
            {
                "job_id": plan.item.job_id,
                "status": QUEUED,
                "reason": f"submit_{verdict.action.value}",
                "detail": {
                    "error": verdict.message,
                    "attempts": attempts,
                    "retry_in": round(delay, 3),
                },
            }
        )
    counts.retried += claims.release_each(session, releases, status=QUEUED, owner=ctx.owner)
    record_events(session, events, now=now)


def _retry_delay(ctx: PumpContext, verdict: Verdict, attempts: int, state: _RoundState) -> float:
    scale = ctx.settings.poll_time_scale
    if verdict.action is Action.RATE_LIMITED:
        return verdict.retry_after if verdict.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
    if verdict.action is Action.UNREACHABLE:
        return state.unreachable_delay or ctx.planner.submit_backoff(1)
    if verdict.action is Action.AUTH:
        return AUTH_PAUSE_SECONDS * scale
    return ctx.planner.submit_backoff(attempts)


def _lost(session: Session, plans: Sequence[_Plan], *, now: dt.datetime) -> None:
    """Jobs that left our hands mid-call (cancelled, or our lease ran out): a task MetaChat
    made anyway is noted on the row so its cost can be traced. Three statements at most."""
    accepted = {p.item.job_id: p.outcome for p in plans if isinstance(p.outcome, str)}
    if not accepted:
        return
    rows = session.execute(
        select(Job.id, Job.status, Job.upstream_task_id).where(Job.id.in_(list(accepted)))
    ).all()
    # a row already carrying this task id was recorded by an earlier try of this very write
    found = [row for row in rows if row.upstream_task_id != accepted[row.id]]
    if not found:
        return
    table = cast(Table, Job.__table__)
    session.execute(
        update(table)
        .where(
            table.c.id == bindparam("l_id"),
            table.c.upstream_task_id.is_(None),
            table.c.status != QUEUED,
        )
        .values(upstream_task_id=bindparam("l_task")),
        [{"l_id": row.id, "l_task": accepted[row.id]} for row in found],
    )
    record_events(
        session,
        [
            {
                "job_id": row.id,
                "status": row.status,
                "reason": "submitted_after_release",
                "detail": {"upstream_task_id": accepted[row.id]},
            }
            for row in found
        ],
        now=now,
    )
    for row in found:
        log.warning(
            "job %s was %s by the time MetaChat accepted it as task %s",
            row.id,
            row.status,
            accepted[row.id],
        )


def _tell_limiter(ctx: PumpContext, plans: Sequence[_Plan], state: _RoundState) -> None:
    """The limiter's side of a write (on the Redis thread): slow-downs, pauses, releases."""
    limiter = ctx.limiter
    scale = ctx.settings.poll_time_scale
    slowed: dict[str, float] = {}
    for plan in plans:
        verdict = plan.verdict
        if verdict is None:
            continue
        if verdict.action is Action.RATE_LIMITED:
            pause = (
                verdict.retry_after if verdict.retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE
            )
            slowed[plan.item.provider] = max(pause, slowed.get(plan.item.provider, 0.0))
        elif verdict.action is Action.UNREACHABLE and not state.paused:
            state.paused = True
            limiter.pause(ALL, state.unreachable_delay or ctx.planner.submit_backoff(1))
        elif verdict.action is Action.AUTH:
            paused = limiter.pause(ALL, AUTH_PAUSE_SECONDS * scale)
            log.error(
                "MetaChat refused our credentials (%s); submits paused for %.0f s — check "
                "METACHAT_API_KEY / METACHAT_APP_ID",
                verdict.message,
                paused,
            )
        elif verdict.pause_all:
            paused = limiter.pause(ALL, QUOTA_PAUSE_SECONDS * scale)
            log.error("MetaChat account is out of points; submits paused for %.0f s", paused)
    for provider, pause in slowed.items():
        limiter.slow_down(provider, pause)
    _release(limiter, [plan.item for plan in plans])


def _by_provider(items: Iterable[SubmitWork]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for item in items:
        grouped[item.provider].append(item.job_id)
    return grouped


def _release(limiter: ProviderLimiter, work: Sequence[SubmitWork]) -> None:
    for provider, job_ids in _by_provider(work).items():
        limiter.release(provider, job_ids)

"""Step 1 of a submit round: lease the queued jobs that may go to MetaChat now.

In one write transaction: take due queued jobs in fair order (`claims.submit_candidates`), defer
follow-ups whose source has not finished, fail jobs that cannot be sent (source failed, model
gone, budget used up), ask the shared limiter how many of each provider may go, and lease
exactly those. Rows the limiter holds back are left untouched and stay due.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import claims
from core.budget import check_budgets, store_estimates
from core.tables import FAILED, QUEUED, RUNNING, SUCCEEDED, Job
from core.transitions import transition
from metachat.tasks import SubmitRequest
from metachat.validation import SpecError
from worker import codes
from worker.context import PumpContext, lease_seconds


@dataclass(frozen=True)
class SubmitWork:
    """One leased job and the request that submits it."""

    job_id: str
    provider: str
    model: str
    action: str
    attempts: int
    expected_seconds: float
    deadline_seconds: float | None
    request: SubmitRequest


@dataclass
class ClaimTally:
    """What the claim decided besides leasing: jobs failed or deferred, by reason."""

    failed: int = 0
    deferred: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


def claim_limit(ctx: PumpContext) -> int:
    # No more than the connection pool sends at once: a claimed job waiting for a connection
    # would count as "maybe sent" if the process died.
    return max(1, min(ctx.settings.submit_batch_size, ctx.settings.metachat_max_connections))


def claim_submits(ctx: PumpContext, *, now: dt.datetime, report: ClaimTally) -> list[SubmitWork]:
    """Lease the queued jobs that may be submitted now (step 1)."""
    lease_until = now + dt.timedelta(seconds=lease_seconds(ctx.settings))
    reserved: dict[str, list[str]] = defaultdict(list)
    try:
        with ctx.db.session() as session:
            candidates = claims.submit_candidates(session, now=now, limit=claim_limit(ctx))
            ready = _prepare(ctx, session, candidates, now=now, report=report)
            ready = _within_budgets(ctx, session, candidates, ready, now=now, report=report)
            running = claims.running_counts(session)
            by_provider: dict[str, list[str]] = defaultdict(list)
            for item in ready.values():
                by_provider[item.provider].append(item.job_id)
            for provider, job_ids in by_provider.items():
                grant = ctx.limiter.acquire(provider, job_ids, running=running.get(provider, 0))
                reserved[provider].extend(grant.job_ids)
            won = claims.lease_jobs(
                session,
                [job_id for ids in reserved.values() for job_id in ids],
                status=QUEUED,
                owner=ctx.owner,
                now=now,
                until=lease_until,
            )
    except BaseException:
        for provider, job_ids in reserved.items():
            ctx.limiter.release(provider, job_ids)
        raise
    won_ids = {job.id for job in won}
    for provider, job_ids in reserved.items():
        ctx.limiter.release(provider, [job_id for job_id in job_ids if job_id not in won_ids])
    return [ready[job.id] for job in won]


def _prepare(
    ctx: PumpContext,
    session: Session,
    candidates: Sequence[Job],
    *,
    now: dt.datetime,
    report: ClaimTally,
) -> dict[str, SubmitWork]:
    """Build requests; defer follow-ups whose source has not finished, fail impossible jobs."""
    catalogue = ctx.client.catalogue
    source_ids = {job.source_job_id for job in candidates if job.source_job_id}
    sources: dict[str, tuple[str, str | None]] = {}
    if source_ids:
        rows = session.execute(
            select(Job.id, Job.status, Job.upstream_task_id).where(Job.id.in_(source_ids))
        ).all()
        sources = {row.id: (row.status, row.upstream_task_id) for row in rows}
    ready: dict[str, SubmitWork] = {}
    for job in candidates:
        source_task_id: str | None = None
        if job.source_job_id:
            status, source_task_id = sources.get(job.source_job_id, (None, None))
            if status in (QUEUED, RUNNING):
                wait = dt.timedelta(seconds=ctx.planner.source_wait())
                session.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.status == QUEUED, Job.lease_owner.is_(None))
                    .values(due_at=now + wait)
                )
                report.deferred += 1
                continue
            if status != SUCCEEDED or not source_task_id:
                _fail(
                    session,
                    job.id,
                    codes.SOURCE_FAILED,
                    f"the source job {job.source_job_id} is {status or 'gone'}",
                    now=now,
                )
                report.fail(codes.SOURCE_FAILED)
                continue
        try:
            spec = catalogue.action(job.model, job.action)
        except SpecError as exc:
            _fail(session, job.id, codes.INVALID_JOB, str(exc), now=now)
            report.fail(codes.INVALID_JOB)
            continue
        ready[job.id] = SubmitWork(
            job_id=job.id,
            provider=job.provider,
            model=job.model,
            action=job.action,
            attempts=job.attempts or 0,
            expected_seconds=spec.expected_seconds,
            deadline_seconds=job.deadline_seconds,
            request=SubmitRequest(
                model=job.model,
                action=job.action,
                prompt=job.prompt,
                params=job.params or {},
                images=job.images or [],
                source_task_id=source_task_id,
                source_index=job.source_index,
            ),
        )
    return ready


def _within_budgets(
    ctx: PumpContext,
    session: Session,
    candidates: Sequence[Job],
    ready: dict[str, SubmitWork],
    *,
    now: dt.datetime,
    report: ClaimTally,
) -> dict[str, SubmitWork]:
    """Fail the jobs that would cross their key's or batch's budget (`core.budget`)."""
    jobs = [job for job in candidates if job.id in ready]
    if not jobs:
        return ready
    verdict = check_budgets(session, jobs, catalogue=ctx.client.catalogue, now=now)
    for job_id, message in verdict.refused.items():
        _fail(session, job_id, codes.BUDGET_EXCEEDED, message, now=now)
        report.fail(codes.BUDGET_EXCEEDED)
    store_estimates(session, verdict)
    return {job_id: item for job_id, item in ready.items() if job_id not in verdict.refused}


def _fail(session: Session, job_id: str, code: str, message: str, *, now: dt.datetime) -> None:
    transition(
        session,
        job_id,
        from_status=QUEUED,
        to_status=FAILED,
        reason=code,
        values={"error_code": code, "error_message": message},
        now=now,
    )

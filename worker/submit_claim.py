"""Step 1 of a submit round: lease the queued jobs that may go to MetaChat now.

1. **Look** (a read, no lock): the due queued jobs in fair order (`claims` explains the order),
   the state of the sources of follow-ups, and how many jobs run upstream per provider. Decide
   which jobs wait for their source and which cannot be sent at all.
2. **Ask the shared limiter** how many of each provider may go, before any row is locked: a
   slow Redis never holds database locks.
3. **Lease** in one write transaction, a constant number of statements whatever the number of
   rows: lock the batches and API keys of those jobs (their budget totals, `core.budget`), then
   the jobs themselves (``SKIP LOCKED``: another pump's rows are left to it), defer follow-ups
   whose source has not finished, fail jobs that cannot be sent or would cross a budget, lease
   the rest and hold their estimated points against the budgets.

Grants the lease did not use (a job another pump took first, one refused by its budget) are
given back to the limiter. Rows the limiter held back are left untouched and stay due.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from core import claims
from core.budget import BudgetLedger, estimate_points, open_ledger, preview_ledger
from core.cancel import Ending, end_queued_jobs
from core.tables import FAILED, QUEUED, RUNNING, SUCCEEDED, Job
from metachat.specs import SYNC_PROVIDERS
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


@dataclass(frozen=True)
class _Candidate:
    """A due queued job as the look saw it (without a lock)."""

    id: str
    provider: str
    api_key_id: str
    batch_id: str | None
    model: str
    action: str
    expected_seconds: float = 0.0
    source_task_id: str | None = None


@dataclass
class _Plan:
    """What the look decided, in claim order. `unlikely`: jobs the budgets would refuse as
    the look saw them; the limiter is not asked for them, the lease judges them again."""

    sendable: list[_Candidate] = field(default_factory=list)
    unlikely: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    doomed: dict[str, Ending] = field(default_factory=dict)
    parents: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    estimates: dict[str, int] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)


def claim_limit(ctx: PumpContext) -> int:
    # No more than the connection pool sends at once: a claimed job waiting for a connection
    # would count as "maybe sent" if the process died.
    return max(1, min(ctx.settings.submit_batch_size, ctx.settings.metachat_max_connections))


def claim_submits(
    ctx: PumpContext,
    *,
    now: dt.datetime,
    report: ClaimTally,
    sync: bool = False,
    limit: int | None = None,
    lease_for: float | None = None,
) -> list[SubmitWork]:
    """Lease the queued jobs that may be submitted now (step 1).

    ``sync``: the synchronous providers' jobs only (the OpenAI-compatible host, whose one call
    is the whole job, `worker.sync_calls`), up to ``limit``, leased for ``lease_for`` seconds;
    otherwise every other provider's.
    """
    with ctx.db.read_session() as session:
        plan = _look(
            ctx, session, now=now, sync=sync, limit=claim_limit(ctx) if limit is None else limit
        )
    if not (plan.sendable or plan.unlikely or plan.deferred or plan.doomed):
        return []
    granted = _ask_limiter(ctx, plan)
    leased: list[SubmitWork] = []
    try:
        with ctx.db.session() as session:
            work = _lease(
                ctx,
                session,
                plan,
                granted,
                now=now,
                report=report,
                lease_for=lease_seconds(ctx.settings) if lease_for is None else lease_for,
            )
        leased = work
    finally:
        used = {item.job_id for item in leased}
        for provider, job_ids in granted.items():
            unused = [job_id for job_id in job_ids if job_id not in used]
            if unused:
                ctx.limiter.release(provider, unused)
    return leased


def _look(ctx: PumpContext, session: Session, *, now: dt.datetime, sync: bool, limit: int) -> _Plan:
    """Step 1: the candidates in fair order and what can be decided about them without locks.

    A source job's state read here stays true: a succeeded or failed source never changes,
    and deferring a follow-up whose source finishes meanwhile only delays it a little.
    """
    candidates = claims.submit_candidates(
        session, now=now, limit=limit, providers=SYNC_PROVIDERS, exclude=not sync
    )
    plan = _Plan()
    if not candidates:
        return plan
    source_ids = {row.source_job_id for row in candidates if row.source_job_id}
    sources: dict[str, tuple[str, str | None]] = {}
    if source_ids:
        rows = session.execute(
            select(Job.id, Job.status, Job.upstream_task_id).where(Job.id.in_(source_ids))
        ).all()
        sources = {row.id: (row.status, row.upstream_task_id) for row in rows}
    catalogue = ctx.client.catalogue
    for row in candidates:
        plan.parents[row.id] = (row.api_key_id, row.batch_id)
        source_task_id: str | None = None
        if row.source_job_id:
            status, source_task_id = sources.get(row.source_job_id, (None, None))
            if status in (QUEUED, RUNNING):
                plan.deferred.append(row.id)
                continue
            if status != SUCCEEDED or not source_task_id:
                plan.doomed[row.id] = _ending(
                    codes.SOURCE_FAILED, f"the source job {row.source_job_id} is {status or 'gone'}"
                )
                continue
        try:
            spec = catalogue.action(row.model, row.action)
        except SpecError as exc:
            plan.doomed[row.id] = _ending(codes.INVALID_JOB, str(exc))
            continue
        plan.sendable.append(
            _Candidate(
                id=row.id,
                provider=row.provider,
                api_key_id=row.api_key_id,
                batch_id=row.batch_id,
                model=row.model,
                action=row.action,
                expected_seconds=spec.expected_seconds,
                source_task_id=source_task_id,
            )
        )
    if plan.sendable:
        _preview_budgets(ctx, session, plan, candidates, now=now)
    if plan.sendable:
        plan.running = claims.running_counts(session)
    return plan


def _preview_budgets(
    ctx: PumpContext, session: Session, plan: _Plan, rows: Sequence[Row[Any]], *, now: dt.datetime
) -> None:
    """Estimate the sendable jobs and set aside those the budgets would refuse as they stand,
    so a tenant whose budget is used up does not spend everyone's limiter grants."""
    sendable = {candidate.id for candidate in plan.sendable}
    rows = [row for row in rows if row.id in sendable]
    plan.estimates = estimate_points(session, rows, catalogue=ctx.client.catalogue, now=now)
    preview = preview_ledger(
        session,
        api_key_ids=(row.api_key_id for row in rows),
        batch_ids=(row.batch_id for row in rows),
        now=now,
    )
    refused = preview.admit(rows, plan.estimates).refused
    plan.unlikely = [c.id for c in plan.sendable if c.id in refused]
    plan.sendable = [c for c in plan.sendable if c.id not in refused]


def _ask_limiter(ctx: PumpContext, plan: _Plan) -> dict[str, list[str]]:
    """Step 2: reserve room for each provider's candidates, in claim order."""
    by_provider: dict[str, list[str]] = defaultdict(list)
    for candidate in plan.sendable:
        by_provider[candidate.provider].append(candidate.id)
    granted: dict[str, list[str]] = {}
    try:
        for provider, job_ids in by_provider.items():
            grant = ctx.limiter.acquire(provider, job_ids, running=plan.running.get(provider, 0))
            granted[provider] = list(grant.job_ids)
    except BaseException:
        for provider, job_ids in granted.items():
            ctx.limiter.release(provider, job_ids)
        raise
    return granted


def _lease(
    ctx: PumpContext,
    session: Session,
    plan: _Plan,
    granted: Mapping[str, Sequence[str]],
    *,
    now: dt.datetime,
    report: ClaimTally,
    lease_for: float,
) -> list[SubmitWork]:
    """Step 3, in the lock order of `core.budget`: batches and keys, then jobs."""
    allowed = {job_id for job_ids in granted.values() for job_id in job_ids}
    to_settle = allowed | set(plan.doomed) | set(plan.unlikely)
    ledger: BudgetLedger | None = None
    if to_settle:
        ledger = open_ledger(
            session,
            api_key_ids=(plan.parents[job_id][0] for job_id in to_settle),
            batch_ids=(plan.parents[job_id][1] for job_id in to_settle),
            now=now,
        )
    locked = _lock_jobs(session, to_settle | set(plan.deferred), now=now)
    deferred = [job_id for job_id in plan.deferred if job_id in locked]
    if deferred:
        wait = dt.timedelta(seconds=ctx.planner.source_wait())
        session.execute(
            update(Job)
            .where(Job.id.in_(deferred))
            .values(due_at=now + wait)
            .execution_options(synchronize_session=False)
        )
        report.deferred += len(deferred)
    if ledger is None:
        return []
    endings = {job_id: ending for job_id, ending in plan.doomed.items() if job_id in locked}
    ledger.release(locked[job_id] for job_id in endings)
    deciding = [locked[c.id] for c in plan.sendable if c.id in allowed and c.id in locked]
    verdict = ledger.admit(deciding, plan.estimates)
    # judged again under the locks: refused ones fail; any that fit now wait for a grant
    second = ledger.admit([locked[i] for i in plan.unlikely if i in locked], plan.estimates)
    ledger.undo(list(second.holds))
    for job_id, message in (verdict.refused | second.refused).items():
        endings[job_id] = _ending(codes.BUDGET_EXCEEDED, message)
    for ended in end_queued_jobs(
        session, Job.id.in_(list(endings)), endings, to_status=FAILED, now=now
    ):
        report.fail(endings[ended.id].code)
    admitted = [job.id for job in deciding if job.id in verdict.holds]
    won = {
        job.id: job
        for job in claims.lease_jobs(
            session,
            admitted,
            status=QUEUED,
            owner=ctx.owner,
            now=now,
            until=now + dt.timedelta(seconds=lease_for),
        )
    }
    ledger.undo([job_id for job_id in admitted if job_id not in won])
    ledger.flush()
    return [
        _work(candidate, won[candidate.id]) for candidate in plan.sendable if candidate.id in won
    ]


def _lock_jobs(session: Session, job_ids: set[str], *, now: dt.datetime) -> dict[str, Job]:
    """Lock those of ``job_ids`` still queued, due and unclaimed; skip rows another holds."""
    if not job_ids:
        return {}
    rows = session.scalars(
        select(Job)
        .where(
            Job.id.in_(sorted(job_ids)),
            Job.status == QUEUED,
            Job.lease_owner.is_(None),
            claims.is_due(now),
        )
        .with_for_update(skip_locked=True, of=Job)
        .execution_options(populate_existing=True)
    )
    return {job.id: job for job in rows}


def _work(candidate: _Candidate, job: Job) -> SubmitWork:
    return SubmitWork(
        job_id=job.id,
        provider=job.provider,
        model=job.model,
        action=job.action,
        attempts=job.attempts or 0,
        expected_seconds=candidate.expected_seconds,
        deadline_seconds=job.deadline_seconds,
        request=SubmitRequest(
            model=job.model,
            action=job.action,
            prompt=job.prompt,
            params=job.params or {},
            images=job.images or [],
            source_task_id=candidate.source_task_id,
            source_index=job.source_index,
        ),
    )


def _ending(code: str, message: str) -> Ending:
    return Ending(code=code, message=message, reason=code)

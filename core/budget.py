"""Credit budgets: an API key may carry a daily and a total limit (`max_points_daily`,
`max_points_total`), a batch a limit of its own (`max_points`). A queued job that would cross any
of them is not submitted; the submit pump fails it with `budget_exceeded`.

How spending is counted (the same for keys and batches):

- spent = the actual `cost_points` of every job that has one, plus the `estimated_points` of
  running jobs whose cost is not known yet (MetaChat charges at submit; the cost arrives with the
  result). Queued jobs cost nothing yet.
- "today" is the UTC calendar day of `submitted_at`: the daily budget counts the jobs sent upstream
  today, whenever they were created.
- the next job's estimate: its own `estimated_points` if set, else the catalogue price of its
  model and action when one is configured, else the average actual cost of that model's recent
  jobs (the last `HISTORY_JOBS` costed jobs of the last `HISTORY_DAYS` days), else 0.
- a job goes ahead when spent + its estimate stays within every limit that applies; once a limit
  is used up (spent ≥ limit) no job goes ahead, even one estimated at 0 points.
- jobs are decided in the order given (the claim order), and each job let through counts at its
  estimate for the ones after it, so one claim of 200 jobs cannot overshoot together.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from core.tables import QUEUED, RUNNING, ApiKey, Batch, Job, utcnow
from metachat import Catalogue, UnknownAction, UnknownModel

BUDGET_EXCEEDED = "budget_exceeded"
HISTORY_JOBS = 500
HISTORY_DAYS = 30


class PricedSpec(Protocol):
    """What a pre-flight estimate needs of a job spec (a `ValidatedSpec` fits)."""

    @property
    def model(self) -> str: ...
    @property
    def action(self) -> str: ...


@dataclass(frozen=True)
class BudgetVerdict:
    """The outcome of `check_budgets` for one claim of queued jobs.

    `refused` maps the id of each job to fail with `budget_exceeded` to a message naming the
    limit. `estimates` holds the estimate of every job checked: store it as the job's
    `estimated_points` when submitting it, so running jobs count before their cost is known.
    """

    refused: dict[str, str] = field(default_factory=dict)
    estimates: dict[str, int] = field(default_factory=dict)

    @property
    def refused_ids(self) -> list[str]:
        return list(self.refused)


@dataclass(frozen=True)
class BudgetEstimate:
    """A pre-flight answer for `POST /v1/batches?dry_run=true`.

    `remaining` holds what is left of each limit before this batch (`None`: no such limit);
    `unpriced` counts the jobs estimated at 0 because nothing is known of their price.
    """

    estimated_points: int
    fits_budget: bool
    remaining: dict[str, int | None]
    unpriced: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "estimated_points": self.estimated_points,
            "fits_budget": self.fits_budget,
            "remaining": dict(self.remaining),
            "unpriced_jobs": self.unpriced,
        }


_LIMIT_NAMES = {
    "daily": "the API key's daily budget",
    "total": "the API key's total budget",
    "batch": "the batch's budget",
}


@dataclass
class _Limit:
    kind: str  # daily | total | batch
    limit: int
    spent: int

    def admits(self, points: int) -> bool:
        return self.spent < self.limit and self.spent + points <= self.limit

    def refusal(self, points: int) -> str:
        return (
            f"{_LIMIT_NAMES[self.kind]} of {self.limit} points: {self.spent} spent or "
            f"committed, this job needs about {points}"
        )


def check_budgets(
    session: Session,
    jobs: Sequence[Job],
    *,
    catalogue: Catalogue | None = None,
    now: dt.datetime | None = None,
) -> BudgetVerdict:
    """Decide which of these claimed queued jobs would cross their key's or batch's budget.

    The submit pump calls this inside its claim transaction and fails the refused jobs with
    `transition(..., to_status="failed", reason="budget_exceeded",
    values={"error_code": "budget_exceeded", "error_message": verdict.refused[id]})`.
    Costs one query per kind of limit in play, none when no job has a budget.
    """
    now = now or utcnow()
    estimates = estimate_points(session, jobs, catalogue=catalogue, now=now)
    verdict = BudgetVerdict(estimates=estimates)
    key_ids = sorted({job.api_key_id for job in jobs})
    batch_ids = sorted({job.batch_id for job in jobs if job.batch_id is not None})
    # Row locks (PostgreSQL; SQLite's write transaction is already exclusive) make pumps that
    # claim jobs of the same key or batch decide one after the other, each seeing the other's
    # leased jobs as committed, so two claims cannot overshoot a budget together.
    keys = session.scalars(
        select(ApiKey)
        .where(
            ApiKey.id.in_(key_ids),
            or_(ApiKey.max_points_daily.is_not(None), ApiKey.max_points_total.is_not(None)),
        )
        .order_by(ApiKey.id)
        .with_for_update()
    ).all()
    batches = session.scalars(
        select(Batch)
        .where(Batch.id.in_(batch_ids), Batch.max_points.is_not(None))
        .order_by(Batch.id)
        .with_for_update()
    ).all()
    if not keys and not batches:
        return verdict
    deciding = [job.id for job in jobs]
    limits = _key_limits(session, keys, now, deciding) | _batch_limits(
        session, batches, now, deciding
    )
    for job in jobs:
        applying = [
            limit
            for scope in (("key", job.api_key_id), ("batch", job.batch_id))
            for limit in limits.get(scope, [])
        ]
        points = estimates[job.id]
        blocked = next((limit for limit in applying if not limit.admits(points)), None)
        if blocked is not None:
            verdict.refused[job.id] = blocked.refusal(points)
            continue
        for limit in applying:
            limit.spent += points
    return verdict


def store_estimates(session: Session, verdict: BudgetVerdict) -> None:
    """Write each checked job's estimate to `estimated_points` where none is stored, so other
    pumps count it while it is in flight. Call it in the claim transaction."""
    rows = [
        {"id": job_id, "estimated_points": points}
        for job_id, points in verdict.estimates.items()
        if job_id not in verdict.refused
    ]
    if rows:
        session.execute(
            update(Job).where(Job.estimated_points.is_(None)),
            rows,
            execution_options={"synchronize_session": None},
        )


def estimate(
    session: Session,
    api_key: ApiKey,
    specs: Sequence[PricedSpec],
    *,
    max_points: int | None = None,
    catalogue: Catalogue | None = None,
    now: dt.datetime | None = None,
) -> BudgetEstimate:
    """What a batch of `specs` would cost and whether it fits `api_key`'s budgets and its own
    `max_points`, judged the way `check_budgets` will judge its jobs."""
    now = now or utcnow()
    pairs = [(spec.model, spec.action, getattr(spec, "price_points", None)) for spec in specs]
    known = _catalogue_prices(catalogue, {(m, a) for m, a, _ in pairs})
    missing = {m for m, a, price in pairs if price is None and known.get((m, a)) is None}
    history = _average_costs(session, missing, now)
    total = unpriced = 0
    for model, action, price in pairs:
        points = price if price is not None else known.get((model, action))
        if points is None:
            points = history.get(model)
        if points is None:
            unpriced += 1
        total += points or 0
    limits = _key_limits(session, [api_key], now).get(("key", api_key.id), [])
    if max_points is not None:
        limits.append(_Limit("batch", max_points, 0))
    remaining: dict[str, int | None] = dict.fromkeys(_LIMIT_NAMES)
    for limit in limits:
        remaining[limit.kind] = max(0, limit.limit - limit.spent)
    fits = all(limit.admits(total) for limit in limits)
    return BudgetEstimate(
        estimated_points=total, fits_budget=fits, remaining=remaining, unpriced=unpriced
    )


def estimate_points(
    session: Session,
    jobs: Iterable[Job],
    *,
    catalogue: Catalogue | None = None,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Each job's expected cost in points, by the rules in this module's docstring."""
    now = now or utcnow()
    jobs = list(jobs)
    prices = _catalogue_prices(catalogue, {(job.model, job.action) for job in jobs})
    missing = {
        job.model
        for job in jobs
        if job.estimated_points is None and prices.get((job.model, job.action)) is None
    }
    history = _average_costs(session, missing, now)
    result: dict[str, int] = {}
    for job in jobs:
        points = job.estimated_points
        if points is None:
            points = prices.get((job.model, job.action))
        if points is None:
            points = history.get(job.model, 0)
        result[job.id] = int(points)
    return result


def _catalogue_prices(
    catalogue: Catalogue | None, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int | None]:
    if catalogue is None:
        return {}
    prices: dict[tuple[str, str], int | None] = {}
    for model, action in pairs:
        try:
            prices[(model, action)] = catalogue.action(model, action).price_points
        except (UnknownModel, UnknownAction):
            prices[(model, action)] = None
    return prices


def _average_costs(session: Session, models: Iterable[str], now: dt.datetime) -> dict[str, int]:
    """The rounded average cost of each model's recent costed jobs (models with none left out)."""
    averages: dict[str, int] = {}
    for model in sorted(set(models)):
        recent = (
            select(Job.cost_points.label("cost"))
            .where(
                Job.model == model,
                Job.cost_points.is_not(None),
                Job.finished_at >= now - dt.timedelta(days=HISTORY_DAYS),
            )
            .order_by(Job.finished_at.desc())
            .limit(HISTORY_JOBS)
            .subquery()
        )
        average = session.scalar(select(func.avg(recent.c.cost)))
        if average is not None:
            averages[model] = round(float(average))
    return averages


def _claimed(now: dt.datetime) -> ColumnElement[bool]:
    """Queued but leased by a pump (maybe another one) that is about to submit it."""
    return and_(Job.status == QUEUED, Job.lease_until > now)


def _in_flight(now: dt.datetime) -> ColumnElement[bool]:
    return or_(Job.status == RUNNING, _claimed(now))


def _committed(now: dt.datetime) -> ColumnElement[int]:
    """Points a job counts for: its cost, else its estimate while it is in flight."""
    return case(
        (Job.cost_points.is_not(None), Job.cost_points),
        (_in_flight(now), func.coalesce(Job.estimated_points, 0)),
        else_=0,
    )


def _key_limits(
    session: Session, keys: Sequence[ApiKey], now: dt.datetime, exclude: Sequence[str] = ()
) -> dict[tuple[str, str | None], list[_Limit]]:
    if not keys:
        return {}
    day_start = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
    committed = _committed(now)
    today = case(
        (
            or_(Job.submitted_at >= day_start, and_(Job.status == QUEUED, _in_flight(now))),
            committed,
        ),
        else_=0,
    )
    spent: Mapping[str, tuple[int, int]] = {
        key_id: (int(total or 0), int(daily or 0))
        for key_id, total, daily in session.execute(
            select(Job.api_key_id, func.sum(committed), func.sum(today))
            .where(Job.api_key_id.in_([key.id for key in keys]), *_not_in(exclude))
            .group_by(Job.api_key_id)
        ).all()
    }
    limits: dict[tuple[str, str | None], list[_Limit]] = defaultdict(list)
    for key in keys:
        total, daily = spent.get(key.id, (0, 0))
        if key.max_points_daily is not None:
            limits[("key", key.id)].append(_Limit("daily", key.max_points_daily, daily))
        if key.max_points_total is not None:
            limits[("key", key.id)].append(_Limit("total", key.max_points_total, total))
    return limits


def _not_in(job_ids: Sequence[str]) -> list[ColumnElement[bool]]:
    # the jobs being decided are leased by this very claim: they count in the loop, not here
    return [Job.id.not_in(list(job_ids))] if job_ids else []


def _batch_limits(
    session: Session, batches: Sequence[Batch], now: dt.datetime, exclude: Sequence[str] = ()
) -> dict[tuple[str, str | None], list[_Limit]]:
    if not batches:
        return {}
    spent = dict(
        session.execute(
            select(Job.batch_id, func.sum(_committed(now)))
            .where(Job.batch_id.in_([batch.id for batch in batches]), *_not_in(exclude))
            .group_by(Job.batch_id)
        ).all()
    )
    return {
        ("batch", batch.id): [
            _Limit("batch", int(batch.max_points or 0), int(spent.get(batch.id) or 0))
        ]
        for batch in batches
    }

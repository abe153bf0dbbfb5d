"""Credit budgets: which claimed jobs are refused with `budget_exceeded`, and the pre-flight
estimate a dry-run batch answers with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update

from core.budget import check_budgets, estimate, estimate_points, store_estimates
from core.db import Database
from core.keys import create_api_key
from core.tables import ApiKey, Job
from metachat import CatalogueOverrides, build_catalogue
from tests.support.ops_data import NOW, add_batch, add_job, finished_job

EARLY = NOW - dt.timedelta(hours=2)
YESTERDAY = NOW - dt.timedelta(days=1)


def _key(db: Database, *, daily: int | None = None, total: int | None = None) -> str:
    with db.session() as s:
        key_id = create_api_key(s, name="tenant").id
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(max_points_daily=daily, max_points_total=total)
        )
    return key_id


def _spent(db: Database, key_id: str, points: int, *, at: dt.datetime, **values: object) -> None:
    with db.session() as s:
        finished_job(
            s,
            key_id,
            status="succeeded",
            provider="flux",
            model="flux-2-pro",
            finished_at=at,
            upstream_seconds=5,
            cost_points=points,
            **values,
        )


def _queued(
    db: Database, key_id: str, n: int, *, points: int | None = 10, **values: object
) -> list[Job]:
    with db.session() as s:
        return [
            add_job(
                s,
                key_id,
                status="queued",
                provider="flux",
                model="flux-2-pro",
                created_at=NOW - dt.timedelta(seconds=n - i),
                estimated_points=points,
                **values,
            )
            for i in range(n)
        ]


def _check(db: Database, jobs: list[Job], **kwargs: object) -> list[str]:
    with db.session() as s:
        verdict = check_budgets(s, jobs, now=NOW, **kwargs)  # type: ignore[arg-type]
    return [job.id for job in jobs if job.id in verdict.refused]


def test_jobs_without_budgets_all_go_ahead(db: Database) -> None:
    key_id = _key(db)
    _spent(db, key_id, 10_000, at=EARLY)
    assert _check(db, _queued(db, key_id, 3)) == []


def test_a_daily_budget_lets_jobs_through_until_the_next_would_cross_it(db: Database) -> None:
    key_id = _key(db, daily=100)
    _spent(db, key_id, 60, at=EARLY)
    _spent(db, key_id, 500, at=YESTERDAY)
    with db.session() as s:
        add_job(
            s,
            key_id,
            status="running",
            provider="flux",
            model="flux-2-pro",
            created_at=EARLY,
            submitted_at=EARLY,
            estimated_points=20,
        )
    jobs = _queued(db, key_id, 3)
    # 60 spent + 20 running = 80; 10 → 90, 10 → 100 (exactly the limit), the third crosses it
    assert _check(db, jobs) == [jobs[2].id]


def test_the_refusal_says_which_limit_and_how_much_was_spent(db: Database) -> None:
    key_id = _key(db, daily=50)
    _spent(db, key_id, 45, at=EARLY)
    (job,) = _queued(db, key_id, 1)
    with db.session() as s:
        verdict = check_budgets(s, [job], now=NOW)
    assert verdict.refused_ids == [job.id]
    assert "daily budget of 50 points: 45 spent" in verdict.refused[job.id]


def test_a_total_budget_counts_every_day(db: Database) -> None:
    key_id = _key(db, total=100)
    _spent(db, key_id, 95, at=YESTERDAY)
    jobs = _queued(db, key_id, 1)
    assert _check(db, jobs) == [jobs[0].id]


def test_a_used_up_budget_stops_even_jobs_estimated_at_zero(db: Database) -> None:
    key_id = _key(db, total=100)
    _spent(db, key_id, 100, at=YESTERDAY)
    jobs = _queued(db, key_id, 1, points=0)
    assert _check(db, jobs) == [jobs[0].id]


def test_a_batch_budget_stops_only_that_batch(db: Database) -> None:
    key_id = _key(db)
    with db.session() as s:
        batch_id = add_batch(s, key_id, created_at=EARLY, total=3, max_points=30).id
    _spent(db, key_id, 25, at=EARLY, batch_id=batch_id)
    in_batch = _queued(db, key_id, 1, batch_id=batch_id)
    outside = _queued(db, key_id, 1)
    assert _check(db, in_batch + outside) == [in_batch[0].id]


def test_jobs_leased_by_another_pump_count_against_the_budget(db: Database) -> None:
    key_id = _key(db, daily=100)
    _queued(db, key_id, 1, points=95, lease_until=NOW + dt.timedelta(seconds=30))
    _queued(db, key_id, 1, points=95, lease_until=NOW - dt.timedelta(seconds=30))  # lapsed
    jobs = _queued(db, key_id, 1)
    assert _check(db, jobs) == [jobs[0].id]


def test_cancelled_and_failed_jobs_without_a_cost_count_nothing(db: Database) -> None:
    key_id = _key(db, daily=100)
    with db.session() as s:
        for status in ("failed", "cancelled", "timed_out"):
            finished_job(
                s,
                key_id,
                status=status,
                provider="flux",
                model="flux-2-pro",
                finished_at=EARLY,
                upstream_seconds=5,
                estimated_points=90,
            )
    assert _check(db, _queued(db, key_id, 1)) == []


@dataclass(frozen=True)
class EstimateCase:
    stored: int | None
    catalogue_price: int | None
    history: tuple[int, ...]
    expected: int


@pytest.mark.parametrize(
    "case",
    [
        EstimateCase(stored=7, catalogue_price=3, history=(100,), expected=7),
        EstimateCase(stored=None, catalogue_price=3, history=(100,), expected=3),
        EstimateCase(stored=None, catalogue_price=None, history=(10, 20, 30), expected=20),
        EstimateCase(stored=None, catalogue_price=None, history=(), expected=0),
    ],
    ids=["stored-estimate-first", "then-catalogue-price", "then-model-average", "else-zero"],
)
def test_a_job_estimate_falls_back_from_stored_to_price_to_history(
    db: Database, case: EstimateCase
) -> None:
    key_id = _key(db)
    for points in case.history:
        _spent(db, key_id, points, at=EARLY)
    (job,) = _queued(db, key_id, 1, points=case.stored)
    prices = {} if case.catalogue_price is None else {"flux-2-pro": case.catalogue_price}
    catalogue = build_catalogue(CatalogueOverrides(prices=prices))
    with db.read_session() as s:
        assert estimate_points(s, [job], catalogue=catalogue, now=NOW) == {job.id: case.expected}


def test_store_estimates_fills_only_missing_estimates_of_admitted_jobs(db: Database) -> None:
    key_id = _key(db, daily=25)
    _spent(db, key_id, 12, at=EARLY)
    jobs = _queued(db, key_id, 1, points=None) + _queued(db, key_id, 1, points=5)
    jobs += _queued(db, key_id, 1, points=None)
    with db.session() as s:
        verdict = check_budgets(s, jobs, now=NOW)
        store_estimates(s, verdict)
    with db.read_session() as s:
        stored = dict(s.execute(select(Job.id, Job.estimated_points)).all())
    # the average of history is 12: 12 + 12 → 24 fits, + 5 → 29 does not, the last 12 neither
    assert verdict.refused_ids == [jobs[1].id, jobs[2].id]
    assert stored[jobs[0].id] == 12
    assert stored[jobs[1].id] == 5
    assert stored[jobs[2].id] is None


@dataclass(frozen=True)
class Spec:
    model: str
    action: str


def test_a_dry_run_estimate_reports_what_remains_of_each_limit(db: Database) -> None:
    key_id = _key(db, daily=100, total=1000)
    _spent(db, key_id, 40, at=EARLY)
    _spent(db, key_id, 300, at=YESTERDAY)
    catalogue = build_catalogue(CatalogueOverrides(prices={"flux-2-pro": 20}))
    specs = [Spec("flux-2-pro", "generate")] * 3 + [Spec("z-image-turbo", "generate")]
    with db.read_session() as s:
        key = s.get(ApiKey, key_id)
        assert key is not None
        fits = estimate(s, key, specs, catalogue=catalogue, now=NOW)
        too_big = estimate(s, key, specs, max_points=50, catalogue=catalogue, now=NOW)
    assert fits.as_json() == {
        "estimated_points": 60,
        "fits_budget": True,
        "remaining": {"daily": 60, "total": 660, "batch": None},
        "unpriced_jobs": 1,
    }
    assert (too_big.fits_budget, too_big.remaining["batch"]) == (False, 50)

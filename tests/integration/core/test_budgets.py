"""Credit budgets: which claimed jobs are refused with `budget_exceeded`, what every job holds
against its key's and batch's running totals whatever became of it, and the pre-flight estimate
a dry-run batch answers with. Jobs are held the way a submit claim holds them (`_claim`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select, update

from core.budget import estimate, estimate_points, open_ledger, settle_costs
from core.cancel import cancel_batch, cancel_job
from core.db import Database
from core.keys import create_api_key
from core.retention import prune
from core.settings import Settings
from core.tables import ApiKey, Batch, Job
from metachat import Catalogue, CatalogueOverrides, build_catalogue
from tests.support.budget_races import batch_totals, key_totals
from tests.support.ops_data import NOW, add_batch, add_job, finished_job

EARLY = NOW - dt.timedelta(hours=2)
YESTERDAY = NOW - dt.timedelta(days=1)
TOMORROW = NOW + dt.timedelta(days=1)


def _key(db: Database, *, daily: int | None = None, total: int | None = None) -> str:
    with db.session() as s:
        key_id = create_api_key(s, name="tenant").id
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(max_points_daily=daily, max_points_total=total)
        )
    return key_id


def _batch(db: Database, key_id: str, *, max_points: int | None) -> str:
    with db.session() as s:
        return add_batch(s, key_id, created_at=EARLY, total=0, max_points=max_points).id


def _queued(
    db: Database, key_id: str, n: int = 1, *, points: int | None = 10, **values: Any
) -> list[str]:
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
            ).id
            for i in range(n)
        ]


def _claim(
    db: Database,
    job_ids: Sequence[str],
    *,
    now: dt.datetime = NOW,
    catalogue: Catalogue | None = None,
) -> list[str]:
    """Judge and hold these jobs as a submit claim does; returns the refused ids in order."""
    with db.session() as s:
        jobs = [s.get_one(Job, job_id) for job_id in job_ids]
        ledger = open_ledger(
            s,
            api_key_ids=[job.api_key_id for job in jobs],
            batch_ids=[job.batch_id for job in jobs],
            now=now,
        )
        verdict = ledger.admit(jobs, estimate_points(s, jobs, catalogue=catalogue, now=now))
        ledger.flush()
    return [job_id for job_id in job_ids if job_id in verdict.refused]


def _held(db: Database, key_id: str, points: int, *, at: dt.datetime = EARLY, **then: Any) -> str:
    """A job a claim held `points` for at `at` (whatever the limits), whose row then became
    `then`."""
    [job_id] = _queued(db, key_id, points=points, batch_id=then.pop("batch_id", None))
    with db.session() as s:
        job = s.get_one(Job, job_id)
        ledger = open_ledger(s, api_key_ids=[key_id], batch_ids=[job.batch_id], now=at)
        ledger.change(job, points, at.date())
        ledger.flush()
    values = {"status": "running", "upstream_task_id": f"task-{job_id}", "submitted_at": at}
    values.update(then)
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))
    return job_id


def _assert_totals_match_holds(db: Database, key_id: str, batch_id: str | None = None) -> None:
    totals = key_totals(db, key_id)
    assert totals.committed == totals.held
    if batch_id is not None:
        batch = batch_totals(db, batch_id)
        assert batch.committed == batch.held


def test_jobs_without_budgets_all_go_ahead_and_still_count(db: Database) -> None:
    key_id = _key(db)
    _held(db, key_id, 10_000, at=YESTERDAY, status="succeeded", cost_points=10_000)
    assert _claim(db, _queued(db, key_id, 3)) == []
    assert key_totals(db, key_id).committed == 10_030
    _assert_totals_match_holds(db, key_id)


def test_a_daily_budget_lets_jobs_through_until_the_next_would_cross_it(db: Database) -> None:
    key_id = _key(db, daily=100)
    _held(db, key_id, 60, status="succeeded", cost_points=60)
    _held(db, key_id, 500, at=YESTERDAY, status="succeeded", cost_points=500)
    _held(db, key_id, 20)
    jobs = _queued(db, key_id, 3)
    # 60 spent + 20 running = 80; 10 → 90, 10 → 100 (exactly the limit), the third crosses it
    assert _claim(db, jobs) == [jobs[2]]


def test_the_refusal_says_which_limit_and_how_much_was_spent(db: Database) -> None:
    key_id = _key(db, daily=50)
    _held(db, key_id, 45, status="succeeded", cost_points=45)
    [job_id] = _queued(db, key_id)
    with db.session() as s:
        job = s.get_one(Job, job_id)
        ledger = open_ledger(s, api_key_ids=[key_id], now=NOW)
        verdict = ledger.admit([job], {job_id: 10})
    assert verdict.refused_ids == [job_id]
    assert "daily budget of 50 points: 45 spent" in verdict.refused[job_id]


def test_a_total_budget_counts_every_day(db: Database) -> None:
    key_id = _key(db, total=100)
    _held(db, key_id, 95, at=YESTERDAY, status="succeeded", cost_points=95)
    jobs = _queued(db, key_id)
    assert _claim(db, jobs) == jobs


def test_a_used_up_budget_stops_even_jobs_estimated_at_zero(db: Database) -> None:
    key_id = _key(db, total=100)
    _held(db, key_id, 100, at=YESTERDAY, status="succeeded", cost_points=100)
    jobs = _queued(db, key_id, points=0)
    assert _claim(db, jobs) == jobs


def test_a_batch_budget_stops_only_that_batch(db: Database) -> None:
    key_id = _key(db)
    batch_id = _batch(db, key_id, max_points=30)
    _held(db, key_id, 25, batch_id=batch_id, status="succeeded", cost_points=25)
    in_batch = _queued(db, key_id, batch_id=batch_id)
    outside = _queued(db, key_id)
    assert _claim(db, in_batch + outside) == in_batch
    assert batch_totals(db, batch_id).committed == 25
    _assert_totals_match_holds(db, key_id, batch_id)


MAY_BE_CHARGED = {
    "running": {},
    "timed out": {"status": "timed_out", "error_code": "deadline_exceeded"},
    "cancelled while running": {"status": "cancelled", "error_code": "cancelled"},
    "submit uncertain": {
        "status": "failed",
        "error_code": "submit_uncertain",
        "upstream_task_id": None,
    },
    "unreadable submit answer": {
        "status": "failed",
        "error_code": "invalid_upstream_response",
        "upstream_task_id": None,
    },
    "failed upstream, cost unknown": {"status": "failed", "error_code": "upstream_failed"},
    "leased by another pump": {
        "status": "queued",
        "upstream_task_id": None,
        "submitted_at": None,
        "lease_owner": "other-pump",
        "lease_until": NOW + dt.timedelta(seconds=30),
    },
}


@pytest.mark.parametrize("then", MAY_BE_CHARGED.values(), ids=MAY_BE_CHARGED.keys())
def test_a_job_metachat_may_charge_keeps_counting(db: Database, then: dict[str, Any]) -> None:
    key_id = _key(db, total=100)
    _held(db, key_id, 90, **then)
    jobs = _queued(db, key_id, points=20)
    assert _claim(db, jobs) == jobs
    assert key_totals(db, key_id).committed == 90


NEVER_SENT = {
    "rejected by MetaChat": "upstream_rejected",
    "MetaChat unavailable": "upstream_unavailable",
    "source failed": "source_failed",
}


@pytest.mark.parametrize("code", NEVER_SENT.values(), ids=NEVER_SENT.keys())
def test_a_job_that_never_reached_metachat_gives_its_points_back(db: Database, code: str) -> None:
    key_id = _key(db, total=100)
    _held(db, key_id, 90, status="failed", error_code=code, upstream_task_id=None)
    jobs = _queued(db, key_id, points=20)
    # the claim settles the failed job's hold before it decides
    assert _claim(db, jobs) == []
    assert key_totals(db, key_id).committed == 20
    _assert_totals_match_holds(db, key_id)


@pytest.mark.parametrize(("cost", "refused"), [(90, True), (30, False)], ids=["above", "below"])
def test_a_known_cost_replaces_the_estimate_before_the_next_claim_decides(
    db: Database, cost: int, refused: bool
) -> None:
    key_id = _key(db, total=100)
    _held(db, key_id, 10, status="succeeded", cost_points=cost)
    jobs = _queued(db, key_id, points=20)
    assert _claim(db, jobs) == (jobs if refused else [])
    assert key_totals(db, key_id).committed == cost + (0 if refused else 20)
    _assert_totals_match_holds(db, key_id)


def test_settling_a_cost_twice_changes_the_totals_once(db: Database) -> None:
    key_id = _key(db)
    batch_id = _batch(db, key_id, max_points=None)
    job_id = _held(db, key_id, 10, batch_id=batch_id, status="succeeded", cost_points=24)
    with db.session() as s:
        assert settle_costs(s, [job_id], now=NOW) == 1
    with db.session() as s:
        assert settle_costs(s, [job_id], now=NOW) == 0
    assert key_totals(db, key_id).committed == 24
    assert batch_totals(db, batch_id).committed == 24
    _assert_totals_match_holds(db, key_id, batch_id)


def test_pruning_old_jobs_never_gives_budget_back(db: Database, settings_for: Any) -> None:
    key_id = _key(db, total=100)
    long_ago = NOW - dt.timedelta(days=60)
    old = _held(
        db, key_id, 80, at=long_ago, status="succeeded", cost_points=80, finished_at=long_ago
    )
    settings: Settings = settings_for(db.url, retention_days=30)
    with db.session() as s:
        assert prune(s, now=NOW, settings=settings).get("jobs") == 1
    with db.read_session() as s:
        assert s.get(Job, old) is None
    jobs = _queued(db, key_id, points=30)
    assert _claim(db, jobs) == jobs
    assert key_totals(db, key_id).committed == 80


def test_pruning_settles_a_pending_cost_before_deleting_the_job(
    db: Database, settings_for: Any
) -> None:
    key_id = _key(db, total=100)
    long_ago = NOW - dt.timedelta(days=60)
    _held(db, key_id, 10, at=long_ago, status="succeeded", cost_points=80, finished_at=long_ago)
    settings: Settings = settings_for(db.url, retention_days=30)
    for _ in range(2):  # the first pass settles, a later one deletes
        with db.session() as s:
            prune(s, now=NOW, settings=settings)
    with db.read_session() as s:
        assert s.scalar(select(Job.id).where(Job.api_key_id == key_id)) is None
    assert key_totals(db, key_id).committed == 80


def test_the_daily_total_starts_again_each_utc_day(db: Database) -> None:
    key_id = _key(db, daily=100)
    _held(db, key_id, 90, status="succeeded", cost_points=90)
    today = _queued(db, key_id, points=20)
    assert _claim(db, today) == today
    tomorrow = _queued(db, key_id, points=20)
    assert _claim(db, tomorrow, now=TOMORROW) == []
    with db.read_session() as s:
        key = s.get_one(ApiKey, key_id)
        assert (key.points_day, key.points_today) == (TOMORROW.date(), 20)


def test_a_cost_settled_the_next_day_changes_the_total_not_the_new_day(db: Database) -> None:
    key_id = _key(db, daily=100, total=1000)
    job_id = _held(db, key_id, 50, status="succeeded", cost_points=80)
    [next_day] = _queued(db, key_id, points=20)
    assert _claim(db, [next_day], now=TOMORROW) == []
    with db.session() as s:
        settle_costs(s, [job_id], now=TOMORROW)
    with db.read_session() as s:
        key = s.get_one(ApiKey, key_id)
        assert (key.points_committed, key.points_today) == (100, 20)


def test_a_job_claimed_again_is_not_counted_twice(db: Database) -> None:
    key_id = _key(db, total=100)
    [job_id] = _queued(db, key_id, points=60)
    assert _claim(db, [job_id]) == []
    # its submit found MetaChat unreachable: it waits in the queue again, still holding 60
    assert _claim(db, [job_id]) == []
    assert key_totals(db, key_id).committed == 60


def test_a_job_refused_on_a_later_claim_gives_back_what_it_held(db: Database) -> None:
    key_id = _key(db, total=100)
    [first] = _queued(db, key_id, points=60)
    assert _claim(db, [first]) == []
    with db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.id == key_id).values(max_points_total=50))
    assert _claim(db, [first]) == [first]
    assert key_totals(db, key_id).committed == 0


def test_cancelling_a_waiting_job_gives_its_points_back_a_running_one_keeps_them(
    db: Database,
) -> None:
    key_id = _key(db)
    [waiting] = _queued(db, key_id, points=30)
    assert _claim(db, [waiting]) == []  # held, then sent back to the queue (a 429, say)
    running = _held(db, key_id, 50)
    for job_id in (waiting, running):
        with db.session() as s:
            cancel_job(s, job_id, now=NOW)
    assert key_totals(db, key_id).committed == 50
    _assert_totals_match_holds(db, key_id)


def test_a_batch_cancel_keeps_the_points_of_jobs_a_pump_is_sending(db: Database) -> None:
    key_id = _key(db)
    batch_id = _batch(db, key_id, max_points=1000)
    waiting = _queued(db, key_id, 2, points=30, batch_id=batch_id)
    sending = _queued(db, key_id, 1, points=40, batch_id=batch_id)
    assert _claim(db, waiting + sending) == []
    with db.session() as s:
        s.execute(
            update(Job)
            .where(Job.id.in_(sending))
            .values(lease_owner="pump", lease_until=NOW + dt.timedelta(seconds=30))
        )
    with db.session() as s:
        assert cancel_batch(s, s.get_one(Batch, batch_id), now=NOW) == 3
    assert batch_totals(db, batch_id).committed == 40
    assert key_totals(db, key_id).committed == 40
    _assert_totals_match_holds(db, key_id, batch_id)


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
    with db.session() as s:
        for points in case.history:
            finished_job(
                s,
                key_id,
                status="succeeded",
                provider="flux",
                model="flux-2-pro",
                finished_at=EARLY,
                upstream_seconds=5,
                cost_points=points,
            )
    [job_id] = _queued(db, key_id, points=case.stored)
    prices = {} if case.catalogue_price is None else {"flux-2-pro": case.catalogue_price}
    catalogue = build_catalogue(CatalogueOverrides(prices=prices))
    with db.read_session() as s:
        job = s.get_one(Job, job_id)
        assert estimate_points(s, [job], catalogue=catalogue, now=NOW) == {job_id: case.expected}


def test_an_unpriced_job_holds_the_model_average_and_its_estimate_stays_null(
    db: Database,
) -> None:
    key_id = _key(db)
    _held(db, key_id, 12, status="succeeded", cost_points=12, finished_at=EARLY)
    [job_id] = _queued(db, key_id, points=None)
    assert _claim(db, [job_id]) == []
    with db.read_session() as s:
        job = s.get_one(Job, job_id)
        assert (job.estimated_points, job.points_held) == (None, 12)


@dataclass(frozen=True)
class Spec:
    model: str
    action: str


def test_a_dry_run_estimate_reports_what_remains_of_each_limit(db: Database) -> None:
    key_id = _key(db, daily=200, total=1000)
    _held(db, key_id, 40, status="succeeded", cost_points=40)
    _held(db, key_id, 300, at=YESTERDAY, status="succeeded", cost_points=300)
    # a cost not settled yet counts too
    _held(db, key_id, 5, status="succeeded", cost_points=10)
    catalogue = build_catalogue(CatalogueOverrides(prices={"flux-2-pro": 20}))
    specs = [Spec("flux-2-pro", "generate")] * 3 + [Spec("z-image-turbo", "generate")]
    with db.read_session() as s:
        key = s.get_one(ApiKey, key_id)
        fits = estimate(s, key, specs, catalogue=catalogue, now=NOW)
        too_big = estimate(s, key, specs, max_points=50, catalogue=catalogue, now=NOW)
    assert fits.as_json() == {
        "estimated_points": 60,
        "fits_budget": True,
        "remaining": {"daily": 150, "total": 650, "batch": None},
        "unpriced_jobs": 1,
    }
    assert (too_big.fits_budget, too_big.remaining["batch"]) == (False, 50)


def test_a_costed_job_no_claim_held_counts_on_the_day_it_was_sent(db: Database) -> None:
    key_id = _key(db, daily=100)
    with db.session() as s:
        today, yesterday = (
            finished_job(
                s,
                key_id,
                status="succeeded",
                provider="flux",
                model="flux-2-pro",
                finished_at=when,
                upstream_seconds=5,
                cost_points=30,
            ).id
            for when in (EARLY, YESTERDAY)
        )
    with db.session() as s:
        assert settle_costs(s, [today, yesterday], now=NOW) == 2
    with db.read_session() as s:
        held = {job.id: job.points_held_on for job in s.scalars(select(Job))}
        key = s.get_one(ApiKey, key_id)
    assert held == {today: EARLY.date(), yesterday: YESTERDAY.date()}
    assert (key.points_committed, key.points_today, key.points_day) == (60, 30, NOW.date())

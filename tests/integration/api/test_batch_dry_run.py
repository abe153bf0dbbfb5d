"""`POST /v1/batches?dry_run=true`: validate and price a batch against budgets, store nothing."""

from __future__ import annotations

from sqlalchemy import update

from core.db import Database
from core.tables import ApiKey, Batch, Job, utcnow
from tests.support.api_client import ApiClient
from tests.support.api_data import count, flux_spec
from tests.support.core_rows import make_job


def _spent_24_points_once(db: Database, client: ApiClient, total_budget: int) -> None:
    # one finished flux-2-pro job at 24 points: no catalogue price is known, so history prices it
    make_job(db, client.key.id, status="succeeded", cost_points=24, finished_at=utcnow())
    with db.session() as session:
        session.execute(
            update(ApiKey).where(ApiKey.id == client.key.id).values(max_points_total=total_budget)
        )


def test_a_dry_run_prices_the_batch_and_creates_nothing(alice: ApiClient, db: Database) -> None:
    _spent_24_points_once(db, alice, total_budget=100)
    jobs_before = count(db, Job)

    fits = alice.post("/v1/batches?dry_run=true", json={"jobs": [flux_spec(n) for n in range(3)]})
    too_much = alice.post(
        "/v1/batches", params={"dry_run": "true"}, json={"jobs": [flux_spec(n) for n in range(4)]}
    )

    assert fits.status_code == 200, fits.text
    assert fits.json() == {
        "dry_run": True,
        "jobs": 3,
        "estimated_points": 72,
        "fits_budget": True,
        "remaining": {"daily": None, "total": 76, "batch": None},
        "unpriced_jobs": 0,
    }
    assert too_much.status_code == 200
    assert (too_much.json()["estimated_points"], too_much.json()["fits_budget"]) == (96, False)
    assert count(db, Job) == jobs_before
    assert count(db, Batch) == 0


def test_a_dry_run_checks_the_batch_budget_too(alice: ApiClient, db: Database) -> None:
    _spent_24_points_once(db, alice, total_budget=10_000)
    response = alice.post(
        "/v1/batches?dry_run=true",
        json={"jobs": [flux_spec(n) for n in range(2)], "max_points": 40},
    )
    assert response.json()["fits_budget"] is False
    assert response.json()["remaining"]["batch"] == 40


def test_a_dry_run_refuses_a_bad_spec_like_a_real_submit(alice: ApiClient) -> None:
    specs = [flux_spec(0), flux_spec(1)]
    specs[1]["params"] = {"aspect": "sideways"}
    response = alice.post("/v1/batches?dry_run=true", json={"jobs": specs})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["jobs", 1, "params", "aspect"]]

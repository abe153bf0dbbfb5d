"""The budget-totals revision fills the totals from the jobs already there: an upgraded service
keeps counting what its keys and batches committed before the upgrade."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import Database
from core.migrate import upgrade
from core.tables import ApiKey, Batch, Job, JSONType, UTCDateTime
from tests.support import services

BEFORE = "20261201_0001"

_keys = sa.table(
    "api_keys",
    *(sa.column(name) for name in ("id", "name", "tenant", "key_prefix", "key_hash")),
    sa.column("webhook_secret"),
    sa.column("scopes", JSONType),
    sa.column("created_at", UTCDateTime()),
)
_batches = sa.table(
    "batches",
    *(sa.column(name) for name in ("id", "api_key_id", "status", "total")),
    sa.column("created_at", UTCDateTime()),
)
_jobs = sa.table(
    "jobs",
    *(
        sa.column(name)
        for name in (
            "id",
            "api_key_id",
            "batch_id",
            "status",
            "provider",
            "model",
            "action",
            "priority",
            "attempts",
            "polls",
            "progress",
            "upstream_task_id",
            "lease_owner",
            "error_code",
            "estimated_points",
            "cost_points",
        )
    ),
    sa.column("params", JSONType),
    sa.column("images", JSONType),
    *(
        sa.column(name, UTCDateTime())
        for name in ("created_at", "updated_at", "submitted_at", "lease_until")
    ),
)


@pytest.fixture(params=["postgresql", "sqlite"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated only up to the revision before the budget totals."""
    if request.param == "sqlite":
        url = services.sqlite_url(tmp_path)
        upgrade(url, BEFORE)
        yield url
        return
    if not services.postgres_available():
        pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL")
    with services.postgres_database() as url:
        upgrade(url, BEFORE)
        yield url


def _job(n: int, now: dt.datetime, **values: Any) -> dict[str, Any]:
    row = {
        "id": f"job_{n}",
        "api_key_id": "key_1",
        "batch_id": None,
        "status": "running",
        "provider": "flux",
        "model": "flux-2-pro",
        "action": "generate",
        "priority": 0,
        "attempts": 1,
        "polls": 0,
        "progress": 0,
        "upstream_task_id": f"task-{n}",
        "lease_owner": None,
        "lease_until": None,
        "error_code": None,
        "estimated_points": 10,
        "cost_points": None,
        "params": {},
        "images": [],
        "created_at": now,
        "updated_at": now,
        "submitted_at": now,
    }
    row.update(values)
    return row


def test_the_totals_are_filled_from_the_jobs_already_there(old_database: str) -> None:
    now = dt.datetime.now(dt.UTC)
    yesterday = now - dt.timedelta(days=1)
    engine = sa.create_engine(old_database)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(_keys),
            [
                {
                    "id": "key_1",
                    "name": "n",
                    "tenant": "t",
                    "key_prefix": "mcj_",
                    "key_hash": "h",
                    "webhook_secret": "whsec_x",
                    "scopes": [],
                    "created_at": now,
                }
            ],
        )
        connection.execute(
            sa.insert(_batches),
            [
                {
                    "id": "bat_1",
                    "api_key_id": "key_1",
                    "status": "running",
                    "total": 2,
                    "created_at": now,
                }
            ],
        )
        connection.execute(
            sa.insert(_jobs),
            [
                _job(1, now, status="succeeded", cost_points=24),
                _job(2, now, batch_id="bat_1"),
                _job(
                    3,
                    now,
                    status="failed",
                    error_code="submit_uncertain",
                    estimated_points=15,
                    upstream_task_id=None,
                    submitted_at=None,
                ),
                _job(
                    4,
                    now,
                    status="failed",
                    error_code="upstream_rejected",
                    estimated_points=50,
                    upstream_task_id=None,
                    submitted_at=None,
                ),
                _job(
                    5,
                    now,
                    status="queued",
                    estimated_points=5,
                    upstream_task_id=None,
                    submitted_at=None,
                ),
                _job(
                    6,
                    now,
                    status="queued",
                    batch_id="bat_1",
                    estimated_points=7,
                    upstream_task_id=None,
                    submitted_at=None,
                    lease_owner="pump",
                    lease_until=now + dt.timedelta(minutes=1),
                ),
                _job(7, now, status="cancelled", error_code="cancelled", estimated_points=9),
                _job(8, yesterday, status="succeeded", cost_points=100),
            ],
        )
    engine.dispose()
    upgrade(old_database)
    db = Database(old_database)
    try:
        with db.read_session() as session:
            held = {
                row.id: row.points_held
                for row in session.execute(sa.select(Job.id, Job.points_held))
            }
            key = session.get_one(ApiKey, "key_1")
            batch = session.get_one(Batch, "bat_1")
            day_of_8 = session.scalar(sa.select(Job.points_held_on).where(Job.id == "job_8"))
    finally:
        db.dispose()
    assert held == {
        "job_1": 24,
        "job_2": 10,
        "job_3": 15,
        "job_4": 0,
        "job_5": 0,
        "job_6": 7,
        "job_7": 9,
        "job_8": 100,
    }
    assert day_of_8 == yesterday.date()
    assert (key.points_committed, key.points_today, key.points_day) == (165, 65, now.date())
    assert batch.points_committed == 17

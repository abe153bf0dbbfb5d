"""Time the operator statistics on a large PostgreSQL database.

    .venv/bin/python -m tests.support.ops_bigstats --rows 1000000

creates a scratch database next to TEST_DATABASE_URL, migrates it, seeds `--rows` jobs over seven
days (tests/support/ops_seed.py), then times each query a few times and prints the best run.
The slow test `tests/integration/ops/test_stats_scale.py` runs the same thing when
MCJOBS_BIG_STATS=1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, text, update

from core.budget import estimate_points, open_ledger
from core.db import Database
from core.metrics import DatabaseCollector
from core.migrate import upgrade
from core.stats import batches_in_progress, collect_stats, recent_failures
from core.tables import POINTS_UNSETTLED, ApiKey, Job
from tests.support import services
from tests.support.ops_seed import seed_bulk


def best_of(fn: Callable[[], Any], runs: int = 3) -> float:
    """The fastest of `runs` calls, in seconds (the first call also warms the cache)."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def time_queries(db: Database, *, now: dt.datetime, key_id: str | None = None) -> dict[str, float]:
    """Seconds per operator query on an already seeded database."""
    timings: dict[str, float] = {}

    def stats(since: dt.timedelta, key: str | None = None) -> Callable[[], Any]:
        def run() -> Any:
            with db.read_session() as s:
                return collect_stats(s, since=now - since, now=now, api_key_id=key)

        return run

    def dashboard_tables() -> None:
        with db.read_session() as s:
            recent_failures(s, since=now - dt.timedelta(hours=24))
            batches_in_progress(s)

    timings["stats, last 1 h"] = best_of(stats(dt.timedelta(hours=1)))
    timings["stats, last 24 h"] = best_of(stats(dt.timedelta(hours=24)))
    timings["stats, all 7 days"] = best_of(stats(dt.timedelta(days=8)))
    if key_id is not None:
        timings["stats, 24 h, one API key"] = best_of(stats(dt.timedelta(hours=24), key_id))
    timings["dashboard tables, 24 h"] = best_of(dashboard_tables)
    collector = DatabaseCollector(db, cache_seconds=0)
    timings["/metrics database gauges"] = best_of(collector.snapshot)
    if key_id is not None:
        timings["budget check, 200 jobs of a key"] = best_of(_budget_check(db, key_id, now))
    return timings


def _budget_check(db: Database, key_id: str, now: dt.datetime) -> Callable[[], Any]:
    """A submit claim of 200 queued jobs of a key with daily and total budgets."""
    with db.session() as s:
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(max_points_daily=10**9, max_points_total=10**12)
        )
    # seeded rows bypass the claims: fold their costs into the totals first, as the claims
    # after an import would (a few thousand per claim)
    pending = select(func.count()).where(Job.api_key_id == key_id, text(POINTS_UNSETTLED))
    while True:
        with db.session() as s:
            if not s.scalar(pending):
                break
            open_ledger(s, api_key_ids=[key_id], now=now).flush()
    if not db.sqlite:  # as autovacuum would, before the settled rows' index entries are reused
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM jobs"))
    with db.read_session() as s:
        jobs = list(
            s.scalars(
                select(Job).where(Job.api_key_id == key_id, Job.status == "queued").limit(200)
            )
        )

    def run() -> Any:
        # the claim's budget work: lock the totals, settle what is pending, decide (not written)
        with db.session() as s:
            ledger = open_ledger(s, api_key_ids=[key_id], now=now)
            return ledger.admit(jobs, estimate_points(s, jobs, now=now))

    return run


def run(rows: int) -> dict[str, float]:
    """Seed a scratch database with `rows` jobs and time the queries; prints a table."""
    now = dt.datetime.now(dt.UTC)
    with services.postgres_database() as url:
        upgrade(url)
        db = Database(url)
        try:
            started = time.perf_counter()
            keys = seed_bulk(db, rows, now=now)
            seeded = time.perf_counter() - started
            timings = {f"seed {rows:,} jobs": seeded, **time_queries(db, now=now, key_id=keys[0])}
        finally:
            db.dispose()
    width = max(len(name) for name in timings)
    for name, seconds in timings.items():
        print(f"{name:<{width}}  {seconds * 1000:10.1f} ms")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    run(args.rows)


if __name__ == "__main__":
    main()

"""The operator queries on a million jobs (PostgreSQL). Slow: runs only with MCJOBS_BIG_STATS=1
(`MCJOBS_BIG_STATS_ROWS` changes the size). The same run as a script:
`.venv/bin/python -m tests.support.ops_bigstats --rows 1000000`."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from core.db import Database
from tests.support.ops_bigstats import time_queries
from tests.support.ops_seed import seed_bulk

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("MCJOBS_BIG_STATS") != "1", reason="set MCJOBS_BIG_STATS=1 to run"
    ),
]


@pytest.mark.timeout(1800)
def test_a_day_of_stats_over_a_million_jobs_takes_seconds_not_minutes(pg_db: Database) -> None:
    rows = int(os.environ.get("MCJOBS_BIG_STATS_ROWS", "1000000"))
    now = dt.datetime.now(dt.UTC)
    keys = seed_bulk(pg_db, rows, now=now)
    timings = time_queries(pg_db, now=now, key_id=keys[0])
    for name, seconds in timings.items():
        print(f"{name:<34} {seconds * 1000:9.1f} ms")
    assert timings["stats, last 1 h"] < 2.0
    assert timings["stats, last 24 h"] < 10.0
    assert timings["/metrics database gauges"] < 5.0
    assert timings["budget check, 200 jobs of a key"] < 5.0

"""Polls and lag with real worker and beat processes: the schedules plus everything real time
adds (beat ticks, the database, HTTP). The simulator and the schedules run four times faster
than life, so a Midjourney grid takes about ten seconds and a Z-Image picture one and a half."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.tables import TERMINAL_STATUSES
from sim import SimConfig
from tests.support.pipeline_efficiency import FAMILIES, samples_of, summarise, table
from tests.support.pipeline_jobs import insert_jobs, job_row, jobs, new_api_key
from tests.support.pipeline_processes import RunningPipeline, running_pipeline
from tests.support.pipeline_redis import pipeline_redis_server, redis_url
from tests.support.waiting import wait_until

__all__ = ["pipeline_redis_server", "redis_url"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SCALE = 0.25
PER_FAMILY = 16
# beat ticks, claims, HTTP and writes between a poll falling due and its answer being stored
OVERHEAD_SECONDS = 0.5
LIVE = tuple(f for f in FAMILIES if f.name in ("z-image", "flux", "mj-imagine"))


@pytest.fixture
def pipeline(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[RunningPipeline]:
    with running_pipeline(
        database_url=pg_url,
        redis_url=redis_url,
        logs=tmp_path,
        sim_config=SimConfig.for_profile("default", seed=9, time_scale=SCALE),
        env={"POLL_TIME_SCALE": str(SCALE)},
    ) as running:
        yield running


def test_live_jobs_take_few_polls_and_are_seen_soon_after_they_finish(
    pipeline: RunningPipeline,
) -> None:
    db = pipeline.db
    key = new_api_key(db)
    planted: dict[str, list[str]] = {name: [] for name in (f.name for f in LIVE)}

    def arrive() -> None:
        # a stream: one job of each family every eighth of its typical duration
        start = time.monotonic()
        due = sorted(
            (
                (n * family.median_seconds * SCALE / 8, family)
                for family in LIVE
                for n in range(PER_FAMILY)
            ),
            key=lambda pair: pair[0],
        )
        for offset, family in due:
            time.sleep(max(0.0, start + offset - time.monotonic()))
            planted[family.name] += insert_jobs(db, [job_row(key, **family.spec)])

    feeder = threading.Thread(target=arrive)
    feeder.start()
    feeder.join(timeout=60)
    every = [job_id for ids in planted.values() for job_id in ids]
    wait_until(
        lambda: all(row.status in TERMINAL_STATUSES for row in jobs(db, every)),
        timeout=90,
        interval=0.5,
        what=f"every job to end\n{pipeline.processes.log_tail()}",
    )
    figures = summarise(samples_of(db, pipeline.sim.simulator, planted), LIVE)
    print("\n" + table(figures))
    for family in figures:
        assert family.jobs == PER_FAMILY, family
        assert family.mean_polls <= 3.5, family
        # the schedules' own lag plus what real time adds on a busy two-core machine
        assert family.mean_lag <= 0.1 * family.mean_duration + OVERHEAD_SECONDS, family

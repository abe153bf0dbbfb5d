"""How well the poll schedules fit the simulator's durations: polls per job and lag.

For each family a stream of jobs arrives (one every eighth of its typical duration) and runs
through the real pumps against the simulator, both on one simulated clock. For every job that
succeeded: how many polls it took, and the lag between the upstream task finishing (the
simulator's own record) and our row saying so. ``warm`` figures leave out the first jobs of a
family, which run before the schedule has learnt its typical duration.

Run ``.venv/bin/python -m tests.support.pipeline_efficiency`` for the table in docs/pipeline.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.db import Database
from core.schedule import PollPlanner
from core.settings import Settings
from core.tables import SUCCEEDED, utcnow
from sim import SimConfig
from tests.support.pipeline_drive import SharedClock, drive
from tests.support.pipeline_jobs import (
    insert_jobs,
    job_row,
    jobs,
    new_api_key,
    pump_context,
    sim_transport,
)

FRAME = [{"url": "https://example.com/frame.png"}]


@dataclass(frozen=True)
class Family:
    """One simulator duration class and a job spec that lands in it."""

    name: str
    median_seconds: float
    spec: dict[str, Any]


FAMILIES: tuple[Family, ...] = (
    Family("z-image", 6.0, {"model": "z-image-turbo"}),
    Family("flux", 12.0, {"model": "flux-2-pro"}),
    Family("seedream", 15.0, {"model": "doubao-seedream-4-5-251128"}),
    Family("grok-image", 10.0, {"model": "grok-imagine-image-2.0"}),
    Family("mj-imagine", 40.0, {"model": "mj-v7"}),
    Family("mj-describe", 8.0, {"model": "mj-v7", "action": "describe", "images": FRAME}),
    Family("mj-video", 150.0, {"model": "mj-video-v1", "images": FRAME}),
    Family("grok-video", 100.0, {"model": "grok-imagine-video-1.5-preview", "images": FRAME}),
)

WARM_AFTER = 10


@dataclass(frozen=True)
class FamilyFigures:
    family: str
    jobs: int
    mean_duration: float
    mean_polls: float
    mean_lag: float
    warm_polls: float
    warm_lag: float

    @property
    def lag_share(self) -> float:
        return self.mean_lag / self.mean_duration

    @property
    def warm_lag_share(self) -> float:
        return self.warm_lag / self.mean_duration


async def _run(
    db: Database, settings: Settings, families: tuple[Family, ...], per_family: int, seed: int
) -> dict[str, list[tuple[float, int, float]]]:
    start = utcnow()
    clock = SharedClock(start)
    transport, sim = sim_transport(SimConfig.for_profile("default", seed=seed), clock=clock.sim)
    key = new_api_key(db)
    planted: dict[str, list[str]] = {}
    for family in families:
        spacing = family.median_seconds / 8
        rows = []
        for n in range(per_family):
            row = job_row(key, **family.spec)
            row["due_at"] = row["created_at"] = start + dt.timedelta(seconds=n * spacing)
            rows.append(row)
        planted[family.name] = insert_jobs(db, rows)
    planner = PollPlanner(
        settings.poll_schedules, time_scale=settings.poll_time_scale, rng=random.Random(seed)
    )
    async with pump_context(db, settings, transport=transport, clock=clock, planner=planner) as ctx:
        await drive(ctx, clock, maintenance=False, max_steps=200_000)
    return samples_of(db, sim, planted)


def samples_of(
    db: Database, sim: Any, planted: dict[str, list[str]]
) -> dict[str, list[tuple[float, int, float]]]:
    """(upstream duration, polls, lag) of every succeeded job, by family, from our rows and the
    simulator's own record of each task."""
    samples: dict[str, list[tuple[float, int, float]]] = {}
    for name, job_ids in planted.items():
        rows_out = []
        for row in jobs(db, job_ids):
            if row.status != SUCCEEDED or row.upstream_task_id is None:
                continue
            task = sim.task_view(row.upstream_task_id)
            assert task is not None and row.finished_at is not None
            duration = float(task["finished_at"]) - float(task["created_at"])
            lag = row.finished_at.timestamp() - float(task["finished_at"])
            rows_out.append((duration, row.polls, lag))
        samples[name] = rows_out
    return samples


def measure(
    db: Database,
    settings: Settings,
    *,
    families: tuple[Family, ...] = FAMILIES,
    per_family: int = 60,
    seed: int = 7,
) -> list[FamilyFigures]:
    """Run the stream for every family and summarise it."""
    samples = asyncio.run(_run(db, settings, families, per_family, seed))
    return summarise(samples, families)


def summarise(
    samples: dict[str, list[tuple[float, int, float]]], families: tuple[Family, ...]
) -> list[FamilyFigures]:
    figures = []
    for family in families:
        rows = samples[family.name]
        warm = rows[WARM_AFTER:] or rows
        figures.append(
            FamilyFigures(
                family=family.name,
                jobs=len(rows),
                mean_duration=statistics.fmean(r[0] for r in rows),
                mean_polls=statistics.fmean(r[1] for r in rows),
                mean_lag=statistics.fmean(r[2] for r in rows),
                warm_polls=statistics.fmean(r[1] for r in warm),
                warm_lag=statistics.fmean(r[2] for r in warm),
            )
        )
    return figures


def table(figures: list[FamilyFigures]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| family | jobs | mean duration | polls/job | lag | lag/duration "
        "| warm polls/job | warm lag/duration |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.family} | {f.jobs} | {f.mean_duration:.1f} s | {f.mean_polls:.2f} "
            f"| {f.mean_lag:.2f} s | {f.lag_share:.1%} | {f.warm_polls:.2f} "
            f"| {f.warm_lag_share:.1%} |"
        )
    return "\n".join(lines)


def main(make_settings: Callable[[str], Settings] | None = None) -> None:
    """Measure on a throw-away SQLite database and print the table."""
    import tempfile
    from pathlib import Path

    from core.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'efficiency.sqlite3'}"
        upgrade(url)
        settings = (make_settings or _default_settings)(url)
        db = Database(url)
        try:
            print(table(measure(db, settings, per_family=100)))
        finally:
            db.dispose()


def _default_settings(url: str) -> Settings:
    import os

    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        redis_url=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        metachat_api_key="efficiency-key",
        metachat_base_url="http://sim.test/open/v1",
        provider_rate_per_second={"default": 1000.0},
        provider_max_in_flight={"default": 10_000},
    )


if __name__ == "__main__":
    main()

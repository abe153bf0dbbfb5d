"""The pumps against the simulator (in process): every family end to end, upstream failures,
and a flaky upstream ridden out without paying twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from core.db import Database
from core.maintenance import run_maintenance
from core.settings import Settings
from core.tables import FAILED, SUCCEEDED, utcnow
from sim import SimConfig
from tests.support.pipeline_drive import SharedClock, drive
from tests.support.pipeline_jobs import (
    insert_jobs,
    job_row,
    jobs,
    new_api_key,
    pipeline_settings,
    pump_context,
    sim_base_url,
    sim_transport,
    status_counts,
    unique_prompt,
)
from worker.poll import run_poll_pump
from worker.submit import run_submit_pump

SettingsFor = Callable[..., Settings]
FRAME = [{"url": "https://example.com/frame.png"}]
PICTURES = [{"url": "https://example.com/a.png"}, {"url": "https://example.com/b.png"}]

FRESH: dict[str, dict[str, Any]] = {
    "mj-imagine": {"model": "mj-v7"},
    "mj-describe": {"model": "mj-v7", "action": "describe", "images": FRAME},
    "mj-blend": {"model": "mj-v7", "action": "blend", "images": PICTURES},
    "mj-video": {"model": "mj-video-v1", "images": FRAME},
    "flux": {"model": "flux-2-pro", "params": {"num": 2}},
    "z-image": {"model": "z-image-turbo"},
    "seedream": {"model": "doubao-seedream-4-5-251128"},
    "grok-image": {"model": "grok-imagine-image-2.0"},
    "grok-video": {"model": "grok-imagine-video-1.5-preview", "images": FRAME},
}
# follow-ups of an imagine grid, then of one of its split tiles
ON_GRID: dict[str, dict[str, Any]] = {
    "mj-split": {"action": "split", "source_index": 2},
    "mj-variation": {"action": "variation", "source_index": 4},
    "mj-reroll": {"action": "reroll"},
}
ON_TILE: dict[str, dict[str, Any]] = {
    "mj-upscale": {"action": "upscale", "params": {"type": "creative"}},
    "mj-vary": {"action": "vary", "params": {"type": "strong"}},
    "mj-zoom": {"action": "zoom", "params": {"scale": 1.5}},
    "mj-pan": {"action": "pan", "params": {"direction": "left"}},
}


def run_simulated(
    db: Database, settings: Settings, stages: list[dict[str, dict[str, Any]]], key: str
) -> tuple[dict[str, str], Any]:
    """Insert each stage (specs may name an earlier job as ``"source": name``), drive it to the
    end in simulated time; returns job ids by name and the simulator."""
    clock = SharedClock(utcnow())
    transport, sim = sim_transport(SimConfig.for_profile("default"), clock=clock.sim)
    names: dict[str, str] = {}

    async def main() -> None:
        async with pump_context(db, settings, transport=transport, clock=clock) as ctx:
            for stage in stages:
                rows = []
                for name, spec in stage.items():
                    spec = dict(spec)
                    source = spec.pop("source", None)
                    if source is not None:
                        spec.update(model="mj-v7", source_job_id=names[source])
                    row = job_row(key, created_at=clock(), **spec)
                    names[name] = row["id"]
                    rows.append(row)
                insert_jobs(db, rows)
                await drive(ctx, clock)

    asyncio.run(main())
    return names, sim


def test_every_family_and_follow_up_succeeds_with_urls_and_points(
    db: Database, settings_for: SettingsFor, db_url: str
) -> None:
    settings = pipeline_settings(settings_for, db_url, metachat_base_url=sim_base_url())
    key = new_api_key(db)
    stages = [
        FRESH,
        {name: {**spec, "source": "mj-imagine"} for name, spec in ON_GRID.items()},
        {name: {**spec, "source": "mj-split"} for name, spec in ON_TILE.items()},
    ]
    names, sim = run_simulated(db, settings, stages, key)
    by_name = dict(zip(names, jobs(db, names.values()), strict=True))
    assert {name: row.status for name, row in by_name.items()} == dict.fromkeys(names, SUCCEEDED)
    for name, row in by_name.items():
        assert row.cost_points is not None and row.cost_points > 0, name
        assert row.result is not None
        if name == "mj-describe":
            assert len(row.result["prompts"]) == 4
        elif name in ("mj-video", "grok-video"):
            assert row.result["video_url"].endswith(".mp4")
        else:
            assert row.result["image_urls"], name
    assert len(by_name["flux"].result["image_urls"]) == 2
    stats = sim.stats_view()
    assert stats["tasks_created"] == len(names)
    assert stats["duplicates"] == {}


def test_upstream_failures_and_refusals_end_with_the_upstream_reason(
    db: Database, settings_for: SettingsFor, db_url: str
) -> None:
    settings = pipeline_settings(settings_for, db_url, metachat_base_url=sim_base_url())
    key = new_api_key(db)
    stage = {
        "fails": {"model": "flux-2-pro", "prompt": unique_prompt("sim:fail a castle")},
        "refused": {"model": "mj-v7", "prompt": unique_prompt("sim:reject a castle")},
        "unknown-param": {"model": "z-image-turbo", "params": {"size": "8K"}},
    }
    names, _ = run_simulated(db, settings, [stage], key)
    fails, refused, bad_param = jobs(db, names.values())
    assert (fails.status, fails.error_code, fails.error_message) == (
        FAILED,
        "upstream_failed",
        "内容审核未通过",
    )
    assert (refused.status, refused.error_code) == (FAILED, "upstream_rejected")
    assert "参数" in (refused.error_message or "")
    assert (bad_param.status, bad_param.error_code) == (FAILED, "upstream_rejected")


def run_real_time(
    db: Database, settings: Settings, sim_config: SimConfig, count: int, timeout: float = 60.0
) -> Any:
    """``count`` jobs through the pumps in real time against a fast, misbehaving simulator."""
    transport, sim = sim_transport(sim_config)
    key = new_api_key(db)
    models = ["flux-2-pro", "mj-v7", "z-image-turbo", "grok-imagine-image-2.0"]
    insert_jobs(db, [job_row(key, model=models[n % len(models)]) for n in range(count)])

    async def main() -> None:
        async with pump_context(db, settings, transport=transport) as ctx:
            deadline = time.monotonic() + timeout
            while status_counts(db).keys() - {SUCCEEDED, FAILED}:
                assert time.monotonic() < deadline, status_counts(db)
                await run_submit_pump(ctx)
                await run_poll_pump(ctx, window_seconds=0.1)
                run_maintenance(ctx.db, ctx.settings, planner=ctx.planner)
                await asyncio.sleep(0.01)

    asyncio.run(main())
    return sim


@pytest.fixture
def fast_settings(settings_for: SettingsFor, pg_url: str) -> Settings:
    return pipeline_settings(
        settings_for, pg_url, metachat_base_url=sim_base_url(), poll_time_scale=0.02
    )


def test_a_429_storm_and_20_percent_5xx_are_ridden_out(
    pg_db: Database, fast_settings: Settings
) -> None:
    config = SimConfig.for_profile(
        "fast", seed=11, error_5xx_rate=0.2, rate_429_rate=0.3, retry_after_seconds=1
    )
    sim = run_real_time(pg_db, fast_settings, config, count=40)
    stats = sim.stats_view()
    assert status_counts(pg_db) == {SUCCEEDED: 40}
    assert stats["rate_limited"] > 5 and stats["errors_5xx"] > 5
    assert stats["tasks_created"] == 40
    assert stats["duplicates"] == {}


def test_malformed_answers_never_crash_a_pump(pg_db: Database, fast_settings: Settings) -> None:
    config = SimConfig.for_profile("fast", seed=5, malformed_rate=0.3)
    sim = run_real_time(pg_db, fast_settings, config, count=30)
    stats = sim.stats_view()
    counts = status_counts(pg_db)
    # a spoiled submit answer may hide a task that was made: it fails, it is never resent
    assert counts.get(FAILED, 0) == stats["tasks_created"] - counts[SUCCEEDED]
    assert counts[SUCCEEDED] + counts.get(FAILED, 0) == 30
    assert stats["duplicates"] == {}

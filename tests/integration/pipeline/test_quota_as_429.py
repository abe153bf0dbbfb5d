"""Out of points reported as a 429: the job fails clearly and every submit pauses, rather than
the queue waiting out a "rate limit" that buying points alone can lift."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import redis

from core.db import Database
from core.limiter import ALL
from core.settings import Settings
from core.tables import FAILED, QUEUED
from tests.support import pipeline_upstream as up
from tests.support.pipeline_jobs import (
    TestClock,
    insert_jobs,
    job_row,
    jobs,
    new_api_key,
    pipeline_settings,
    pump_context,
)
from worker.submit import run_submit_pump

QUOTA = "You exceeded your current API quota. Please purchase the API points."


def quota_as_429(request: httpx.Request) -> httpx.Response:
    body = {"status": "rate_limit_error", "message": QUOTA}
    return httpx.Response(429, json=body, headers={"Retry-After": "1"})


@pytest.fixture
def settings(settings_for: Callable[..., Settings], db_url: str) -> Settings:
    return pipeline_settings(settings_for, db_url).model_copy(update={"submit_batch_size": 1})


def submit(db: Database, settings: Settings, recorder: up.Recorder, clock: TestClock) -> None:
    async def main() -> None:
        async with pump_context(db, settings, transport=recorder.transport, clock=clock) as ctx:
            await run_submit_pump(ctx)

    asyncio.run(main())


def test_a_quota_429_fails_the_job_as_out_of_points_and_pauses_every_submit(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    job_ids = insert_jobs(db, [job_row(key), job_row(key, model="mj-v7")])
    calls = up.Recorder(quota_as_429)
    clock = TestClock()

    submit(db, settings, calls, clock)
    submit(db, settings, calls, clock)

    first, second = jobs(db, job_ids)
    assert (first.status, first.error_code) == (FAILED, "upstream_quota_exceeded")
    assert "out of API points" in (first.error_message or "")
    assert QUOTA in (first.error_message or "")
    assert second.status == QUEUED and second.attempts == 0
    assert len(calls.requests) == 1, "the pause holds back the other provider's job too"
    client = redis.Redis.from_url(settings.redis_url)
    assert client.exists(f"mcjobs:limit:{ALL}:paused_until")
    client.close()

"""The poll pump as a plain function: progress, results, failures, deadlines and reconcile."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core.db import Database
from core.settings import Settings
from core.tables import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    JobEvent,
    WebhookDelivery,
)
from core.transitions import transition
from tests.support import pipeline_upstream as up
from tests.support.pipeline_jobs import (
    TestClock,
    insert_jobs,
    job,
    job_row,
    new_api_key,
    pipeline_settings,
    pump_context,
)
from worker.poll import PollReport, run_poll_pump

SettingsFor = Callable[..., Settings]
GRID = "https://oss.example.com/grid.png"


@pytest.fixture
def settings(settings_for: SettingsFor, db_url: str) -> Settings:
    return pipeline_settings(settings_for, db_url)


def poll(
    db: Database, settings: Settings, reply: up.Reply | up.Recorder, *, clock: TestClock
) -> PollReport:
    recorder = reply if isinstance(reply, up.Recorder) else up.Recorder(reply)

    async def main() -> PollReport:
        async with pump_context(db, settings, transport=recorder.transport, clock=clock) as ctx:
            return await run_poll_pump(ctx)

    return asyncio.run(main())


def running_job(
    db: Database,
    clock: TestClock,
    *,
    model: str = "mj-v7",
    started: float = 30.0,
    deadline: float = 600.0,
    progress: int = 0,
    webhook_url: str | None = None,
    status: str = RUNNING,
) -> str:
    key = new_api_key(db)
    submitted = clock() - dt.timedelta(seconds=started)
    row = job_row(key, model=model, webhook_url=webhook_url)
    row.update(
        status=status,
        upstream_task_id="task-1",
        submitted_at=submitted,
        # when progress was last read: now, if there is any
        updated_at=clock() if progress else submitted,
        due_at=clock(),
        deadline_at=submitted + dt.timedelta(seconds=deadline),
        attempts=1,
        progress=progress,
    )
    if status == TIMED_OUT:
        row.update(finished_at=clock() - dt.timedelta(seconds=1), error_code="deadline_exceeded")
    [job_id] = insert_jobs(db, [row])
    return job_id


def events(db: Database, job_id: str) -> list[str]:
    with db.read_session() as session:
        return list(
            session.scalars(
                select(JobEvent.reason).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
            )
        )


def test_a_running_task_stores_progress_and_is_polled_again_later(
    db: Database, settings: Settings
) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, started=30.0)
    poll(db, settings, up.task("in_progress", progress=40), clock=clock)
    row = job(db, job_id)
    assert (row.status, row.progress, row.polls, row.lease_owner) == (RUNNING, 40, 1, None)
    assert row.due_at is not None and row.due_at > clock()
    assert events(db, job_id) == []


def test_progress_readings_bring_the_next_poll_to_the_predicted_finish(
    db: Database, settings: Settings
) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, started=30.0, progress=40)
    clock.advance(10.0)
    # 40 % → 80 % in 10 s: done in about 5 s more, sooner than the growing gap (10 s)
    poll(db, settings, up.task("in_progress", progress=80), clock=clock)
    due = job(db, job_id).due_at
    assert due is not None
    assert 4.5 <= (due - clock()).total_seconds() <= 6.0


def test_a_success_stores_urls_points_and_the_raw_task(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, webhook_url="https://hooks.example.com/in")
    poll(
        db, settings, up.task("success", progress=100, image_url=GRID, total_points=40), clock=clock
    )
    row = job(db, job_id)
    assert row.status == SUCCEEDED
    assert row.result == {"image_urls": [GRID], "video_url": None}
    assert (row.cost_points, row.progress, row.polls) == (40, 100, 1)
    assert row.upstream_raw is not None and row.upstream_raw["image_url"] == GRID
    assert events(db, job_id) == ["upstream_succeeded"]
    with db.read_session() as session:
        deliveries = session.scalar(select(func.count()).where(WebhookDelivery.job_id == job_id))
    assert deliveries == 1


def test_a_video_result_and_missing_points(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, model="grok-imagine-video-1.5-preview")
    poll(db, settings, up.task("success", video_url="https://oss.example.com/v.mp4"), clock=clock)
    row = job(db, job_id)
    assert row.result == {"image_urls": [], "video_url": "https://oss.example.com/v.mp4"}
    assert row.cost_points is None


def test_an_upstream_failure_fails_the_job_with_the_reason(
    db: Database, settings: Settings
) -> None:
    clock = TestClock()
    job_id = running_job(db, clock)
    poll(db, settings, up.task("failure", fail_reason="内容审核未通过"), clock=clock)
    row = job(db, job_id)
    assert (row.status, row.error_code, row.error_message) == (
        FAILED,
        "upstream_failed",
        "内容审核未通过",
    )


def test_a_task_upstream_no_longer_knows_fails_the_job(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, model="grok-imagine-video-1.5-preview")
    reply = lambda request: httpx.Response(  # noqa: E731
        500, json=up.envelope(status="Fail", message="视频任务查询失败: Video task not found")
    )
    poll(db, settings, reply, clock=clock)
    assert (job(db, job_id).status, job(db, job_id).error_code) == (FAILED, "upstream_failed")


ONLY_RESCHEDULED = [
    pytest.param(up.http_error(500), id="5xx"),
    pytest.param(up.http_error(429, **{"Retry-After": "3"}), id="429"),
    pytest.param(up.raises(httpx.ReadTimeout), id="read-timeout"),
    pytest.param(up.raises(httpx.ConnectError), id="unreachable"),
    pytest.param(up.html(200), id="html-page"),
    pytest.param(up.task("warming_up"), id="unknown-status"),
    pytest.param(up.task("success"), id="success-without-urls"),
    pytest.param(lambda request: httpx.Response(200, content=b"{not json"), id="broken-json"),
    pytest.param(up.http_error(401), id="bad-key"),
]


@pytest.mark.parametrize("reply", ONLY_RESCHEDULED)
def test_trouble_on_a_poll_only_reschedules_it(
    db: Database, settings: Settings, reply: up.Reply
) -> None:
    clock = TestClock()
    job_id = running_job(db, clock)
    report = poll(db, settings, reply, clock=clock)
    row = job(db, job_id)
    assert (row.status, row.polls, row.lease_owner, row.error_code) == (RUNNING, 1, None, None)
    assert row.due_at is not None and row.due_at > clock()
    assert sum(report.errors.values()) == 1


def test_a_job_past_its_deadline_times_out_keeping_its_task_id(
    db: Database, settings: Settings
) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, started=700.0, deadline=600.0)
    poll(db, settings, up.task("in_progress", progress=90), clock=clock)
    row = job(db, job_id)
    assert (row.status, row.error_code, row.upstream_task_id) == (
        TIMED_OUT,
        "deadline_exceeded",
        "task-1",
    )
    assert "600 s" in (row.error_message or "")
    # the reconcile pass will look again
    assert row.due_at is not None and row.due_at > clock()


def test_the_next_poll_never_lands_after_the_deadline(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, started=100.0, deadline=101.0)
    poll(db, settings, up.task("in_progress"), clock=clock)
    row = job(db, job_id)
    assert row.due_at == row.deadline_at


def test_reconcile_records_a_late_success_with_its_cost(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, status=TIMED_OUT)
    poll(db, settings, up.task("success", image_url=GRID, total_points=40), clock=clock)
    row = job(db, job_id)
    assert (row.status, row.cost_points, row.error_code) == (SUCCEEDED, 40, None)
    assert events(db, job_id) == ["late_success"]


def test_reconcile_stops_when_the_upstream_task_failed(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, status=TIMED_OUT)
    poll(db, settings, up.task("failure", fail_reason="生成失败"), clock=clock)
    row = job(db, job_id)
    assert (row.status, row.due_at) == (TIMED_OUT, None)
    assert events(db, job_id) == ["upstream_failed_after_timeout"]


def test_reconcile_keeps_looking_slowly_then_gives_up(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_id = running_job(db, clock, status=TIMED_OUT)
    poll(db, settings, up.task("in_progress"), clock=clock)
    due = job(db, job_id).due_at
    assert due is not None and 50 <= (due - clock()).total_seconds() <= 70
    clock.advance(2 * 86_400)
    poll(db, settings, up.task("in_progress"), clock=clock)
    assert job(db, job_id).due_at is None


def test_a_job_cancelled_while_polling_stays_cancelled(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_id = running_job(db, clock)

    def cancel_then_succeed(request: httpx.Request) -> httpx.Response:
        with db.session() as session:
            transition(session, job_id, from_status=RUNNING, to_status=CANCELLED, reason="cancel")
        return up.task("success", image_url=GRID, total_points=40)(request)

    poll(db, settings, cancel_then_succeed, clock=clock)
    assert job(db, job_id).status == CANCELLED


def test_many_jobs_are_polled_concurrently_in_one_tick(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_ids = [running_job(db, clock) for _ in range(30)]
    in_flight = 0
    peak = 0

    async def slow_success(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return up.task("success", image_url=GRID)(request)

    class AsyncRecorder(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await slow_success(request)

    async def main() -> Any:
        async with pump_context(db, settings, transport=AsyncRecorder(), clock=clock) as ctx:
            return await run_poll_pump(ctx)

    report = asyncio.run(main())
    assert report.succeeded == 30
    assert peak > 10
    assert all(job(db, job_id).status == SUCCEEDED for job_id in job_ids)

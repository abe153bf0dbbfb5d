"""The submit pump as a plain function: every retry rule, leases, limits and follow-ups."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from core.db import Database
from core.limiter import ALL
from core.settings import Settings
from core.tables import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobEvent
from core.transitions import transition
from tests.support import pipeline_upstream as up
from tests.support.pipeline_jobs import (
    TestClock,
    insert_batch,
    insert_jobs,
    job,
    job_row,
    jobs,
    new_api_key,
    pipeline_settings,
    pump_context,
)
from worker.submit import SubmitReport, run_submit_pump

SettingsFor = Callable[..., Settings]


@pytest.fixture
def settings(settings_for: SettingsFor, db_url: str) -> Settings:
    return pipeline_settings(settings_for, db_url)


def submit(
    db: Database,
    settings: Settings,
    reply: up.Reply | up.Recorder,
    *,
    clock: TestClock | None = None,
    owner: str | None = None,
) -> SubmitReport:
    recorder = reply if isinstance(reply, up.Recorder) else up.Recorder(reply)

    async def main() -> SubmitReport:
        async with pump_context(
            db, settings, transport=recorder.transport, clock=clock or TestClock(), owner=owner
        ) as ctx:
            return await run_submit_pump(ctx)

    return asyncio.run(main())


def seconds_until(when: dt.datetime | None, clock: TestClock) -> float:
    assert when is not None
    return (when - clock()).total_seconds()


def test_an_accepted_submit_makes_the_job_running(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key, model="flux-2-pro")])
    clock = TestClock()
    report = submit(db, settings, up.submitted("task-42"), clock=clock)
    row = job(db, job_id)
    assert report.submitted == 1
    assert row.status == RUNNING
    assert row.upstream_task_id == "task-42"
    assert row.attempts == 1
    assert row.submitted_at == clock()
    assert row.lease_owner is None
    # FLUX's typical 15 s, not yet confirmed by finished jobs: first poll well before it
    assert 8.5 <= seconds_until(row.due_at, clock) <= 11.0
    assert seconds_until(row.deadline_at, clock) == pytest.approx(600.0)


def test_the_time_scale_shortens_the_default_deadline(
    db: Database, settings_for: SettingsFor, db_url: str
) -> None:
    settings = pipeline_settings(settings_for, db_url, poll_time_scale=0.01)
    key = new_api_key(db)
    [scaled, own] = insert_jobs(
        db, [job_row(key, model="mj-v7"), job_row(key, model="mj-v7", deadline_seconds=120)]
    )
    clock = TestClock()
    submit(db, settings, up.submitted(), clock=clock)
    assert seconds_until(job(db, scaled).deadline_at, clock) == pytest.approx(9.0)
    assert seconds_until(job(db, own).deadline_at, clock) == pytest.approx(1.2)


OUTCOMES = [
    pytest.param(
        up.refused("bad --ar"), FAILED, 1, "upstream_rejected", "bad --ar", id="fail-envelope"
    ),
    pytest.param(
        up.refused("You exceeded your current API quota. Please purchase the API points."),
        FAILED,
        1,
        "upstream_quota_exceeded",
        "out of API points",
        id="out-of-points",
    ),
    pytest.param(up.http_error(500), QUEUED, 1, None, None, id="500-retried"),
    pytest.param(up.html(502), QUEUED, 1, None, None, id="502-page-retried"),
    pytest.param(up.http_error(429), QUEUED, 0, None, None, id="429-no-attempt-spent"),
    pytest.param(up.raises(httpx.ConnectError), QUEUED, 0, None, None, id="connect-refused"),
    pytest.param(up.http_error(401), QUEUED, 0, None, None, id="bad-key-pauses"),
    pytest.param(
        up.raises(httpx.ReadTimeout),
        FAILED,
        1,
        "submit_uncertain",
        "paying twice",
        id="read-timeout-not-resubmitted",
    ),
    pytest.param(
        lambda request: httpx.Response(200, json=up.envelope({})),
        FAILED,
        1,
        "invalid_upstream_response",
        "data.id",
        id="no-task-id",
    ),
    pytest.param(
        up.html(200),
        FAILED,
        1,
        "invalid_upstream_response",
        "HTTP 200",
        id="html-instead-of-json",
    ),
]


@pytest.mark.parametrize(("reply", "status", "attempts", "code", "message"), OUTCOMES)
def test_submit_outcomes(
    db: Database,
    settings: Settings,
    reply: up.Reply,
    status: str,
    attempts: int,
    code: str | None,
    message: str | None,
) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])
    submit(db, settings, reply)
    row = job(db, job_id)
    assert (row.status, row.attempts, row.error_code) == (status, attempts, code)
    if message is not None:
        assert message in (row.error_message or "")
    assert row.lease_owner is None
    if status == QUEUED:
        assert row.due_at is not None and row.due_at > row.created_at


def test_a_5xx_retry_waits_with_backoff_and_is_recorded(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])
    clock = TestClock()
    submit(db, settings, up.http_error(503), clock=clock)
    assert 1.5 <= seconds_until(job(db, job_id).due_at, clock) <= 2.5
    with db.read_session() as session:
        reasons = list(session.scalars(select(JobEvent.reason).where(JobEvent.job_id == job_id)))
    assert reasons == ["submit_retry"]


def test_5xx_retries_are_bounded_then_the_job_fails_as_unavailable(
    db: Database, settings_for: SettingsFor, db_url: str
) -> None:
    settings = pipeline_settings(settings_for, db_url, submit_max_attempts=3)
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])
    clock = TestClock()
    for _ in range(3):
        submit(db, settings, up.http_error(500), clock=clock)
        clock.advance(600)
    row = job(db, job_id)
    assert (row.status, row.error_code, row.attempts) == (FAILED, "upstream_unavailable", 3)
    assert "3 attempts" in (row.error_message or "")


def test_a_429_honours_retry_after_and_slows_the_provider(db: Database, settings: Settings) -> None:
    key = new_api_key(db)
    [limited, waiting] = insert_jobs(db, [job_row(key), job_row(key)])
    clock = TestClock()
    calls = up.Recorder(up.http_error(429, **{"Retry-After": "7"}))
    settings = settings.model_copy(update={"submit_batch_size": 1})
    submit(db, settings, calls, clock=clock)
    assert 6.9 <= seconds_until(job(db, limited).due_at, clock) <= 7.5
    # the provider is paused: the next tick sends nothing at all
    submit(db, settings, calls, clock=clock)
    assert len(calls.requests) == 1
    assert job(db, waiting).status == QUEUED


def test_nothing_sent_pauses_every_submit_with_a_shared_backoff(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    insert_jobs(db, [job_row(key), job_row(key, model="mj-v7")])
    calls = up.Recorder(up.raises(httpx.ConnectError))
    submit(db, settings, calls)
    submit(db, settings, calls)
    assert len(calls.requests) == 2


def test_a_refused_key_pauses_submits_and_is_logged_without_the_key(
    db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_api_key(db)
    job_ids = insert_jobs(db, [job_row(key) for _ in range(3)])
    settings = settings.model_copy(update={"submit_batch_size": 1})
    with caplog.at_level(logging.ERROR, logger="worker.submit"):
        submit(db, settings, up.http_error(401))
        submit(db, settings, up.http_error(401))
    assert [row.status for row in jobs(db, job_ids)] == [QUEUED] * 3
    assert sum(row.attempts for row in jobs(db, job_ids)) == 0
    assert "refused our credentials" in caplog.text
    assert "test-key" not in caplog.text
    client = redis.Redis.from_url(settings.redis_url)
    assert client.exists(f"mcjobs:limit:{ALL}:paused_until")
    client.close()


def test_resubmit_on_uncertain_retries_a_read_timeout(
    db: Database, settings_for: SettingsFor, db_url: str
) -> None:
    settings = pipeline_settings(settings_for, db_url, resubmit_on_uncertain=True)
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])
    submit(db, settings, up.raises(httpx.ReadTimeout))
    assert (job(db, job_id).status, job(db, job_id).attempts) == (QUEUED, 1)


def test_a_job_cancelled_mid_submit_stays_cancelled_and_keeps_the_task_id(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])

    def cancel_then_accept(request: httpx.Request) -> httpx.Response:
        with db.session() as session:
            transition(session, job_id, from_status=QUEUED, to_status=CANCELLED, reason="cancel")
        return up.submitted("task-late")(request)

    report = submit(db, settings, cancel_then_accept)
    row = job(db, job_id)
    assert (row.status, row.upstream_task_id, report.lost) == (CANCELLED, "task-late", 1)
    with db.read_session() as session:
        reasons = list(session.scalars(select(JobEvent.reason).where(JobEvent.job_id == job_id)))
    assert "submitted_after_release" in reasons


def test_a_job_whose_lease_was_taken_over_is_not_moved_twice(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])

    def steal_then_accept(request: httpx.Request) -> httpx.Response:
        with db.session() as session:
            from sqlalchemy import update

            from core.tables import Job

            session.execute(update(Job).where(Job.id == job_id).values(lease_owner="thief"))
        return up.submitted("task-x")(request)

    report = submit(db, settings, steal_then_accept)
    row = job(db, job_id)
    assert (row.status, row.lease_owner, report.lost) == (QUEUED, "thief", 1)


def test_the_rate_limit_is_shared_and_per_provider(
    db: Database, settings_for: SettingsFor, db_url: str
) -> None:
    settings = pipeline_settings(
        settings_for,
        db_url,
        provider_rate_per_second={"default": 1000.0, "flux": 0.1},
    )
    key = new_api_key(db)
    insert_jobs(db, [job_row(key, model="flux-2-pro") for _ in range(5)])
    insert_jobs(db, [job_row(key, model="z-image-turbo") for _ in range(5)])
    first = submit(db, settings, up.submitted(), owner="worker-a")
    second = submit(db, settings, up.submitted(), owner="worker-b")
    # one flux token (the bucket holds at least one) across both workers; z-image unhindered
    assert first.submitted + second.submitted == 6


def test_the_in_flight_cap_counts_running_jobs_in_the_database(
    db: Database, settings_for: SettingsFor, db_url: str
) -> None:
    settings = pipeline_settings(settings_for, db_url, provider_max_in_flight={"default": 3})
    key = new_api_key(db)
    insert_jobs(db, [job_row(key) for _ in range(5)])
    assert submit(db, settings, up.submitted()).submitted == 3
    assert submit(db, settings, up.submitted()).submitted == 0


def test_a_single_job_behind_a_10k_batch_is_submitted_in_the_first_tick(
    pg_db: Database, settings_for: SettingsFor, pg_url: str
) -> None:
    settings = pipeline_settings(settings_for, pg_url, provider_rate_per_second={"default": 20.0})
    bulk, single_key = new_api_key(pg_db, "bulk"), new_api_key(pg_db, "single")
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    insert_batch(pg_db, bulk, [job_row(bulk, created_at=earlier) for _ in range(10_000)])
    [single] = insert_jobs(pg_db, [job_row(single_key)])
    calls = up.Recorder(up.submitted())
    report = submit(pg_db, settings, calls)
    assert job(pg_db, single).status == RUNNING
    assert report.submitted == 20


FOLLOW_UP = {"model": "mj-v7", "action": "split", "source_index": 3}


def _source(key: str, status: str, task_id: str | None) -> dict[str, Any]:
    row = job_row(key, model="mj-v7")
    row.update(status=status, upstream_task_id=task_id)
    return row


def test_a_follow_up_is_sent_against_the_source_task_and_tile(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    [source] = insert_jobs(db, [_source(key, SUCCEEDED, "grid-task")])
    [follow_up] = insert_jobs(db, [job_row(key, source_job_id=source, **FOLLOW_UP)])
    calls = up.Recorder(up.submitted("tile-task"))
    submit(db, settings, calls)
    assert calls.requests[0].url.path.endswith("/midjourney/separate")
    assert calls.bodies() == [{"id": "grid-task", "index": 3}]
    assert job(db, follow_up).status == RUNNING


@pytest.mark.parametrize(
    ("source_status", "task_id", "expected"),
    [
        pytest.param(RUNNING, "grid-task", QUEUED, id="source-running-waits"),
        pytest.param(FAILED, None, FAILED, id="source-failed-fails"),
    ],
)
def test_a_follow_up_waits_for_or_fails_with_its_source(
    db: Database, settings: Settings, source_status: str, task_id: str | None, expected: str
) -> None:
    key = new_api_key(db)
    [source] = insert_jobs(db, [_source(key, source_status, task_id)])
    [follow_up] = insert_jobs(db, [job_row(key, source_job_id=source, **FOLLOW_UP)])
    calls = up.Recorder(up.submitted())
    submit(db, settings, calls)
    row = job(db, follow_up)
    assert calls.requests == []
    assert row.status == expected
    if expected == FAILED:
        assert row.error_code == "source_failed"
    else:
        assert row.due_at is not None and row.due_at > row.created_at


def test_jobs_beyond_their_batch_budget_fail_instead_of_being_submitted(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    rows = [job_row(key) for _ in range(3)]
    for row in rows:
        row["estimated_points"] = 30
    batch_id = insert_batch(db, key, rows)
    with db.session() as session:
        from sqlalchemy import update

        from core.tables import Batch

        session.execute(update(Batch).where(Batch.id == batch_id).values(max_points=50))
    calls = up.Recorder(up.submitted())
    submit(db, settings, calls)
    ended = jobs(db, [row["id"] for row in rows])
    assert [row.status for row in ended] == [RUNNING, FAILED, FAILED]
    assert {row.error_code for row in ended[1:]} == {"budget_exceeded"}
    assert len(calls.requests) == 1

"""The worker's data path under trouble: Redis errors, failed and stalled database writes,
deadlines that pass while a task may have finished.

An answered submit must end with its task id recorded, whatever Redis or the database do
meanwhile; a deadline must not time out a task that finished.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError

from core.claims import call_budget_seconds, last_poll_grace
from core.db import Database
from core.maintenance import run_maintenance
from core.settings import Settings
from core.tables import FAILED, QUEUED, RUNNING, SUCCEEDED, TIMED_OUT, Job
from tests.support import pipeline_upstream as up
from tests.support.pipeline_jobs import (
    TestClock,
    insert_jobs,
    job,
    job_row,
    jobs,
    new_api_key,
    pipeline_settings,
    pump_context,
)
from worker import submit as submit_module
from worker.context import PumpContext
from worker.poll import run_poll_pump
from worker.sending import SEND_PARTS
from worker.submit import SubmitReport, run_submit_pump

SettingsFor = Callable[..., Settings]


@pytest.fixture
def settings(settings_for: SettingsFor, db_url: str) -> Settings:
    return pipeline_settings(settings_for, db_url)


def _numbered_submits(delays: dict[int, float] | None = None) -> Callable[..., Any]:
    """Submit answers ``t-1``, ``t-2``, … in arrival order; the n-th waits ``delays[n]``."""
    arrivals = iter(range(1, 10_000))

    async def reply(request: httpx.Request) -> httpx.Response:
        n = next(arrivals)
        await asyncio.sleep((delays or {}).get(n, 0.0))
        return httpx.Response(200, json=up.envelope({"id": f"t-{n}"}))

    return reply


def _run_submit(
    db: Database,
    settings: Settings,
    handler: Callable[..., Any],
    *,
    prepare: Callable[[PumpContext], None] | None = None,
) -> SubmitReport:
    async def main() -> SubmitReport:
        async with pump_context(db, settings, transport=httpx.MockTransport(handler)) as ctx:
            if prepare is not None:
                prepare(ctx)
            return await run_submit_pump(ctx)

    return asyncio.run(main())


class RedisGoesAway:
    """Every limiter call fails as if Redis had gone away, from the moment the first request
    reaches MetaChat (the claim before it still works)."""

    def __init__(self, reply: Callable[..., Any]) -> None:
        self.reply = reply
        self.gone = False

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.gone = True
        answer = self.reply(request)
        if asyncio.iscoroutine(answer):
            answer = await answer
        assert isinstance(answer, httpx.Response)
        return answer

    def prepare(self, ctx: PumpContext) -> None:
        limiter = ctx.limiter
        for name in ("release", "slow_down", "pause", "note_unreachable", "note_reachable"):
            setattr(limiter, name, self._failing(getattr(limiter, name)))

    def _failing(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: object, **kwargs: object) -> Any:
            if self.gone:
                raise redis.ConnectionError("Redis went away")
            return method(*args, **kwargs)

        return call


def test_a_redis_error_after_metachat_accepted_never_loses_the_task_id(
    db: Database, settings: Settings
) -> None:
    key = new_api_key(db)
    ids = insert_jobs(db, [job_row(key) for _ in range(3)])
    outage = RedisGoesAway(_numbered_submits())
    report = _run_submit(db, settings, outage.handler, prepare=outage.prepare)
    assert report.submitted == 3
    rows = jobs(db, ids)
    assert {row.status for row in rows} == {RUNNING}
    assert sorted(row.upstream_task_id or "" for row in rows) == ["t-1", "t-2", "t-3"]


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        pytest.param(up.raises(httpx.ConnectError), QUEUED, id="never-left"),
        pytest.param(up.http_error(429), QUEUED, id="rate-limited"),
        pytest.param(up.refused("bad --ar"), FAILED, id="refused"),
    ],
)
def test_a_redis_error_never_changes_the_outcome_of_a_submit(
    db: Database, settings: Settings, reply: up.Reply, status: str
) -> None:
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])
    outage = RedisGoesAway(reply)
    _run_submit(db, settings, outage.handler, prepare=outage.prepare)
    row = job(db, job_id)
    assert row.status == status
    assert row.error_code != "submit_uncertain"
    if status == QUEUED:
        assert (row.lease_owner, row.submit_sent_at) == (None, None)


def test_a_failed_write_records_the_answers_still_on_the_wire_before_failing(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_api_key(db)
    insert_jobs(db, [job_row(key) for _ in range(3)])
    real = submit_module.record_submits
    calls: list[int] = []

    def first_write_fails(ctx: PumpContext, plans: Any, **kwargs: Any) -> None:
        calls.append(len(plans))
        if len(calls) == 1:
            raise RuntimeError("the first write broke")
        real(ctx, plans, **kwargs)

    monkeypatch.setattr(submit_module, "record_submits", first_write_fails)
    # the first answer comes at once, the two others while its write fails
    with pytest.raises(RuntimeError, match="the first write broke"):
        _run_submit(db, settings, _numbered_submits({2: 0.3, 3: 0.3}))
    assert calls == [1, 2]
    with db.read_session() as session:
        rows = session.execute(select(Job.status, Job.upstream_task_id)).all()
    running = sorted(task for status, task in rows if status == RUNNING)
    assert running == ["t-2", "t-3"]


def test_a_write_that_fails_once_is_tried_again(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_api_key(db)
    ids = insert_jobs(db, [job_row(key) for _ in range(2)])
    real = submit_module.record_submits
    failures = [OperationalError("UPDATE jobs", {}, Exception("connection reset"))]

    def flaky(ctx: PumpContext, plans: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        real(ctx, plans, **kwargs)

    monkeypatch.setattr(submit_module, "record_submits", flaky)
    report = _run_submit(db, settings, _numbered_submits())
    assert report.submitted == 2
    assert {row.status for row in jobs(db, ids)} == {RUNNING}


def test_a_database_stall_longer_than_the_call_budget_turns_no_answer_into_a_timeout(
    pg_db: Database, settings_for: SettingsFor, pg_url: str
) -> None:
    """The jobs table is locked from another connection right after the requests leave, for
    longer than a call's whole budget: every submit was answered in milliseconds and must be
    recorded as running once the lock goes, none as ``submit_uncertain``."""
    settings = pipeline_settings(
        settings_for, pg_url, metachat_connect_timeout=0.5, metachat_read_timeout=0.5
    )
    stall = call_budget_seconds(settings) + 2.0
    key = new_api_key(pg_db)
    ids = insert_jobs(pg_db, [job_row(key) for _ in range(20)])
    locked = threading.Event()
    locker = create_engine(pg_url)

    def hold_the_lock() -> None:
        with locker.connect() as connection:
            connection.execute(text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            threading.Event().wait(stall)
            connection.rollback()

    holder = threading.Thread(target=hold_the_lock)
    answers = iter(range(1, 1000))

    async def reply(request: httpx.Request) -> httpx.Response:
        if not holder.is_alive() and not locked.is_set():
            holder.start()
        # answer only once the table is locked: the write of this answer stalls
        await asyncio.to_thread(locked.wait, 10)
        return httpx.Response(200, json=up.envelope({"id": f"t-{next(answers)}"}))

    try:
        report = _run_submit(pg_db, settings, reply)
    finally:
        holder.join()
        locker.dispose()
    assert report.submitted == 20
    rows = jobs(pg_db, ids)
    assert {row.status for row in rows} == {RUNNING}
    assert all(row.upstream_task_id for row in rows)


def _past_deadline_job(db: Database, clock: TestClock, *, overdue: float) -> str:
    key = new_api_key(db)
    row = job_row(key, model="flux-2-pro")
    submitted = clock() - dt.timedelta(seconds=600)
    row.update(
        status=RUNNING,
        upstream_task_id="t-1",
        submitted_at=submitted,
        updated_at=submitted,
        # a poll was due at the deadline but never ran (a stalled database, a busy worker)
        due_at=clock() - dt.timedelta(seconds=overdue),
        deadline_at=clock() - dt.timedelta(seconds=overdue),
        attempts=1,
    )
    [job_id] = insert_jobs(db, [row])
    return job_id


def _poll(db: Database, settings: Settings, reply: up.Reply, clock: TestClock) -> None:
    async def main() -> None:
        transport = up.Recorder(reply).transport
        async with pump_context(db, settings, transport=transport, clock=clock) as ctx:
            await run_poll_pump(ctx)

    asyncio.run(main())


def test_a_task_that_finished_before_a_missed_deadline_poll_succeeds(
    db: Database, settings: Settings
) -> None:
    clock = TestClock()
    job_id = _past_deadline_job(db, clock, overdue=120)
    # maintenance runs first after the stall: it asks for a last poll, it does not time out
    run_maintenance(db, settings, now=clock())
    assert job(db, job_id).status == RUNNING
    _poll(db, settings, up.task("success", image_url="https://oss.example.com/a.png"), clock)
    assert job(db, job_id).status == SUCCEEDED


def test_a_task_still_going_at_its_last_poll_times_out(db: Database, settings: Settings) -> None:
    clock = TestClock()
    job_id = _past_deadline_job(db, clock, overdue=1)
    _poll(db, settings, up.task("in_progress", progress=50), clock)
    row = job(db, job_id)
    assert (row.status, row.error_code, row.upstream_task_id) == (
        TIMED_OUT,
        "deadline_exceeded",
        "t-1",
    )


def test_a_failed_last_poll_is_tried_again_until_the_grace_runs_out(
    db: Database, settings: Settings
) -> None:
    clock = TestClock()
    job_id = _past_deadline_job(db, clock, overdue=1)
    _poll(db, settings, up.http_error(502), clock)
    row = job(db, job_id)
    assert row.status == RUNNING
    assert row.deadline_at is not None and row.due_at is not None
    grace_end = row.deadline_at + dt.timedelta(seconds=last_poll_grace(settings))
    assert clock() < row.due_at <= grace_end
    clock.now = grace_end
    _poll(db, settings, up.http_error(502), clock)
    assert job(db, job_id).status == TIMED_OUT


def test_a_round_is_marked_sent_part_by_part_as_it_leaves(db: Database, settings: Settings) -> None:
    """When a request of the round leaves, only its own part (and earlier ones) is marked
    sent: a crash at that moment finds at most a part's worth marked but not yet sent."""
    key = new_api_key(db)
    insert_jobs(db, [job_row(key) for _ in range(20)])
    marked_when_leaving: list[int] = []

    def marked() -> int:
        with db.read_session() as session:
            return int(
                session.scalar(select(func.count()).where(Job.submit_sent_at.is_not(None))) or 0
            )

    answers = iter(range(1, 1000))

    async def reply(request: httpx.Request) -> httpx.Response:
        # read on the loop on purpose: the count as the request leaves, nothing later
        marked_when_leaving.append(marked())
        return httpx.Response(200, json=up.envelope({"id": f"t-{next(answers)}"}))

    report = _run_submit(db, settings, reply)
    assert report.submitted == 20
    # eight parts of two or three: each request left while at most its own part and those
    # before it were marked
    assert SEND_PARTS == 8
    ends = [20 * k // 8 for k in range(1, 9)]  # 2, 5, 7, 10, 12, 15, 17, 20
    assert marked_when_leaving[0] == ends[0]
    for n, count in enumerate(marked_when_leaving):
        part = next(k for k, end in enumerate(ends) if n < end)
        assert count <= ends[part], marked_when_leaving

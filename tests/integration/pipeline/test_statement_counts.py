"""The hot path is set-based: a round costs a constant number of SQL statements whatever the
number of jobs in it, and an idle tick is one indexed read.

Each round here gets its answers all at once (`AllAtOnce`), so it is one claim and one write;
the count of a 200-job round must not exceed that of a 20-job round.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from core.db import Database
from core.settings import Settings
from core.tables import FAILED, RUNNING, SUCCEEDED, TIMED_OUT
from tests.support import pipeline_upstream as up
from tests.support.pipeline_jobs import (
    TestClock,
    insert_jobs,
    job_row,
    new_api_key,
    pipeline_settings,
    pump_context,
    status_counts,
)
from tests.support.pipeline_statements import AllAtOnce, StatementLog, counting
from worker import concurrency
from worker.poll import poll_round, run_poll_pump
from worker.submit import run_submit_pump, submit_round

SMALL, LARGE = 20, 200
HOOK = "https://hooks.example.com/done"


@pytest.fixture
def settings(settings_for: Callable[..., Settings], db_url: str) -> Settings:
    return pipeline_settings(
        settings_for,
        db_url,
        submit_batch_size=LARGE,
        poll_batch_size=LARGE,
        metachat_max_connections=LARGE,
    )


@pytest.fixture(autouse=True)
def one_write_per_round(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # answers that land together share a write; give them all the time they need to
    monkeypatch.setattr(concurrency, "COALESCE_SECONDS", 10.0)
    yield


def _submit_reply() -> up.Reply:
    ids = itertools.count(1)
    return lambda request: httpx.Response(200, json=up.envelope({"id": f"t-{next(ids)}"}))


def _count_submit_round(db: Database, settings: Settings, jobs: int) -> StatementLog:
    key = new_api_key(db)
    insert_jobs(db, [job_row(key, webhook_url=HOOK) for _ in range(jobs)])
    upstream = AllAtOnce(_submit_reply(), jobs)

    async def main() -> StatementLog:
        async with pump_context(db, settings, transport=upstream.transport) as ctx:
            with counting(db) as log:
                report = await submit_round(ctx)
        assert report.submitted == jobs
        return log

    return asyncio.run(main())


def test_a_submit_round_costs_the_same_statements_for_200_jobs_as_for_20(
    db: Database, settings: Settings
) -> None:
    small = _count_submit_round(db, settings, SMALL)
    large = _count_submit_round(db, settings, LARGE)
    print(f"\nsubmit round: {len(small)} statements for 20 jobs, {len(large)} for 200")
    assert status_counts(db) == {RUNNING: SMALL + LARGE}
    assert len(large) <= len(small), f"20 jobs:\n{small}\n200 jobs:\n{large}"


def _poll_reply(kind: Callable[[int], str]) -> up.Reply:
    """Answers by task number: ``kind(n)`` is success, failure or in_progress."""

    def reply(request: httpx.Request) -> httpx.Response:
        task_id = request.url.path.rsplit("/", 1)[-1]
        status = kind(int(task_id.split("-")[1]))
        fields: dict[str, Any] = {"progress": 100 if status == "success" else 40}
        if status == "success":
            fields.update(image_url="https://oss.example.com/x.png", total_points=8)
        if status == "failure":
            fields.update(fail_reason="refused by moderation")
        return httpx.Response(200, json=up.envelope({"id": task_id, "status": status, **fields}))

    return reply


def _count_poll_round(
    db: Database, settings: Settings, jobs: int, kind: Callable[[int], str], *, past: int = 0
) -> StatementLog:
    """Poll ``jobs`` running jobs once; the first ``past`` of them are past their deadline."""
    clock = TestClock()
    key = new_api_key(db)
    rows = []
    for n in range(jobs):
        submitted = clock() - dt.timedelta(seconds=30)
        deadline = clock() - dt.timedelta(seconds=1) if n < past else clock() + dt.timedelta(600)
        row = job_row(key, webhook_url=HOOK)
        row.update(
            status=RUNNING,
            upstream_task_id=f"t-{n}",
            submitted_at=submitted,
            updated_at=submitted,
            due_at=clock(),
            deadline_at=deadline,
            attempts=1,
        )
        rows.append(row)
    insert_jobs(db, rows)
    upstream = AllAtOnce(_poll_reply(kind), jobs)

    async def main() -> StatementLog:
        async with pump_context(db, settings, transport=upstream.transport, clock=clock) as ctx:
            with counting(db) as log:
                report = await poll_round(ctx, status=RUNNING, limit=LARGE)
        assert report.claimed == jobs
        return log

    return asyncio.run(main())


def _mixed(n: int) -> str:
    return ("success", "failure", "in_progress")[n % 3]


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(lambda n: "success", id="all-succeed"),
        pytest.param(lambda n: "in_progress", id="all-still-running"),
        pytest.param(_mixed, id="succeed-fail-run-and-time-out"),
    ],
)
def test_a_poll_round_costs_the_same_statements_for_200_jobs_as_for_20(
    db: Database, settings: Settings, kind: Callable[[int], str]
) -> None:
    small = _count_poll_round(db, settings, SMALL, kind, past=SMALL // 4)
    large = _count_poll_round(db, settings, LARGE, kind, past=LARGE // 4)
    print(f"\npoll round: {len(small)} statements for 20 jobs, {len(large)} for 200")
    assert len(large) <= len(small), f"20 jobs:\n{small}\n200 jobs:\n{large}"
    counts = status_counts(db)
    assert sum(counts.values()) == SMALL + LARGE
    if kind is _mixed:
        assert set(counts) == {FAILED, SUCCEEDED, RUNNING, TIMED_OUT}
    elif kind(0) == "success":
        assert counts == {SUCCEEDED: SMALL + LARGE}
    else:
        # the ones past their deadline answered "still going" after it: timed out
        assert counts == {RUNNING: 15 + 150, TIMED_OUT: 5 + 50}


def _count_idle_tick(db: Database, settings: Settings, tick: str) -> tuple[StatementLog, float]:
    upstream = up.Recorder(up.submitted())

    async def main() -> tuple[StatementLog, float]:
        async with pump_context(db, settings, transport=upstream.transport) as ctx:
            started = time.monotonic()
            with counting(db) as log:
                if tick == "poll":
                    await run_poll_pump(ctx, window_seconds=60.0)
                else:
                    await run_submit_pump(ctx, window_seconds=60.0)
            return log, time.monotonic() - started

    result = asyncio.run(main())
    assert upstream.requests == []
    return result


def _reads(log: StatementLog) -> list[str]:
    return [text for text in log.statements if not text.upper().startswith("BEGIN")]


@pytest.mark.parametrize("tick", ["poll", "submit"])
def test_an_idle_tick_is_one_read_and_returns_at_once(
    db: Database, settings: Settings, tick: str
) -> None:
    key = new_api_key(db)
    # work exists, but none of it is due within the tick's window
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    queued = job_row(key)
    queued["due_at"] = later
    running = job_row(key)
    running.update(status=RUNNING, upstream_task_id="t-1", submitted_at=later, due_at=later)
    insert_jobs(db, [queued, running])
    log, seconds = _count_idle_tick(db, settings, tick)
    assert len(_reads(log)) == 1, str(log)
    assert _reads(log)[0].upper().startswith("SELECT")
    # it returned instead of holding the worker's process for the 60 s window
    assert seconds < 30

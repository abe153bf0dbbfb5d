"""The daily comparison of recorded points with MetaChat's usage records, and the commands
`mcjobs reconcile-usage` and `mcjobs budget` run as processes (against the simulator)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from core.db import Database
from core.keys import create_api_key
from core.stats import reconcile_usage
from core.tables import ApiKey, utcnow
from metachat import MetaChatClient, SubmitRequest, build_catalogue, make_http_client
from sim import SimConfig, SimServer
from tests.support.ops_data import NOW, finished_job

DAY = NOW.date()


@dataclass(frozen=True)
class Charge:
    task_id: str
    points: int
    created_at: dt.datetime | None


def _job(db: Database, key_id: str, task_id: str, points: int, finished: dt.datetime) -> str:
    with db.session() as s:
        return finished_job(
            s,
            key_id,
            status="succeeded",
            provider="flux",
            model="flux-2-pro",
            finished_at=finished,
            upstream_seconds=5,
            cost_points=points,
            upstream_task_id=task_id,
        ).id


def test_points_that_agree_and_every_kind_of_disagreement_are_reported(db: Database) -> None:
    with db.session() as s:
        key_id = create_api_key(s, name="t").id
    _job(db, key_id, "t-ok", 10, NOW - dt.timedelta(hours=1))
    _job(db, key_id, "t-diff", 10, NOW - dt.timedelta(hours=2))
    _job(db, key_id, "t-gone", 7, NOW - dt.timedelta(hours=3))
    _job(db, key_id, "t-midnight", 4, dt.datetime.combine(DAY, dt.time(23, 59, 59), dt.UTC))
    _job(db, key_id, "t-yesterday", 5, NOW - dt.timedelta(days=1))
    charges = [
        Charge("t-ok", 10, NOW - dt.timedelta(hours=1)),
        Charge("t-diff", 12, NOW - dt.timedelta(hours=2)),
        Charge("t-unknown", 30, NOW - dt.timedelta(hours=4)),
        # charged just after midnight, recorded just before: matched across the boundary
        Charge("t-midnight", 4, dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), dt.UTC)),
        # charged today for a job we finished yesterday: recorded, so not "unrecorded"
        Charge("t-yesterday", 5, NOW - dt.timedelta(hours=5)),
    ]
    with db.read_session() as s:
        report = reconcile_usage(s, charges, day=DAY)
    assert (report.recorded_points, report.upstream_points) == (31, 57)
    assert report.difference == 26
    assert report.matched == 2
    assert [(m.task_id, m.recorded, m.upstream) for m in report.mismatched] == [("t-diff", 10, 12)]
    assert [m.task_id for m in report.missing_upstream] == ["t-gone"]
    assert [(m.task_id, m.job_id, m.upstream) for m in report.unrecorded] == [
        ("t-unknown", None, 30)
    ]
    assert not report.agrees


def _mcjobs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # the ops commands on their own typer app, as `mcjobs` will mount them
    program = "import typer; from cli import ops; app = typer.Typer(); ops.register(app); app()"
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _charged_tasks(base_url: str, n: int) -> list[str]:
    async with make_http_client() as http:
        client = MetaChatClient(http, build_catalogue(), base_url=base_url, api_key="sk-test-1234")
        ids = [
            await client.submit(
                SubmitRequest(model="flux-2-pro", action="generate", prompt="a cat")
            )
            for _ in range(n)
        ]
        for task_id in ids:
            await _until_done(client, task_id)
        return ids


async def _until_done(client: MetaChatClient, task_id: str) -> None:
    for _ in range(200):
        if (await client.fetch("flux-2-pro", "generate", task_id)).is_terminal:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never finished")


def test_reconcile_usage_reads_metachat_and_exits_1_on_a_difference(
    pg_db: Database, redis_url: str
) -> None:
    with SimServer(SimConfig.for_profile("instant")) as sim:
        task_ids = asyncio.run(_charged_tasks(sim.base_url, 3))
        env = {
            "DATABASE_URL": pg_db.url,
            "REDIS_URL": redis_url,
            "METACHAT_BASE_URL": sim.base_url,
            "METACHAT_API_KEY": "sk-test-1234",
        }
        with pg_db.session() as s:
            key_id = create_api_key(s, name="t").id
        points = asyncio.run(_points_of(sim.base_url, task_ids))
        now = utcnow()
        for task_id in task_ids:
            _job(pg_db, key_id, task_id, points[task_id], now)
        agreed = _mcjobs(env, "reconcile-usage", "--day", now.date().isoformat())
        assert agreed.returncode == 0, agreed.stdout + agreed.stderr
        assert "agrees" in agreed.stdout
        assert "sk-test-1234" not in agreed.stdout + agreed.stderr

        asyncio.run(_charged_tasks(sim.base_url, 1))
        differs = _mcjobs(env, "reconcile-usage", "--day", now.date().isoformat())
    assert differs.returncode == 1
    assert "charged but not recorded here: 1" in differs.stdout


async def _points_of(base_url: str, task_ids: list[str]) -> dict[str, int]:
    async with make_http_client() as http:
        client = MetaChatClient(http, build_catalogue(), base_url=base_url, api_key="sk-test-1234")
        records = await client.usage_records(page=1, size=100)
    return {r.task_id: r.points for r in records if r.task_id in task_ids}


def test_budget_set_stores_limits_and_show_reports_what_is_left(
    pg_db: Database, redis_url: str
) -> None:
    with pg_db.session() as s:
        key_id = create_api_key(s, name="tenant").id
    _job(pg_db, key_id, "t-1", 30, utcnow())
    env = {"DATABASE_URL": pg_db.url, "REDIS_URL": redis_url}
    result = _mcjobs(env, "budget", "set", key_id, "--daily", "100", "--total", "1000")
    assert result.returncode == 0, result.stderr
    assert "daily:  100 points, 70 left" in result.stdout
    assert "total:  1,000 points, 970 left" in result.stdout
    cleared = _mcjobs(env, "budget", "set", key_id, "--no-daily")
    assert "daily:  no limit" in cleared.stdout
    with pg_db.read_session() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.id == key_id)).one()
    assert (row.max_points_daily, row.max_points_total) == (None, 1000)
    missing = _mcjobs(env, "budget", "show", "key_nope")
    assert missing.returncode == 1


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01"], ids=["words", "no-such-month"])
def test_reconcile_usage_refuses_a_bad_day(bad: str) -> None:
    result = _mcjobs({}, "reconcile-usage", "--day", bad)
    assert result.returncode == 2
    assert "YYYY-MM-DD" in result.stderr

"""How a pump should await its database writes: a sync driver on one writer thread, or an
async driver on the loop. ``python -m bench.writes [--rounds 200] [--rows 200]``.

Each round is what a submit pump's record step sends for a round of answers: lock the held
rows (``UPDATE … RETURNING``), one executemany ``UPDATE`` with each row's values, one insert
of the event rows, commit. Measured on a fresh PostgreSQL database (and a SQLite file), the
figures are wall time and this process's CPU time per round, medians of three runs:

- ``thread``: SQLAlchemy sync engine (psycopg / sqlite3) on a single-thread executor, awaited
  from the loop (`worker.offload`);
- ``async``: SQLAlchemy's asyncio engine (psycopg async / aiosqlite, when installed);
- ``blocking``: the sync engine called on the loop itself, for reference only (it blocks).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, create_engine, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from core import ids
from core.migrate import upgrade
from core.tables import QUEUED, Job, JobEvent, utcnow
from tests.support.services import postgres_database

JOBS = Job.__table__
EVENTS = JobEvent.__table__


def _seed(url: str, rows: int, rounds: int) -> list[list[str]]:
    """``rounds`` sets of ``rows`` queued jobs leased by ``bench``; their ids per round."""
    engine = create_engine(url)
    now = utcnow()
    batches: list[list[str]] = []
    with engine.begin() as connection:
        key = ids.new_id(ids.API_KEY)
        connection.exec_driver_sql(
            "INSERT INTO api_keys (id, name, tenant, key_prefix, key_hash, scopes, "
            "webhook_secret, created_at) VALUES "
            f"('{key}', 'b', 'b', 'p', '{key}', '[]', 's', '2026-01-01')"
        )
        for _ in range(rounds):
            batch = [ids.new_id(ids.JOB) for _ in range(rows)]
            connection.execute(
                insert(JOBS),
                [
                    {
                        "id": job_id,
                        "api_key_id": key,
                        "status": QUEUED,
                        "provider": "flux",
                        "model": "flux-2-pro",
                        "action": "generate",
                        "params": {},
                        "images": [],
                        "priority": 0,
                        "created_at": now,
                        "updated_at": now,
                        "attempts": 0,
                        "polls": 0,
                        "progress": 0,
                        "lease_owner": "bench",
                    }
                    for job_id in batch
                ],
            )
            batches.append(batch)
    engine.dispose()
    return batches


def _statements(batch: list[str]) -> list[tuple[Any, Any]]:
    now = utcnow()
    hold = (
        update(JOBS)
        .where(JOBS.c.id.in_(batch), JOBS.c.status == QUEUED, JOBS.c.lease_owner == "bench")
        .values(lease_owner="bench")
        .returning(JOBS.c.id)
    )
    move = (
        update(JOBS)
        .where(JOBS.c.id == bindparam("b_id"))
        .values(
            status="running",
            upstream_task_id=bindparam("b_task"),
            due_at=bindparam("b_due", type_=JOBS.c.due_at.type),
            lease_owner=None,
        )
    )
    moves = [
        {"b_id": job_id, "b_task": f"t-{job_id}", "b_due": now + dt.timedelta(seconds=n)}
        for n, job_id in enumerate(batch)
    ]
    events = [
        {
            "job_id": job_id,
            "at": now,
            "from_status": QUEUED,
            "to_status": "running",
            "reason": "submitted",
            "detail": {"upstream_task_id": f"t-{job_id}"},
        }
        for job_id in batch
    ]
    return [(hold, None), (move, moves), (insert(EVENTS), events)]


def _write_sync(connection_factory: Callable[[], Any], batch: list[str]) -> None:
    with connection_factory() as connection:
        assert isinstance(connection, Connection)
        for statement, params in _statements(batch):
            result = (
                connection.execute(statement, params) if params else connection.execute(statement)
            )
            if statement.is_dml and getattr(statement, "_returning", None):
                result.all()


async def _write_async(engine: Any, batch: list[str]) -> None:
    async with engine.begin() as connection:
        assert isinstance(connection, AsyncConnection)
        for statement, params in _statements(batch):
            result = await (
                connection.execute(statement, params) if params else connection.execute(statement)
            )
            if getattr(statement, "_returning", None):
                result.all()


async def _timed(
    rounds: list[list[str]], write: Callable[[list[str]], Awaitable[None]]
) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in rounds:
        await write(batch)
    count = len(rounds)
    return (
        (time.perf_counter() - wall) / count * 1000,
        (time.process_time() - cpu) / count * 1000,
    )


def measure(
    url: str, async_url: str | None, rows: int, rounds: int
) -> dict[str, tuple[float, ...]]:
    """Milliseconds (wall, CPU) per round for each way that can run on ``url``."""
    upgrade(url)
    results: dict[str, list[tuple[float, float]]] = {}
    for _ in range(3):
        batches = _seed(url, rows, rounds * 3)
        thread_rounds, async_rounds, blocking_rounds = (
            batches[:rounds],
            batches[rounds : 2 * rounds],
            batches[2 * rounds :],
        )
        engine = create_engine(url)
        executor = ThreadPoolExecutor(max_workers=1)

        async def threaded(batch: list[str], engine: Any = engine, pool: Any = executor) -> None:
            await asyncio.get_running_loop().run_in_executor(pool, _write_sync, engine.begin, batch)

        async def blocking(batch: list[str], engine: Any = engine) -> None:
            _write_sync(engine.begin, batch)

        if async_url is not None:

            async def run_async(rounds: list[list[str]] = async_rounds) -> tuple[float, float]:
                aengine = create_async_engine(async_url)
                try:
                    return await _timed(rounds, lambda batch: _write_async(aengine, batch))
                finally:
                    await aengine.dispose()

            results.setdefault("async", []).append(asyncio.run(run_async()))
        results.setdefault("thread", []).append(asyncio.run(_timed(thread_rounds, threaded)))
        results.setdefault("blocking", []).append(asyncio.run(_timed(blocking_rounds, blocking)))
        executor.shutdown()
        engine.dispose()
    return {
        name: (
            statistics.median(wall for wall, _ in runs),
            statistics.median(cpu for _, cpu in runs),
        )
        for name, runs in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with postgres_database() as url:
        report("PostgreSQL", measure(url, url, args.rows, args.rounds), args.rows)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        try:
            import aiosqlite  # noqa: F401

            async_url: str | None = url.replace("sqlite://", "sqlite+aiosqlite://")
        except ImportError:
            async_url = None
        report("SQLite", measure(url, async_url, args.rows, args.rounds), args.rows)


def report(name: str, figures: dict[str, tuple[float, ...]], rows: int) -> None:
    print(f"{name}, {rows} rows per round (ms per round, median of 3 runs):")
    for way, (wall, cpu) in figures.items():
        print(f"  {way:9s} wall {wall:7.2f}  cpu {cpu:7.2f}")


if __name__ == "__main__":
    main()

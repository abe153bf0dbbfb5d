"""Where a worker's CPU per job goes, by layer: ``python -m bench.profile_pumps [--jobs 2000]``.

Runs the submit and poll pumps in this process, the way a worker process runs them (one loop,
its database and Redis threads), against the simulator (``instant`` profile, its own process)
on a fresh PostgreSQL database and the test Redis, until every job has ended. ``yappi`` (a dev
tool, ``pip install yappi``) profiles every thread's CPU time; each function's own time is
added to the layer its module belongs to. Celery's share is not in it (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict

import redis
from sqlalchemy import func, select

from core.db import Database
from core.migrate import upgrade
from core.settings import Settings
from core.tables import QUEUED, RUNNING, Job
from metachat.client import make_http_client
from tests.support.pipeline_jobs import insert_batch, job_row, new_api_key
from tests.support.services import TEST_REDIS_URL, free_port, postgres_database
from tests.support.waiting import wait_until
from worker.context import build_pump_context
from worker.poll import run_poll_pump
from worker.submit import run_submit_pump

LAYERS = (
    (
        "HTTP client (httpx, aiohttp and their parts)",
        (
            "httpx",
            "httpx_aiohttp",
            "aiohttp",
            "yarl",
            "multidict",
            "propcache",
            "aiohappyeyeballs",
            "httpcore",
            "h11",
            "anyio",
            "sniffio",
        ),
    ),
    ("SQL (SQLAlchemy, psycopg)", ("sqlalchemy", "psycopg")),
    ("Redis client", ("redis",)),
    ("asyncio and threads", ("asyncio", "concurrent", "threading", "selectors", "queue")),
    ("JSON", ("json",)),
    ("our code (worker, core, metachat)", ("worker", "core", "metachat")),
)
MODELS = ("flux-2-pro", "z-image-turbo", "mj-v7", "doubao-seedream-4-5-251128")


def layer_of(module_path: str) -> str:
    parts = module_path.replace(os.sep, "/").split("/")
    for name, packages in LAYERS:
        if any(package in parts for package in packages):
            return name
    return "everything else (the Python runtime, other libraries)"


def _active(db: Database) -> int:
    with db.read_session() as session:
        return int(
            session.scalar(select(func.count()).where(Job.status.in_((QUEUED, RUNNING)))) or 0
        )


async def _drive(db: Database, settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    async with make_http_client(
        max_connections=settings.metachat_max_connections,
        max_keepalive_connections=settings.metachat_max_connections,
        trust_env=False,
    ) as http:
        ctx = build_pump_context(settings, http=http, db=db, redis_client=client)
        try:
            while await ctx.offload.database(_active, db):
                await run_submit_pump(ctx, window_seconds=0.5)
                await run_poll_pump(ctx, window_seconds=0.5)
        finally:
            ctx.offload.close()
            client.close()


def main() -> None:
    import yappi

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--no-profile", action="store_true", help="CPU per job only")
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest functions")
    parser.add_argument(
        "--callers", default="", help="list who calls functions with this name, and how often"
    )
    args = parser.parse_args()
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "sim", "--port", str(port), "--profile", "instant"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/open/v1"
        wait_until(lambda: _up(port), timeout=20, what="the simulator")
        with postgres_database() as url:
            upgrade(url)
            db = Database(url)
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                database_url=url,
                redis_url=TEST_REDIS_URL.rsplit("/", 1)[0] + "/14",
                metachat_base_url=base,
                metachat_api_key="bench",
                poll_time_scale=0.02,
                provider_rate_per_second={"default": 0},
                provider_max_in_flight={"default": 0},
            )
            key = new_api_key(db)
            rows = [job_row(key, model=MODELS[n % len(MODELS)]) for n in range(args.jobs)]
            insert_batch(db, key, rows)
            if not args.no_profile:
                yappi.set_clock_type("cpu")
                yappi.start(profile_threads=True)
            started, cpu = time.perf_counter(), time.process_time()
            asyncio.run(_drive(db, settings))
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            yappi.stop()
            db.dispose()
        calls = _sim_stats(port)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    by_layer: dict[str, float] = defaultdict(float)

    for stat in yappi.get_func_stats():
        by_layer[layer_of(stat.module)] += stat.tsub
    total = sum(by_layer.values())
    print(
        f"{args.jobs} jobs in {seconds:.1f} s; process CPU {1000 * cpu / args.jobs:.2f} ms/job"
        + ("" if args.no_profile else " (profiled: several times slower than unprofiled)")
    )
    print(
        f"  upstream calls per job: {calls['submit_requests'] / args.jobs:.2f} submits, "
        f"{calls['polls'] / args.jobs:.2f} polls"
    )
    if args.no_profile:
        return
    for name, value in sorted(by_layer.items(), key=lambda item: -item[1]):
        print(f"  {name:48s} {1000 * value / args.jobs:6.2f} ms/job  {value / total:6.1%}")
    if args.top:
        print(f"The {args.top} costliest functions (own time):")
        for stat in sorted(yappi.get_func_stats(), key=lambda s: -s.tsub)[: args.top]:
            where = f"{os.path.basename(stat.module)}:{stat.lineno} {stat.name}"
            print(f"  {1000 * stat.tsub / args.jobs:6.3f} ms/job  {stat.ncall:8d} calls  {where}")
    if args.callers:
        print(f"Callers of {args.callers}:")
        for stat in yappi.get_func_stats():
            for child in stat.children:
                if child.name.split(".")[-1] == args.callers:
                    where = f"{os.path.basename(stat.module)}:{stat.lineno} {stat.name}"
                    print(f"  {child.ncall:8d} calls from {where}")


def _sim_stats(port: int) -> dict[str, int]:
    import httpx

    stats = httpx.get(f"http://127.0.0.1:{port}/_sim/stats", timeout=5).json()
    return {"submit_requests": int(stats["submit_requests"]), "polls": int(stats["polls"])}


def _up(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/_sim/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()

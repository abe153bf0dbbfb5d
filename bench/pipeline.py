"""Benchmark 1: pipeline cost and throughput, ours vs the one-task-per-job reference vs raw Celery.

Each system gets a fresh PostgreSQL database, a private Redis and its own `instant` simulator.
N jobs go in through the system's HTTP API in batches; the clock runs from the first batch
request to the moment the last job is terminal in the database. CPU is the user+system time of
the orchestrator's process trees (API, worker with its pool, beat) read from the OS; the
simulator, PostgreSQL and Redis are not counted (PostgreSQL's whole-server CPU is shown apart).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psycopg
import redis
from celery import Celery
from sqlalchemy import create_engine

from bench import noop_app
from bench.procs import postgres_server_cpu_seconds, tree_cpu_seconds, trees_cpu_seconds
from bench.reference.schema import Base as RefBase
from bench.report import Goal, Section, fmt, table
from bench.specs import job_specs, reference_specs
from bench.stack import (
    SIM_API_KEY,
    Stack,
    StackError,
    create_api_key,
    fresh_postgres,
    psycopg_url,
    wait_for,
)
from bench.stats import median, ratio
from tests.support.services import free_port

TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
# The `instant` simulator finishes at once: poll at a hundredth of the usual schedule.
POLL_TIME_SCALE = "0.01"
UNLIMITED_PROVIDERS = {
    "PROVIDER_RATE_PER_SECOND": '{"default": 100000}',
    "PROVIDER_MAX_IN_FLIGHT": '{"default": 100000}',
}
WARMUP_JOBS = 30
# the flags `mcjobs worker` runs with, so every worker pays the same cluster chatter (none)
QUIET_WORKER = (
    "--loglevel",
    "WARNING",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
)


@dataclass(frozen=True)
class Throughput:
    """One system moving N jobs."""

    jobs: int
    seconds: float
    cpu_seconds: float
    pg_cpu_seconds: float
    succeeded: int
    cpu_by_service: dict[str, float]

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_ms_per_job(self) -> float:
        return 1000 * self.cpu_seconds / self.jobs


def count_where(database_url: str, sql: str, params: tuple[object, ...] = ()) -> int:
    with psycopg.connect(psycopg_url(database_url)) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def wait_terminal(
    stack: Stack,
    *,
    count_sql: str,
    expected: int,
    timeout: float,
    watch: tuple[str, ...],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Wait until ``count_sql`` counts ``expected`` rows, failing fast if a service exits."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(psycopg_url(stack.database_url), autocommit=True) as conn:
        while True:
            row = conn.execute(count_sql).fetchone()
            done = int(row[0]) if row else 0
            if progress is not None:
                progress(done)
            if done >= expected:
                return
            stack.check_alive(*watch)
            if time.monotonic() > deadline:
                raise StackError(f"only {done}/{expected} jobs terminal after {timeout:.0f}s")
            time.sleep(0.2)


def post_batches(
    client: httpx.Client, path: str, specs: list[dict[str, object]], batch_size: int
) -> None:
    for start in range(0, len(specs), batch_size):
        response = client.post(path, json={"jobs": specs[start : start + batch_size]})
        if response.status_code != 202:
            raise StackError(f"POST {path} answered {response.status_code}: {response.text[:300]}")


def ours_env(sim_url: str) -> dict[str, str]:
    return {
        "METACHAT_BASE_URL": sim_url,
        "METACHAT_API_KEY": SIM_API_KEY,
        "POLL_TIME_SCALE": POLL_TIME_SCALE,
        # the reference only records upstream URLs: copying the files is measured on its own
        # (the archive section), not inside this comparison
        "ARCHIVE_ENABLED": "false",
        **UNLIMITED_PROVIDERS,
    }


def run_ours(
    n: int, *, batch_size: int, progress: Callable[[int], None] | None = None
) -> Throughput:
    """API → worker (2 processes) → `instant` simulator → terminal, on PostgreSQL + Redis."""
    with fresh_postgres() as url, Stack(database_url=url) as stack:
        env = ours_env(stack.start_sim(profile="instant"))
        api_key, _ = create_api_key(stack)
        base = stack.start_api(env)
        stack.start_worker(env, concurrency=2)
        stack.start_beat(env)
        roots = ("api", "worker", "beat")
        count_sql = f"SELECT count(*) FROM jobs WHERE status IN {TERMINAL!r}"
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            warm = job_specs(WARMUP_JOBS, tag="warm-up")
            post_batches(client, "/v1/batches", warm, batch_size)
            wait_terminal(
                stack, count_sql=count_sql, expected=WARMUP_JOBS, timeout=120, watch=roots
            )
            specs = job_specs(n, tag="ours")
            return _measure(
                stack,
                roots,
                lambda: post_batches(client, "/v1/batches", specs, batch_size),
                count_sql=count_sql,
                expected=WARMUP_JOBS + n,
                n=n,
                succeeded_sql="SELECT count(*) FROM jobs WHERE status = 'succeeded'",
                progress=None if progress is None else lambda done: progress(done - WARMUP_JOBS),
            )


def run_reference(
    n: int, *, batch_size: int, progress: Callable[[int], None] | None = None
) -> Throughput:
    """The same N jobs through `bench.reference`: one Celery task per job, countdown polling."""
    with fresh_postgres(migrate=False) as url, Stack(database_url=url) as stack:
        engine = create_engine(url)
        RefBase.metadata.create_all(engine)
        engine.dispose()
        sim_url = stack.start_sim(profile="instant")
        env = {
            "REF_DATABASE_URL": url,
            "REF_BROKER_URL": stack.redis,
            "REF_METACHAT_BASE_URL": sim_url,
            "REF_METACHAT_API_KEY": SIM_API_KEY,
        }
        port = free_port()
        stack.add(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.reference.api:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            port=port,
        )
        stack.wait_http("api", "/healthz")
        stack.add(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.reference.tasks",
                "worker",
                "-P",
                "prefork",
                "-c",
                "2",
                "-Q",
                "ref",
                *QUIET_WORKER,
            ],
            env=env,
        )
        roots = ("api", "worker")
        count_sql = "SELECT count(*) FROM ref_jobs WHERE status IN ('succeeded', 'failed')"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            post_batches(
                client, "/jobs/bulk", reference_specs(WARMUP_JOBS, tag="warm-up"), batch_size
            )
            wait_terminal(
                stack, count_sql=count_sql, expected=WARMUP_JOBS, timeout=120, watch=roots
            )
            specs = reference_specs(n, tag="reference")
            return _measure(
                stack,
                roots,
                lambda: post_batches(client, "/jobs/bulk", specs, batch_size),
                count_sql=count_sql,
                expected=WARMUP_JOBS + n,
                n=n,
                succeeded_sql="SELECT count(*) FROM ref_jobs WHERE status = 'succeeded'",
                progress=None if progress is None else lambda done: progress(done - WARMUP_JOBS),
            )


def _measure(
    stack: Stack,
    roots: tuple[str, ...],
    submit: Callable[[], None],
    *,
    count_sql: str,
    expected: int,
    n: int,
    succeeded_sql: str,
    progress: Callable[[int], None] | None,
) -> Throughput:
    pids = {name: stack.services[name].pid for name in roots}
    before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    pg0, t0 = postgres_server_cpu_seconds(), time.perf_counter()
    submit()
    wait_terminal(
        stack,
        count_sql=count_sql,
        expected=expected,
        timeout=max(300.0, n / 5),
        watch=roots,
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    by_service = {name: tree_cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    pg = postgres_server_cpu_seconds() - pg0
    succeeded = count_where(stack.database_url, succeeded_sql) - WARMUP_JOBS
    return Throughput(n, seconds, sum(by_service.values()), pg, succeeded, by_service)


@dataclass(frozen=True)
class NoopRate:
    tasks: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.tasks / self.seconds


def run_noop(tasks: int) -> NoopRate:
    """Celery no-op tasks per second on the same broker, prefork with 2 processes.

    The queue is filled while the worker's consumer is cancelled, then the consumer is added
    back and the clock runs until the queue and the unacked set are empty.
    """
    with Stack(database_url="") as stack:
        env = {"REF_BROKER_URL": stack.redis}
        stack.add(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.noop_app",
                "worker",
                "-P",
                "prefork",
                "-c",
                "2",
                "-Q",
                noop_app.QUEUE,
                *QUIET_WORKER,
            ],
            env=env,
        )
        # a fresh app per run: a module-level one keeps pooled connections to the last Redis
        app = Celery("bench-noop-sender", broker=stack.redis, set_as_current=False)
        client = redis.Redis.from_url(stack.redis)
        try:

            def drained() -> bool:
                return client.llen(noop_app.QUEUE) == 0 and client.hlen("unacked") == 0

            _send_noops(app, 100)
            wait_for(drained, timeout=60, what="the no-op warm-up")
            replies = app.control.cancel_consumer(noop_app.QUEUE, reply=True, timeout=5)
            if not replies:
                raise StackError("the no-op worker did not answer cancel_consumer")
            _send_noops(app, tasks)
            pid = stack.services["worker"].pid
            cpu0, t0 = trees_cpu_seconds([pid]), time.perf_counter()
            app.control.add_consumer(noop_app.QUEUE, reply=True, timeout=5)
            wait_for(drained, timeout=300, what="the no-op queue to drain", interval=0.005)
            seconds = time.perf_counter() - t0
            return NoopRate(tasks, seconds, trees_cpu_seconds([pid]) - cpu0)
        finally:
            client.close()
            app.close()


def _send_noops(app: Celery, count: int) -> None:
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task("bench.noop", queue=noop_app.QUEUE, producer=producer, ignore_result=True)


@dataclass
class PipelineResults:
    ours: list[Throughput]
    reference: list[Throughput]
    noop: list[NoopRate]


def pipeline_section(results: PipelineResults, *, n: int, batch_size: int) -> Section:
    def med(values: list[float]) -> float:
        return median(values)

    ours_rate = med([r.jobs_per_second for r in results.ours])
    ref_rate = med([r.jobs_per_second for r in results.reference])
    ours_cpu = med([r.cpu_ms_per_job for r in results.ours])
    ref_cpu = med([r.cpu_ms_per_job for r in results.reference])
    noop_rate = med([r.per_second for r in results.noop])
    noop_cpu = med([1000 * r.cpu_seconds / r.tasks for r in results.noop])
    ours_pg = med([1000 * r.pg_cpu_seconds / r.jobs for r in results.ours])
    ref_pg = med([1000 * r.pg_cpu_seconds / r.jobs for r in results.reference])
    rows = [
        [
            "ours (`mcjobs api` + `worker -c 2` + `beat`)",
            fmt(ours_rate),
            fmt(ours_cpu),
            fmt(ours_pg),
            f"{med([r.succeeded / r.jobs for r in results.ours]):.1%}",
            "—",
        ],
        [
            "reference (one Celery task per job, countdown polls)",
            fmt(ref_rate),
            fmt(ref_cpu),
            fmt(ref_pg),
            f"{med([r.succeeded / r.jobs for r in results.reference]):.1%}",
            f"{fmt(ratio(ours_rate, ref_rate))} / {fmt(ratio(ours_cpu, ref_cpu))}",
        ],
        [
            "raw Celery no-op tasks (prefork, 2 processes)",
            f"{fmt(noop_rate)} tasks/s",
            f"{fmt(noop_cpu, 3)} per task",
            "—",
            "—",
            "—",
        ],
    ]
    runs = len(results.ours)
    breakdown = table(
        ["system", "process tree", "CPU ms/job (median)"],
        [
            [system, name, fmt(med([1000 * r.cpu_by_service[name] / r.jobs for r in runs_]))]
            for system, runs_ in (("ours", results.ours), ("reference", results.reference))
            for name in runs_[0].cpu_by_service
        ],
    )
    body = "\n".join(
        [
            f"{n:,} image jobs (a mix of Midjourney, FLUX, Z-Image, Seedream and Grok models) "
            f"submitted in batches of {batch_size:,} through each system's HTTP API, to the "
            "`instant` simulator, on a fresh PostgreSQL database and a private Redis each; "
            f"medians of {runs} run(s), the systems interleaved in every round. The clock runs "
            "from the first batch request until the last job is terminal in the database. "
            "*CPU* is user+system time of the orchestrator's process trees (API, worker and its "
            "pool, beat), read with psutil; the simulator, PostgreSQL and Redis are excluded. "
            "*PostgreSQL CPU* is the whole local server's, for information (the machine is "
            "shared). Ours runs with `POLL_TIME_SCALE="
            f"{POLL_TIME_SCALE}` (the simulator answers at once) and no provider rate limit; the "
            "reference polls first after 0.25 s, then x1.5. The reference is `bench/reference/`: "
            "a FastAPI route inserts the rows and `delay()`s one task per job, which submits with "
            "a keep-alive sync httpx client and re-schedules itself with `countdown` to poll, one "
            "SQLAlchemy transaction per step.",
            "",
            table(
                [
                    "system",
                    "jobs/s",
                    "orchestrator CPU ms/job",
                    "PostgreSQL CPU ms/job",
                    "succeeded",
                    "ours ÷ this (jobs/s / CPU)",
                ],
                rows,
            ),
            "",
            "Where the orchestrator's CPU goes:",
            "",
            breakdown,
        ]
    )
    goals = [
        Goal(
            "CPU per job, ours ÷ reference",
            f"{ratio(ours_cpu, ref_cpu):.2f}",
            "≤ 1/6 (0.17)",
            ratio(ours_cpu, ref_cpu) <= 1 / 6,
        ),
        Goal(
            "jobs/s, ours ÷ reference",
            f"{ratio(ours_rate, ref_rate):.2f}",
            "≥ 2",
            ratio(ours_rate, ref_rate) >= 2,
        ),
    ]
    return Section("pipeline", "Pipeline cost and throughput", body, goals)

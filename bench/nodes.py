"""Benchmark: scaling out. 1, 2 and 3 worker nodes (``mcjobs worker --concurrency 1`` each,
the shape of ``docker compose up --scale worker=N``) on Redis and on RabbitMQ, side by side in
one run, with PgBouncer (transaction pooling) in front of PostgreSQL.

Besides jobs/s and CPU per job by process, each run counts what one job costs the services the
capacity model in docs/scaling.md projects from: SQL statements and transactions (PgBouncer's
``SHOW STATS``), rows (``pg_stat_database`` of the run's own database), WAL bytes (the server's
WAL position, so an upper bound: the server is shared), Redis commands (the private Redis), broker
messages and upstream requests (the simulator's counters).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
import psutil
import psycopg
import redis

from bench.pipeline import UNLIMITED_PROVIDERS, WARMUP_JOBS, post_batches, wait_terminal
from bench.procs import postgres_server_cpu_seconds, tree_cpu_seconds
from bench.report import Section, fmt, table
from bench.specs import job_specs
from bench.stack import MCJOBS, SIM_API_KEY, Stack, fresh_postgres, psycopg_url
from bench.stats import median
from core.db import Database
from core.keys import create_api_key
from tests.support.nodes import pgbouncer_server, rabbitmq_vhost

BROKERS = ("redis", "rabbitmq")
TERMINAL_SQL = (
    "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled', 'timed_out')"
)
ROW_COUNTERS = ("tup_inserted", "tup_updated", "tup_deleted", "tup_fetched", "xact_commit")


@dataclass(frozen=True)
class NodesRun:
    """One broker with N worker nodes moving ``jobs`` jobs."""

    broker: str
    workers: int
    jobs: int
    seconds: float
    succeeded: int
    cpu: dict[str, float]  # process tree → CPU seconds (api, workers, beat, pgbouncer, redis)
    pg_cpu: float  # the whole local PostgreSQL server
    rabbitmq_cpu: float  # the whole local RabbitMQ server (0 on Redis runs)
    statements: int
    transactions: int
    rows: dict[str, int]
    wal_bytes: int
    redis_commands: int
    broker_messages: int  # publishes (Redis runs: LPUSH on the private Redis)
    upstream_requests: int
    load_before: float
    load_after: float

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def orchestrator_cpu(self) -> float:
        return sum(self.cpu[name] for name in ("api", "workers", "beat"))

    def per_job(self, value: float) -> float:
        return value / self.jobs


def _rabbitmq_cpu_seconds() -> float:
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "beam.smp" and "rabbit" in " ".join(proc.info["cmdline"]):
                total += tree_cpu_seconds(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _pg_counters(database_url: str) -> dict[str, int]:
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            f"SELECT {', '.join(ROW_COUNTERS)}, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint "
            "FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return {**dict(zip(ROW_COUNTERS, map(int, row[:-1]), strict=True)), "wal": int(row[-1])}


def _redis_counters(url: str) -> tuple[int, int]:
    client = redis.Redis.from_url(url)
    try:
        total = int(client.info("stats")["total_commands_processed"])
        lpush = int(client.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))
    finally:
        client.close()
    return total, lpush


def _sim_requests(sim_url: str) -> int:
    root = sim_url.split("/open/", 1)[0]
    return int(httpx.get(f"{root}/_sim/stats", timeout=10).json()["requests"])


def _new_api_key(database_url: str) -> str:
    db = Database(database_url)
    try:
        with db.session() as session:
            return create_api_key(session, name="bench-nodes", admin=True).api_key
    finally:
        db.dispose()


@contextmanager
def _broker(name: str, stack: Stack) -> Iterator[str]:
    if name == "redis":
        yield ""
        return
    with rabbitmq_vhost() as url:
        yield url


def run_nodes(broker: str, workers: int, jobs: int, *, batch_size: int = 500) -> NodesRun:
    with ExitStack() as exits:
        direct = exits.enter_context(fresh_postgres())
        bouncer = exits.enter_context(pgbouncer_server(direct, pool_size=4 * workers + 4))
        # the harness reads the database directly; the services go through PgBouncer
        stack = exits.enter_context(Stack(database_url=direct))
        broker_url = exits.enter_context(_broker(broker, stack))
        sim_url = stack.start_sim(profile="instant")
        env = {
            "METACHAT_BASE_URL": sim_url,
            "METACHAT_API_KEY": SIM_API_KEY,
            "POLL_TIME_SCALE": "0.01",
            "DATABASE_URL": bouncer.url,
            "DB_PREPARED_STATEMENTS": "false",
            "BROKER_URL": broker_url,
            **UNLIMITED_PROVIDERS,
        }
        api_key = _new_api_key(direct)
        base = stack.start_api(env)
        names = [f"node-{n}" for n in range(1, workers + 1)]
        for name in names:
            argv = [*MCJOBS, "worker", "--concurrency", "1", "--loglevel", "WARNING"]
            stack.add(name, [*argv, "--hostname", f"bench-{name}@%h"], env=env)
        stack.start_beat(env)
        roots = ("api", *names, "beat")
        redis_pid = (
            stack.redis_server.process.pid
            if stack.redis_server and stack.redis_server.process
            else 0
        )
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            post_batches(client, "/v1/batches", job_specs(WARMUP_JOBS, tag="warm-up"), batch_size)
            wait_terminal(
                stack, count_sql=TERMINAL_SQL, expected=WARMUP_JOBS, timeout=120, watch=roots
            )
            specs = job_specs(jobs, tag=f"nodes-{broker}-{workers}")

            def cpu_now() -> dict[str, float]:
                return {
                    "api": tree_cpu_seconds(stack.services["api"].pid),
                    "workers": sum(tree_cpu_seconds(stack.services[n].pid) for n in names),
                    "beat": tree_cpu_seconds(stack.services["beat"].pid),
                    "pgbouncer": tree_cpu_seconds(bouncer.pid),
                    "redis": tree_cpu_seconds(redis_pid) if redis_pid else 0.0,
                }

            load0 = os.getloadavg()[0]
            cpu0, pg0, mq0 = cpu_now(), postgres_server_cpu_seconds(), _rabbitmq_cpu_seconds()
            rows0, bouncer0 = _pg_counters(direct), bouncer.stats()
            redis0, sim0 = _redis_counters(stack.redis), _sim_requests(sim_url)
            t0 = time.perf_counter()
            post_batches(client, "/v1/batches", specs, batch_size)
            wait_terminal(
                stack,
                count_sql=TERMINAL_SQL,
                expected=WARMUP_JOBS + jobs,
                timeout=max(300.0, jobs / 5),
                watch=roots,
            )
            seconds = time.perf_counter() - t0
            cpu1, pg1, mq1 = cpu_now(), postgres_server_cpu_seconds(), _rabbitmq_cpu_seconds()
            load1 = os.getloadavg()[0]
            redis1, sim1 = _redis_counters(stack.redis), _sim_requests(sim_url)
            bouncer1 = bouncer.stats()
            # cumulative statistics reach pg_stat_database within a second of a backend's commit
            time.sleep(1.5)
            rows1 = _pg_counters(direct)
        with psycopg.connect(psycopg_url(direct)) as conn:
            row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'succeeded'").fetchone()
        return NodesRun(
            broker=broker,
            workers=workers,
            jobs=jobs,
            seconds=seconds,
            succeeded=(int(row[0]) if row else 0) - WARMUP_JOBS,
            cpu={name: cpu1[name] - cpu0[name] for name in cpu0},
            pg_cpu=pg1 - pg0,
            rabbitmq_cpu=mq1 - mq0 if broker == "rabbitmq" else 0.0,
            statements=bouncer1.get("total_query_count", 0) - bouncer0.get("total_query_count", 0),
            transactions=bouncer1.get("total_xact_count", 0) - bouncer0.get("total_xact_count", 0),
            rows={k: rows1[k] - rows0[k] for k in ROW_COUNTERS},
            wal_bytes=rows1["wal"] - rows0["wal"],
            redis_commands=redis1[0] - redis0[0],
            broker_messages=redis1[1] - redis0[1] if broker == "redis" else -1,
            upstream_requests=sim1 - sim0,
            load_before=load0,
            load_after=load1,
        )


def run_all(
    jobs: int, rounds: int, progress: Callable[[str], None] | None = None
) -> list[NodesRun]:
    """Every (workers, broker) pair once per round, interleaved so load drifts hit all alike."""
    runs: list[NodesRun] = []
    for round_ in range(rounds):
        for workers in (1, 2, 3):
            for broker in BROKERS:
                run = run_nodes(broker, workers, jobs)
                runs.append(run)
                if progress is not None:
                    progress(
                        f"round {round_ + 1}/{rounds} {broker} x{workers}: "
                        f"{run.jobs_per_second:.1f} jobs/s, "
                        f"{1000 * run.per_job(run.orchestrator_cpu):.2f} CPU ms/job, "
                        f"load {run.load_before:.2f}→{run.load_after:.2f}"
                    )
    return runs


def _med(runs: list[NodesRun], value: Callable[[NodesRun], float]) -> float:
    return median([value(r) for r in runs])


def nodes_section(runs: list[NodesRun], *, jobs: int) -> Section:
    groups: dict[tuple[str, int], list[NodesRun]] = {}
    for run in runs:
        groups.setdefault((run.broker, run.workers), []).append(run)
    rounds = max(len(g) for g in groups.values())
    speed_rows = []
    for workers in (1, 2, 3):
        for broker in BROKERS:
            g = groups.get((broker, workers), [])
            if not g:
                continue
            speed_rows.append(
                [
                    broker,
                    str(workers),
                    fmt(_med(g, lambda r: r.jobs_per_second), 1),
                    fmt(_med(g, lambda r: 1000 * r.per_job(r.orchestrator_cpu))),
                    fmt(_med(g, lambda r: 1000 * r.per_job(r.cpu["workers"]))),
                    fmt(_med(g, lambda r: 1000 * r.per_job(r.cpu["api"]))),
                    fmt(_med(g, lambda r: 1000 * r.per_job(r.cpu["beat"]))),
                    fmt(_med(g, lambda r: 1000 * r.per_job(r.cpu["pgbouncer"]))),
                    fmt(_med(g, lambda r: 1000 * r.per_job(r.cpu["redis"]))),
                    fmt(_med(g, lambda r: 1000 * r.per_job(r.rabbitmq_cpu)))
                    if broker == "rabbitmq"
                    else "—",
                    fmt(_med(g, lambda r: 1000 * r.per_job(r.pg_cpu))),
                    " / ".join(f"{r.load_before:.1f}→{r.load_after:.1f}" for r in g),
                ]
            )
    cost_rows = []
    for workers in (1, 2, 3):
        for broker in BROKERS:
            g = groups.get((broker, workers), [])
            if not g:
                continue
            cost_rows.append(
                [
                    broker,
                    str(workers),
                    fmt(_med(g, lambda r: r.per_job(r.statements))),
                    fmt(_med(g, lambda r: r.per_job(r.transactions))),
                    fmt(_med(g, lambda r: r.per_job(r.rows["tup_inserted"]))),
                    fmt(_med(g, lambda r: r.per_job(r.rows["tup_updated"]))),
                    fmt(_med(g, lambda r: r.per_job(r.rows["tup_fetched"]))),
                    fmt(_med(g, lambda r: r.per_job(r.wal_bytes)), 0),
                    fmt(_med(g, lambda r: r.per_job(r.redis_commands))),
                    fmt(_med(g, lambda r: r.per_job(r.broker_messages)), 3)
                    if broker == "redis"
                    else "same ticks",
                    fmt(_med(g, lambda r: r.per_job(r.upstream_requests))),
                    f"{_med(g, lambda r: r.succeeded / r.jobs):.1%}",
                ]
            )
    body = "\n".join(
        [
            f"{jobs:,} image jobs per run through one `mcjobs api`, N worker nodes "
            "(`mcjobs worker --concurrency 1 --hostname …` each) and one `mcjobs beat`, on "
            "Redis (`BROKER_URL` unset: Redis carries ticks and the limiter) and on RabbitMQ "
            "(`BROKER_URL=amqp://…`, a fresh vhost; Redis keeps the limiter only), with a "
            "private PgBouncer in transaction pooling mode in front of a fresh PostgreSQL "
            "database (`DB_PREPARED_STATEMENTS=false`), the `instant` simulator, "
            "`POLL_TIME_SCALE=0.01` and no provider rate limit. Every pair runs once per "
            f"round, interleaved; medians of {rounds} round(s). The clock runs from the first "
            "batch request to the last job terminal. *load* is the 1-minute load average "
            "before→after each run (the machine is shared; 2 CPUs). CPU is user+system of each "
            "process tree; PostgreSQL's and RabbitMQ's are the whole local servers' (shared "
            "with other users of the machine), the private Redis's and PgBouncer's are this "
            "run's alone.",
            "",
            table(
                [
                    "broker",
                    "worker nodes",
                    "jobs/s",
                    "orchestrator CPU ms/job",
                    "workers",
                    "api",
                    "beat",
                    "PgBouncer",
                    "Redis",
                    "RabbitMQ",
                    "PostgreSQL",
                    "load before→after",
                ],
                speed_rows,
            ),
            "",
            "What one job costs the services (per job, medians): *round trips* and "
            "*transactions* as PgBouncer counted them (its query count: each transaction's "
            "pool pre-ping `SELECT 1` counts, and an executemany, which psycopg sends as one "
            "pipeline, counts once); rows from `pg_stat_database` of the run's database "
            "(*fetched* counts rows read through indexes); WAL bytes are the server's WAL "
            "position moved during the run, an upper bound (other databases on the server "
            "write too); Redis commands on the private Redis (broker traffic included on Redis "
            "runs); broker messages are LPUSHes of tick messages on Redis runs (RabbitMQ runs "
            "send the same ticks: one per pump per beat interval plus a nudge per batch); "
            "upstream requests are the simulator's count.",
            "",
            table(
                [
                    "broker",
                    "worker nodes",
                    "round trips",
                    "transactions",
                    "rows inserted",
                    "rows updated",
                    "rows fetched",
                    "WAL bytes",
                    "Redis commands",
                    "broker messages",
                    "upstream requests",
                    "succeeded",
                ],
                cost_rows,
            ),
        ]
    )
    return Section("nodes", "Scaling out: worker nodes on Redis and RabbitMQ", body)

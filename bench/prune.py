"""Retention under a backlog: how fast old rows leave, and what the pumps' claims feel meanwhile.

A fresh PostgreSQL database gets a backlog of old rows: settled terminal jobs that finished
over the ten days before the retention cutoff, three `job_events` rows each (in their day
partitions), one succeeded webhook delivery each and one attempt each, six rows per job. Beside
them live rows that must stay: recent finished jobs, and queued and running jobs due for the
submit and poll claims. Then `core.retention.prune_within` runs pass after pass (the budget
per pass is ``PRUNE_BUDGET_SECONDS``) until nothing old is left, while a thread runs the
pumps' claim statements (`claims.submit_candidates` + `claims.lease_jobs` for submits,
`claims.claim_due` for polls) in a loop in a process of its own, each claim in a transaction
that is rolled back, so the same rows stay claimable. The claim's wall time is recorded before
and during pruning.

Used by `bench.run` (section ``prune``) and by tests/integration/pipeline/test_prune_backlog.py.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.report import Goal, Section, cpu_model, fmt, prose, table
from core import claims, partitions
from core.db import Database
from core.keys import create_api_key
from core.retention import prune_within
from core.settings import Settings
from core.tables import QUEUED, RUNNING

ROWS_PER_JOB = 6  # the job, three events, a delivery, an attempt
OLD_DAYS = 10
LIVE_RECENT = 1000
LIVE_DUE = 2000
TABLES = ("jobs", "job_events", "webhook_deliveries", "webhook_attempts")
# Every old job holds HELD points; one in UNSETTLED_EVERY learnt a higher cost not yet settled,
# which pruning must fold into the key's total before deleting the job.
HELD = 5
UNSETTLED_EVERY = 100
UNSETTLED_COST = 8


@dataclass
class PruneFigures:
    """What one backlog run measured."""

    backlog_rows: dict[str, int]
    left_rows: dict[str, int]
    seconds: float
    passes: int
    partitions_dropped: int
    claims_before: list[float] = field(default_factory=list)
    claims_during: list[float] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)  # one-minute load average at the start and the end
    committed: tuple[int, int] = (0, 0)  # the key's points_committed before and after

    @property
    def deleted(self) -> int:
        return sum(self.backlog_rows.values()) - sum(self.left_rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.deleted / self.seconds if self.seconds > 0 else 0.0


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def counts(db: Database) -> dict[str, int]:
    with db.read_session() as session:
        return {
            table: int(session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
            for table in TABLES
        }


def seed_backlog(db: Database, *, jobs: int, now: dt.datetime, retention_days: float) -> str:
    """Insert `jobs` old settled jobs with their rows, and the live rows; returns the key id."""
    with db.session() as session:
        key_id = create_api_key(session, name="prune-bench").id
    cutoff_day = (now - dt.timedelta(days=retention_days)).date()
    first_day = cutoff_day - dt.timedelta(days=OLD_DAYS)
    with db.read_session() as session:
        existing = {p.name for p in partitions.day_partitions(session)}
    for offset in range(OLD_DAYS):
        partition = partitions.day_partition(first_day + dt.timedelta(days=offset))
        if partition.name not in existing:
            with db.session() as session:
                partitions.create_partition(session, partition)
    start = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
    with db.session() as session:
        _seed_jobs(session, key_id=key_id, jobs=jobs, start=start)
        _seed_live(session, key_id=key_id, now=now)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in TABLES:
            connection.execute(text(f"VACUUM ANALYZE {table}"))
    return key_id


def _seed_jobs(session: Session, *, key_id: str, jobs: int, start: dt.datetime) -> None:
    # finished_at: spread over OLD_DAYS days, never in a day's first minutes (events come first)
    session.execute(
        text(
            "CREATE TEMPORARY TABLE old_jobs ON COMMIT DROP AS SELECT g, "
            "'jold' || g AS job_id, 'dold' || g AS delivery_id, "
            ":start + (g % :days) * interval '1 day' "
            "+ (300 + (g / :days) % 80000) * interval '1 second' AS fin "
            "FROM generate_series(1, :jobs) g"
        ),
        {"start": start, "days": OLD_DAYS, "jobs": jobs},
    )
    session.execute(
        text(
            "INSERT INTO jobs (id, api_key_id, status, provider, model, action, prompt, params, "
            "images, priority, created_at, updated_at, attempts, polls, progress, cost_points, "
            "points_held, points_held_on, submitted_at, finished_at, upstream_task_id) "
            "SELECT job_id, :key, 'succeeded', 'bench', 'bench-model', 'generate', 'a prompt', "
            "'{}', '[]', 0, fin - interval '2 minutes', fin, 1, 3, 100, "
            f"CASE WHEN g % {UNSETTLED_EVERY} = 0 THEN {UNSETTLED_COST} ELSE {HELD} END, "
            f"{HELD}, (fin AT TIME ZONE 'UTC')::date, fin - interval '1 minute', fin, "
            "'task-' || g FROM old_jobs"
        ),
        {"key": key_id},
    )
    # the key's running total holds what its jobs hold, as claims would have left it
    session.execute(
        text("UPDATE api_keys SET points_committed = :held WHERE id = :key"),
        {"held": HELD * jobs, "key": key_id},
    )
    session.execute(
        text(
            "INSERT INTO job_events (job_id, at, from_status, to_status, reason) "
            "SELECT job_id, fin - step * interval '1 minute', "
            "(ARRAY[NULL, 'queued', 'running'])[3 - step], "
            "(ARRAY['queued', 'running', 'succeeded'])[3 - step], 'bench' "
            "FROM old_jobs, generate_series(0, 2) step"
        )
    )
    session.execute(
        text(
            "INSERT INTO webhook_deliveries (id, api_key_id, job_id, event_type, url, payload, "
            "state, attempts, created_at, updated_at, delivered_at, last_status_code) "
            "SELECT delivery_id, :key, job_id, 'job.succeeded', 'https://example.test/hook', "
            "'{}', 'succeeded', 1, fin, fin, fin, 200 FROM old_jobs"
        ),
        {"key": key_id},
    )
    session.execute(
        text(
            "INSERT INTO webhook_attempts (delivery_id, at, status_code, latency_ms, succeeded) "
            "SELECT delivery_id, fin, 200, 12.5, true FROM old_jobs"
        )
    )


def _seed_live(session: Session, *, key_id: str, now: dt.datetime) -> None:
    rows = [
        ("jrecent", "succeeded", LIVE_RECENT, "now() - interval '1 hour'", "NULL"),
        ("jqueued", QUEUED, LIVE_DUE, "NULL", "NULL"),
        ("jrunning", RUNNING, LIVE_DUE, "NULL", "'task-live-' || g"),
    ]
    for prefix, status, count, finished, task in rows:
        session.execute(
            text(
                "INSERT INTO jobs (id, api_key_id, status, provider, model, action, prompt, "
                "params, images, priority, created_at, updated_at, due_at, attempts, polls, "
                "progress, points_held, finished_at, upstream_task_id) "
                f"SELECT '{prefix}' || g, :key, '{status}', 'bench', 'bench-model', 'generate', "
                "'a prompt', '{}', '[]', 0, :now - interval '1 hour', :now, "
                f"CASE WHEN '{status}' IN ('queued', 'running') THEN :now - interval '1 second' "
                f"END, 0, 0, 0, 0, {finished}, {task} FROM generate_series(1, :count) g"
            ),
            {"key": key_id, "now": now, "count": count},
        )
        session.execute(
            text(
                "INSERT INTO job_events (job_id, at, to_status, reason) "
                f"SELECT '{prefix}' || g, :now - interval '1 hour', 'queued', 'bench' "
                "FROM generate_series(1, :count) g"
            ),
            {"now": now, "count": count},
        )


def claim_once(db: Database, *, now: dt.datetime) -> float:
    """The pumps' claim statements once, rolled back; returns the wall seconds taken."""
    started = time.perf_counter()
    with Session(db.engine) as session:
        candidates = claims.submit_candidates(session, now=now, limit=200)
        claims.lease_jobs(
            session,
            [row.id for row in candidates],
            status=QUEUED,
            owner="bench",
            now=now,
            until=now + dt.timedelta(seconds=60),
        )
        claims.claim_due(
            session,
            status=RUNNING,
            owner="bench",
            now=now,
            until=now + dt.timedelta(seconds=60),
            limit=500,
        )
        session.rollback()
    return time.perf_counter() - started


def _claim_loop(url: str, now: dt.datetime, stop: Any, out: Any) -> None:
    """In a process of its own: claim until told to stop, then send (start, seconds) pairs."""
    db = Database(url, pool_size=1)
    times: list[tuple[float, float]] = []
    try:
        while not stop.is_set():
            times.append((time.time(), claim_once(db, now=now)))
    finally:
        db.dispose()
        out.send(times)
        out.close()


class ClaimLoop:
    """The claims in a loop in a process of their own (as the pumps are), timed one by one."""

    def __init__(self, url: str, *, now: dt.datetime) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_claim_loop, args=(url, now, self._stop, send), daemon=True
        )
        self.times: list[tuple[float, float]] = []

    def __enter__(self) -> ClaimLoop:
        self._process.start()
        return self

    def stop(self) -> list[tuple[float, float]]:
        """Stop the loop; (wall-clock start, seconds) of every claim it made."""
        self._stop.set()
        if self._receive.poll(120):
            self.times = self._receive.recv()
        self._process.join(timeout=30)
        return self.times

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            self._stop.set()
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()


def run_backlog(
    url: str,
    *,
    rows: int,
    settings: Settings,
    baseline_seconds: float = 3.0,
    timeout: float = 1800.0,
    progress: Callable[[str], None] | None = None,
) -> PruneFigures:
    """Seed a backlog of about `rows` rows at `url` (a migrated, empty PostgreSQL database),
    then prune it pass after pass with the claim loop running."""
    say = progress or (lambda _message: None)
    load_before = os.getloadavg()[0]
    db = Database(url)
    now = dt.datetime.now(dt.UTC)
    try:
        key_id = seed_backlog(
            db, jobs=rows // ROWS_PER_JOB, now=now, retention_days=settings.retention_days
        )
        backlog = counts(db)
        committed_before = _committed(db, key_id)
        say(f"backlog seeded: {backlog}")
        with ClaimLoop(url, now=now) as loop:
            # the loop's first seconds are the baseline; it goes on while pruning runs
            time.sleep(baseline_seconds)
            started_at, started = time.time(), time.monotonic()
            passes = dropped = 0
            while True:
                report = prune_within(db, settings, now=now)
                passes += 1
                dropped += report.partitions_dropped
                if not report.more or time.monotonic() - started > timeout:
                    break
            seconds = time.monotonic() - started
            ended_at = time.time()
            timed = loop.stop()
        claims_before = [took for at, took in timed if at + took < started_at]
        claims_during = [took for at, took in timed if started_at <= at and at + took <= ended_at]
        left = counts(db)
        committed_after = _committed(db, key_id)
        say(f"pruned in {seconds:.1f} s over {passes} passes; left {left}")
    finally:
        db.dispose()
    return PruneFigures(
        backlog_rows=backlog,
        left_rows=left,
        seconds=seconds,
        passes=passes,
        partitions_dropped=dropped,
        claims_before=claims_before,
        claims_during=claims_during,
        load=(load_before, os.getloadavg()[0]),
        committed=(committed_before, committed_after),
    )


def _committed(db: Database, key_id: str) -> int:
    with db.read_session() as session:
        return int(
            session.scalar(
                text("SELECT points_committed FROM api_keys WHERE id = :id"), {"id": key_id}
            )
            or 0
        )


# Jobs a second that a continuous prune must clear: with a backlog a worker prunes a quarter of
# its time (`worker.process.PRUNE_BACKLOG_GAP`), and a quarter of this is the 500 jobs a second
# the pipeline is meant to carry.
JOBS_PER_SECOND_GOAL = 2000.0
# Claim p99 while pruning, in seconds: a claim that waited for pruning's locks would wait for a
# chunk's transaction or a partition lock's timeout; CPU shared on two cores slows it less.
CLAIM_P99_GOAL = 1.0


def prune_section(figures: PruneFigures, *, budget: float) -> Section:
    """The ``prune`` section of docs/benchmarks.md."""
    jobs = figures.backlog_rows["jobs"] - figures.left_rows["jobs"]
    jobs_per_second = jobs / figures.seconds if figures.seconds > 0 else 0.0
    rows = [
        [
            table_name,
            f"{figures.backlog_rows[table_name]:,}",
            f"{figures.backlog_rows[table_name] - figures.left_rows[table_name]:,}",
        ]
        for table_name in TABLES
    ]
    rows.append(["all four", f"{sum(figures.backlog_rows.values()):,}", f"{figures.deleted:,}"])
    p99_before = percentile(figures.claims_before, 0.99)
    p99_during = percentile(figures.claims_during, 0.99)
    timing = [
        ["wall time of the passes", f"{fmt(figures.seconds, 1)} s ({figures.passes} passes)"],
        ["rows deleted per second", f"{figures.rows_per_second:,.0f}"],
        ["jobs deleted per second", f"{jobs_per_second:,.0f}"],
        ["day partitions dropped", str(figures.partitions_dropped)],
        [
            "claim p50 / p99 before pruning",
            f"{fmt(1000 * percentile(figures.claims_before, 0.5), 1)} / "
            f"{fmt(1000 * p99_before, 1)} ms ({len(figures.claims_before)} claims)",
        ],
        [
            "claim p50 / p99 during pruning",
            f"{fmt(1000 * percentile(figures.claims_during, 0.5), 1)} / "
            f"{fmt(1000 * p99_during, 1)} ms ({len(figures.claims_during)} claims)",
        ],
        ["claim p99 during / before", f"{p99_during / p99_before:.2f}x" if p99_before else "-"],
        [
            "machine load (1-minute average), start / end",
            f"{fmt(figures.load[0], 1)} / {fmt(figures.load[1], 1)} ({cpu_model()})",
        ],
    ]
    body = "\n\n".join(
        [
            prose(
                f"""A fresh PostgreSQL database holds a backlog of settled jobs that finished
                over the ten days before the retention cutoff, each with three `job_events` rows
                in their day partitions, one succeeded webhook delivery and one attempt, beside
                {LIVE_RECENT} recent jobs and {LIVE_DUE} queued and {LIVE_DUE} running jobs due
                for the claims. `core.retention.prune_within` then runs pass after pass
                ({fmt(budget, 1)} s budget each, chunks of 2,000 rows, each its own transaction)
                until nothing old is left, while another process runs the submit and poll
                claims in a loop (each rolled back, so the same rows stay claimable) and records
                each claim's wall time, first for 3 s before pruning, then during it. Pruning
                runs without a pause here, its worst case; a worker prunes a quarter of its
                time while a backlog lasts. Both share the machine's two cores with
                PostgreSQL."""
            ),
            table(["table", "backlog rows", "deleted"], rows),
            table(["measure", "value"], timing),
        ]
    )
    goals = [
        Goal(
            name="jobs pruned per second (continuous)",
            value=f"{jobs_per_second:,.0f}",
            target=f">= {JOBS_PER_SECOND_GOAL:,.0f}",
            met=jobs_per_second >= JOBS_PER_SECOND_GOAL,
        ),
        Goal(
            name="claim p99 during pruning",
            value=f"{fmt(1000 * p99_during, 0)} ms",
            target=f"< {fmt(1000 * CLAIM_P99_GOAL, 0)} ms",
            met=0 < p99_during < CLAIM_P99_GOAL,
        ),
    ]
    return Section(key="prune", title="Retention under a backlog", body=body, goals=goals)

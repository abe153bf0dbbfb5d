"""The data path end to end, with a real worker, beat, PostgreSQL, Redis and the simulator over
HTTP, every job with a prompt of its own so the simulator's per-prompt counter says which
submits reached it.

- A worker SIGKILLed mid-submit, then Redis FLUSHALLed: every job ends; only jobs whose
  request reached MetaChat may end ``submit_uncertain``; the others are queued again and
  succeed; nothing is submitted twice.
- Redis going away for a while, then the jobs table locked for longer than a call's budget
  while a batch is submitted and polled: no job ends ``submit_uncertain`` (every submit was
  answered) and none ``timed_out`` whose task had finished upstream.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, func, select, text

from core.tables import FAILED, QUEUED, SUCCEEDED, TERMINAL_STATUSES, TIMED_OUT, Job, JobEvent
from sim import SimConfig
from sim.app import ADMIN_PREFIX
from tests.support.pipeline_jobs import insert_batch, job_row, new_api_key, status_counts
from tests.support.pipeline_processes import (
    RunningPipeline,
    counting_cut_submits,
    running_pipeline,
)
from tests.support.services import RedisServer, start_embedded_redis
from tests.support.waiting import wait_until
from worker.sending import SEND_PARTS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

JOBS = 300
# the worker's pool processes, and the largest part of a round a crash can catch marked sent
# before its requests left: a round is at most METACHAT_MAX_CONNECTIONS (50) jobs
POOL = 2
PART = -(-50 // SEND_PARTS)
MODELS = ["flux-2-pro", "z-image-turbo", "mj-v7", "doubao-seedream-4-5-251128"]


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server of this test's own: it is stopped and flushed on purpose."""
    server = start_embedded_redis()
    try:
        yield server
    finally:
        server.stop()


def _pipeline(pg_url: str, redis_url: str, logs: Path, *, slow_seconds: float = 0.3) -> Any:
    return running_pipeline(
        database_url=pg_url,
        redis_url=redis_url,
        logs=logs,
        # MetaChat makes the task at once and answers after slow_seconds, so a kill lands
        # while requests are on the wire
        sim_config=SimConfig.for_profile(
            "fast", seed=7, slow_rate=1.0, slow_seconds=slow_seconds, fault_on_poll=False
        ),
        env={"PROVIDER_RATE_PER_SECOND": '{"default": 60}', "BEAT_INTERVAL_SECONDS": "0.5"},
    )


def _left_the_queue(pipeline: RunningPipeline) -> int:
    with pipeline.db.read_session() as session:
        return int(session.scalar(select(func.count()).where(Job.status != QUEUED)) or 0)


def _all_ended(pipeline: RunningPipeline, *, timeout: float) -> dict[str, int]:
    db = pipeline.db
    wait_until(
        lambda: set(status_counts(db)) <= set(TERMINAL_STATUSES),
        timeout=timeout,
        interval=0.5,
        what=f"every job to end: {status_counts(db)}\n{pipeline.processes.log_tail()}",
    )
    return status_counts(db)


def _rows(pipeline: RunningPipeline) -> list[Any]:
    with pipeline.db.read_session() as session:
        return list(
            session.execute(
                select(Job.id, Job.status, Job.error_code, Job.prompt, Job.upstream_task_id)
            )
        )


def test_a_killed_worker_and_a_flushed_redis_leave_only_sent_jobs_uncertain(
    pg_url: str, own_redis: RedisServer, tmp_path: Path
) -> None:
    with (
        counting_cut_submits() as cut,
        _pipeline(pg_url, own_redis.url, tmp_path, slow_seconds=1.0) as pipeline,
    ):
        db, processes = pipeline.db, pipeline.processes
        key = new_api_key(db)
        insert_batch(db, key, [job_row(key, model=MODELS[n % len(MODELS)]) for n in range(JOBS)])
        wait_until(
            lambda: _left_the_queue(pipeline) >= 90,
            timeout=90,
            what=f"jobs submitted before the kill\n{processes.log_tail()}",
        )
        processes.kill_worker()
        flushed = redis.Redis.from_url(own_redis.url)
        flushed.flushall()
        flushed.close()
        processes.start_worker()
        counts = _all_ended(pipeline, timeout=240)
        rows = _rows(pipeline)
        stats = pipeline.sim.stats()
        with db.read_session() as session:
            resolved = list(
                session.execute(
                    select(JobEvent.job_id, JobEvent.reason, JobEvent.detail).where(
                        JobEvent.reason.in_(("submit_abandoned", "submit_recovered"))
                    )
                )
            )

    reached = _submits_by_marker(stats["submits_by_prompt"])
    assert stats["duplicates"] == {}, "a job was submitted twice"
    uncertain = [row for row in rows if row.error_code == "submit_uncertain"]
    uncertain_reached = [row for row in uncertain if reached[_marker(row.prompt)] >= 1]
    uncertain_not_reached = [row for row in uncertain if reached[_marker(row.prompt)] == 0]
    never_sent = {job_id for job_id, reason, detail in resolved if reason == "submit_abandoned"}
    recovered = {job_id for job_id, reason, _ in resolved if reason == "submit_recovered"}
    status_of = {row.id: row.status for row in rows}
    print(
        f"\ncrash: {counts}; abandoned by the kill: {len(never_sent)} never sent (queued again), "
        f"{len(recovered)} answered and recovered, {len(uncertain)} submit_uncertain of which "
        f"{len(uncertain_reached)} reached MetaChat and {len(uncertain_not_reached)} did not "
        f"({cut.count} requests reached the simulator but were cut before it read them)"
    )
    assert sum(counts.values()) == JOBS
    # the only failures are submits a kill caught on the wire
    assert {row.error_code for row in rows if row.status == FAILED} <= {"submit_uncertain"}
    # an uncertain job whose task the simulator did not make is a request it received and
    # could not read because the kill cut the connection (it was on the wire), or one of the
    # part of a round whose sent mark had committed while its requests had not all left yet
    # (worker.sending): at most one part per pool process
    assert len(uncertain_not_reached) <= cut.count + POOL * PART, uncertain_not_reached
    # jobs whose request never left (claimed, not yet marked sent: a window of a few
    # milliseconds, so often none) were queued again and went through
    assert {status_of[job_id] for job_id in never_sent} <= {SUCCEEDED}
    assert {status_of[job_id] for job_id in recovered} <= {SUCCEEDED}
    assert counts[SUCCEEDED] == JOBS - len(uncertain)


def _marker(prompt: str) -> str:
    """The ``#N`` that makes a test prompt unique (a model may add its own flags around it)."""
    found = re.search(r"#\d+", prompt)
    assert found is not None, prompt
    return found.group(0)


def _submits_by_marker(by_prompt: dict[str, int]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for prompt, count in by_prompt.items():
        found = re.search(r"#\d+", prompt)
        if found is not None:
            counts[found.group(0)] += count
    return counts


def _revive(processes: Any) -> list[str]:
    """Start again the worker or beat that exited (what a process supervisor does)."""
    revived = []
    if processes.worker is not None and processes.worker.poll() is not None:
        processes.start_worker()
        revived.append("worker")
    if processes.beat is not None and processes.beat.poll() is not None:
        processes.start_beat()
        revived.append("beat")
    return revived


def _hold_jobs_lock(pg_url: str, seconds: float, locked: threading.Event) -> threading.Thread:
    engine = create_engine(pg_url)

    def hold() -> None:
        try:
            with engine.connect() as connection:
                connection.execute(text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
                locked.set()
                threading.Event().wait(seconds)
                connection.rollback()
        finally:
            engine.dispose()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def _upstream_status(pipeline: RunningPipeline, task_id: str) -> str:
    view = httpx.get(f"{pipeline.sim.root_url}{ADMIN_PREFIX}/tasks/{task_id}", trust_env=False)
    view.raise_for_status()
    return str(view.json()["status"])


def test_a_redis_outage_and_a_database_stall_make_no_false_uncertain_or_timed_out_job(
    pg_url: str, own_redis: RedisServer, tmp_path: Path
) -> None:
    with _pipeline(pg_url, own_redis.url, tmp_path) as pipeline:
        db, processes = pipeline.db, pipeline.processes
        key = new_api_key(db)
        insert_batch(db, key, [job_row(key, model=MODELS[n % len(MODELS)]) for n in range(JOBS)])
        wait_until(lambda: _left_the_queue(pipeline) >= 40, timeout=90, what="first submits")
        # Redis goes away for a few seconds (the broker and the limiter with it) ...
        port = int(own_redis.url.rsplit(":", 1)[1].split("/")[0])
        own_redis.stop()
        threading.Event().wait(3.0)
        restarted = start_embedded_redis(port=port)
        # Celery's worker may give up on a lost broker ("Unrecoverable error" inside kombu's
        # reconnect); a supervisor restarts it, as one would in production
        revived: list[str] = []

        def more_submits() -> bool:
            revived.extend(_revive(processes))
            return _left_the_queue(pipeline) >= 120

        try:
            wait_until(more_submits, timeout=90, what="more submits")
            # ... then the jobs table is locked for longer than a call's whole budget (5 s here)
            # while submits are on the wire and polls are due
            locked = threading.Event()
            holder = _hold_jobs_lock(pg_url, 8.0, locked)
            locked.wait(10)
            holder.join()
            counts = _all_ended(pipeline, timeout=240)
            rows = _rows(pipeline)
            timed_out = [row for row in rows if row.status == TIMED_OUT]
            finished_upstream = [
                row.id
                for row in timed_out
                if _upstream_status(pipeline, row.upstream_task_id) in ("success", "failure")
            ]
            log_tail = processes.log_tail()
        finally:
            processes.stop()
            restarted.stop()
    print(f"\noutage and stall: {counts}; processes restarted after the outage: {revived}")
    uncertain = [row.id for row in rows if row.error_code == "submit_uncertain"]
    assert uncertain == [], f"answered submits ended uncertain: {uncertain}\n{log_tail}"
    assert finished_upstream == [], f"timed out although finished upstream: {finished_upstream}"
    assert Counter(row.status for row in rows)[SUCCEEDED] == JOBS - len(timed_out)

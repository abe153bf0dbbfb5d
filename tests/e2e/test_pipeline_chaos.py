"""Crash safety: a few hundred jobs while the worker is SIGKILLed twice and Redis is flushed.

Every job must end, none may be lost, and none may be paid for twice: the simulator counts
the tasks created per prompt. A job caught mid-submit by a kill cannot know whether MetaChat
made its task, so it ends as ``submit_uncertain`` instead of being sent again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from core.tables import FAILED, QUEUED, SUCCEEDED, TERMINAL_STATUSES, Job, JobEvent
from sim import SimConfig
from tests.support.pipeline_jobs import insert_batch, job_row, new_api_key, status_counts
from tests.support.pipeline_processes import (
    CutSubmits,
    RunningPipeline,
    counting_cut_submits,
    running_pipeline,
)
from tests.support.pipeline_redis import pipeline_redis_server, redis_url
from tests.support.waiting import wait_until
from worker.sending import SEND_PARTS

__all__ = ["pipeline_redis_server", "redis_url"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JOBS = 300
FRAME = [{"url": "https://example.com/frame.png"}]
SPECS = [
    {"model": "mj-v7"},
    {"model": "flux-2-pro"},
    {"model": "z-image-turbo"},
    {"model": "doubao-seedream-4-5-251128"},
    {"model": "grok-imagine-image-2.0"},
    {"model": "grok-imagine-video-1.5-preview", "images": FRAME},
]


@pytest.fixture
def pipeline(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[RunningPipeline]:
    with running_pipeline(
        database_url=pg_url,
        redis_url=redis_url,
        logs=tmp_path,
        sim_config=SimConfig.for_profile("fast", seed=21),
        # slow enough that the kills land while submits are still going on
        env={"PROVIDER_RATE_PER_SECOND": '{"default": 15}', "BEAT_INTERVAL_SECONDS": "0.5"},
    ) as running:
        yield running


def submitted(pipeline: RunningPipeline) -> int:
    with pipeline.db.read_session() as session:
        return int(session.scalar(select(func.count()).where(Job.status != QUEUED)) or 0)


def test_kills_and_a_flushed_redis_lose_nothing_and_pay_nothing_twice(
    pipeline: RunningPipeline,
) -> None:
    with counting_cut_submits() as cut:
        _kill_twice_and_check(pipeline, cut)


def _kill_twice_and_check(pipeline: RunningPipeline, cut: CutSubmits) -> None:
    db, processes = pipeline.db, pipeline.processes
    key = new_api_key(db)
    insert_batch(db, key, [job_row(key, **SPECS[n % len(SPECS)]) for n in range(JOBS)])

    def after(count: int, what: str) -> None:
        wait_until(
            lambda: submitted(pipeline) >= count,
            timeout=60,
            what=f"{count} jobs submitted before {what}\n{processes.log_tail()}",
        )

    after(40, "the flush")
    broker = redis.Redis.from_url(pipeline.redis_url)
    broker.flushall()
    broker.close()
    after(100, "the first kill")
    processes.kill_worker()
    processes.start_worker()
    after(200, "the second kill")
    processes.kill_worker()
    processes.start_worker()

    wait_until(
        lambda: set(status_counts(db)) <= set(TERMINAL_STATUSES),
        timeout=120,
        what=f"every job to end: {status_counts(db)}\n{processes.log_tail()}",
    )
    counts = status_counts(db)
    assert sum(counts.values()) == JOBS
    with db.read_session() as session:
        rows = list(session.execute(select(Job.status, Job.error_code, Job.upstream_task_id)))
    failures = Counter(code for status, code, _ in rows if status == FAILED)
    # the only failures allowed are jobs caught mid-submit by a kill
    assert set(failures) <= {"submit_uncertain"}, failures
    stats = pipeline.sim.stats()
    assert stats["duplicates"] == {}
    ours = {task_id for _, _, task_id in rows if task_id}
    orphans = int(stats["tasks_created"]) - len(ours)  # type: ignore[call-overload]
    # a task MetaChat made that no job knows of can only belong to an uncertain submit
    assert 0 <= orphans <= failures["submit_uncertain"]
    # jobs whose request never left were queued again, not failed: the uncertain ones are
    # jobs MetaChat made a task for, or whose request it received but could not read because
    # the kill cut the connection (so it was on the wire), or at most one part of a round per
    # pool process per kill, caught between its sent mark and its requests leaving
    # (worker.sending: a round of at most 50 jobs goes out in SEND_PARTS parts)
    part = -(-50 // SEND_PARTS)
    assert failures["submit_uncertain"] - orphans <= cut.count + 2 * 2 * part
    assert counts[SUCCEEDED] >= JOBS - failures["submit_uncertain"]
    with db.read_session() as session:
        resolved = Counter(
            session.scalars(
                select(JobEvent.reason).where(
                    JobEvent.reason.in_(("submit_abandoned", "submit_recovered"))
                )
            )
        )
    print(
        f"\nchaos: {counts}, uncertain={failures['submit_uncertain']}, orphans={orphans}, "
        f"re-queued unsent={resolved['submit_abandoned']}, "
        f"recovered accepted={resolved['submit_recovered']}, sim tasks={stats['tasks_created']}, "
        f"submits cut at the simulator={cut.count}"
    )

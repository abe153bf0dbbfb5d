"""GPT Image and chat jobs end to end: real ``mcjobs worker`` and ``mcjobs beat`` processes,
PostgreSQL, a private Redis, the simulator's OpenAI-compatible host over HTTP on 127.0.0.1, and
result files on the local store."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.files import files_of
from core.settings import Settings
from core.storage import open_storage
from core.tables import SUCCEEDED, TERMINAL_STATUSES, JobEvent
from sim import SimConfig
from tests.support.pipeline_jobs import insert_batch, job_row, jobs, new_api_key
from tests.support.pipeline_processes import RunningPipeline, running_pipeline
from tests.support.pipeline_redis import pipeline_redis_server, redis_url
from tests.support.waiting import wait_until

__all__ = ["pipeline_redis_server", "redis_url"]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def pipeline(pg_url: str, redis_url: str, tmp_path: Path, files: Path) -> Iterator[RunningPipeline]:
    with running_pipeline(
        database_url=pg_url,
        redis_url=redis_url,
        logs=tmp_path,
        sim_config=SimConfig.for_profile("fast", seed=5),
        env={"STORAGE_URL": str(files), "METACHAT_SYNC_MAX_IN_FLIGHT": "6"},
    ) as running:
        yield running


def test_gpt_image_and_chat_jobs_end_with_stored_files_and_text(
    pipeline: RunningPipeline, files: Path
) -> None:
    db = pipeline.db
    key = new_api_key(db)
    images = [job_row(key, model="gpt-image-1", params={"n": 2}) for _ in range(10)]
    edits = [
        job_row(key, model="gpt-image-1.5", action="edit", images=[{"url": "https://x.test/a.png"}])
        for _ in range(5)
    ]
    chats = [job_row(key, model="deepseek-chat", prompt=f"question {n}") for n in range(5)]
    rows = [*images, *edits, *chats]
    insert_batch(db, key, rows)
    ids = [row["id"] for row in rows]

    wait_until(
        lambda: all(j.status in TERMINAL_STATUSES for j in jobs(db, ids)),
        timeout=120,
        what="every job to end",
    )
    finished = jobs(db, ids)
    assert {j.status for j in finished} == {SUCCEEDED}, pipeline.processes.log_tail()

    host = httpx.get(f"{pipeline.sim.root_url}/_sim/llm").json()
    sent = sorted(image["sha256"] for image in host["sent"])
    assert len(sent) == 10 * 2 + 5
    store = open_storage(Settings(storage_url=str(files)))
    stored = []
    with db.read_session() as session:
        for job in finished[:15]:
            rows_ = files_of(session, job.id)
            assert [r.output_index for r in rows_] == list(range(len(rows_)))
            for row in rows_:
                data = asyncio.run(store.get(row.key))
                assert hashlib.sha256(data).hexdigest() == row.sha256
                stored.append(row.sha256)
        reasons = [
            e.reason
            for e in session.query(JobEvent).filter(JobEvent.job_id == ids[0]).order_by(JobEvent.id)
        ]
    assert sorted(stored) == sent
    assert reasons[-2:] == ["submitted", "upstream_succeeded"]
    for job in finished[15:]:
        assert job.result is not None and job.result["text"].startswith("Simulated answer")
        assert job.result["usage"]["total_tokens"] > 0
        assert job.upstream_task_id is None and job.polls == 0


def test_a_worker_killed_mid_call_leaves_its_jobs_submit_uncertain_and_never_resends(
    pg_url: str, redis_url: str, tmp_path: Path, files: Path
) -> None:
    # pictures take 3 s; the worker is SIGKILLed while every call is on the wire
    sim_config = SimConfig.for_profile(
        "fast",
        seed=9,
        duration_sigma=0.0,
        llm_durations={"image": 150.0, "edit": 150.0, "chat": 1.0},
    )
    env = {
        "STORAGE_URL": str(files),
        "METACHAT_CONNECT_TIMEOUT": "1",
        "METACHAT_SYNC_READ_TIMEOUT": "5",  # a lease of 2 * (1 + 5 + 2) + 60 = 76 s
        "BEAT_INTERVAL_SECONDS": "0.5",
    }
    with running_pipeline(
        database_url=pg_url, redis_url=redis_url, logs=tmp_path, sim_config=sim_config, env=env
    ) as pipeline:
        db, processes = pipeline.db, pipeline.processes
        key = new_api_key(db)
        rows = [job_row(key, model="gpt-image-1.5") for _ in range(6)]
        insert_batch(db, key, rows)
        ids = [row["id"] for row in rows]
        wait_until(
            lambda: all(j.submit_sent_at is not None for j in jobs(db, ids)),
            timeout=30,
            what="every call on the wire",
        )
        processes.kill_worker()
        processes.start_worker()
        wait_until(
            lambda: all(j.status in TERMINAL_STATUSES for j in jobs(db, ids)),
            timeout=180,
            interval=0.5,
            what=f"the abandoned calls to be settled\n{processes.log_tail()}",
        )
        host = httpx.get(f"{pipeline.sim.root_url}/_sim/llm").json()
        # read while the pipeline's database handle is open (it is disposed on the way out)
        ended = jobs(db, ids)

    assert {(j.status, j.error_code) for j in ended} == {("failed", "submit_uncertain")}
    assert host["by_path"]["images/generations"] == 6, "an uncertain call was sent again"

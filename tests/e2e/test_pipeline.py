"""The pipeline end to end: real ``mcjobs worker`` and ``mcjobs beat`` processes, PostgreSQL, a
private Redis, and the simulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.db import Database
from core.tables import FAILED, SUCCEEDED, TERMINAL_STATUSES, TIMED_OUT, Job, JobEvent
from sim import SimConfig
from tests.support.pipeline_jobs import (
    insert_batch,
    insert_jobs,
    job,
    job_row,
    jobs,
    new_api_key,
    unique_prompt,
)
from tests.support.pipeline_processes import RunningPipeline, running_pipeline
from tests.support.pipeline_redis import pipeline_redis_server, redis_url
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

__all__ = ["pipeline_redis_server", "redis_url"]

FRAME = [{"url": "https://example.com/frame.png"}]
FAMILIES: dict[str, dict[str, Any]] = {
    "mj-imagine": {"model": "niji-7"},
    "mj-describe": {"model": "mj-v7", "action": "describe", "images": FRAME},
    "mj-video": {"model": "mj-video-v1", "images": FRAME},
    "flux": {"model": "flux-2-max"},
    "z-image": {"model": "z-image-turbo"},
    "seedream": {"model": "doubao-seedream-5-0-260128"},
    "grok-image": {"model": "grok-imagine-image-quality"},
    "grok-video": {"model": "grok-imagine-video-1.5-preview", "images": FRAME},
}


@pytest.fixture
def pipeline(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[RunningPipeline]:
    with running_pipeline(
        database_url=pg_url,
        redis_url=redis_url,
        logs=tmp_path,
        sim_config=SimConfig.for_profile("fast", seed=3),
    ) as running:
        yield running


def all_terminal(pipeline: RunningPipeline, job_ids: list[str]) -> bool:
    return all(row.status in TERMINAL_STATUSES for row in jobs(pipeline.db, job_ids))


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running


def test_jobs_of_every_family_end_with_urls_points_or_the_upstream_reason(
    pipeline: RunningPipeline, receiver: WebhookReceiver
) -> None:
    db = pipeline.db
    key = new_api_key(db)
    rows = {name: job_row(key, **spec) for name, spec in FAMILIES.items()}
    rows["flux"]["webhook_url"] = receiver.url
    # a follow-up queued before its source has even been submitted waits for it
    rows["mj-split"] = job_row(
        key, model="niji-7", action="split", source_index=1, source_job_id=rows["mj-imagine"]["id"]
    )
    rows["fails"] = job_row(
        key, model="flux-2-pro", prompt=unique_prompt("sim:fail a ship"), webhook_url=receiver.url
    )
    ids = dict(zip(rows, insert_jobs(db, rows.values()), strict=True))
    wait_until(
        lambda: all_terminal(pipeline, list(ids.values())),
        timeout=60,
        what=f"every job to end\n{pipeline.processes.log_tail()}",
    )
    ended = {name: job(db, job_id) for name, job_id in ids.items()}
    failed = ended.pop("fails")
    assert (failed.status, failed.error_code, failed.error_message) == (
        FAILED,
        "upstream_failed",
        "内容审核未通过",
    )
    for name, row in ended.items():
        assert row.status == SUCCEEDED, (name, row.error_code, row.error_message)
        assert row.cost_points, name
        assert row.result is not None
        assert row.result["video_url"] or row.result["image_urls"] or row.result["prompts"]
    assert pipeline.sim.stats()["duplicates"] == {}
    # the deliver tick runs in the same worker processes, signing with the key's secret
    wait_until(lambda: receiver.count() >= 2, timeout=20, what="both webhooks to arrive")
    bodies = {json.loads(r.body)["type"]: json.loads(r.body) for r in receiver.received}
    assert sorted(bodies) == ["job.failed", "job.succeeded"]
    # the success webhook waited for the archive pump: it carries our copy beside upstream's
    flux = bodies["job.succeeded"]["data"]
    assert flux["archive"]["state"] == "done"
    (stored,) = flux["result"]["files"]
    assert stored["source_url"] == flux["result"]["image_urls"][0]
    assert stored["content_type"] == "image/png" and stored["width"] == stored["height"] == 8
    assert all(
        request.headers["webhook-signature"].startswith("v1,") for request in receiver.received
    )


def test_a_deadline_times_the_job_out_and_a_late_success_is_still_recorded(
    pipeline: RunningPipeline,
) -> None:
    db = pipeline.db
    key = new_api_key(db)
    # a Midjourney clip takes ~3 s here; 20 s scaled by 0.02 is a 0.4 s deadline
    [job_id] = insert_jobs(
        db, [job_row(key, model="mj-video-v1", images=FRAME, deadline_seconds=20)]
    )
    timed_out = wait_until(
        lambda: (row := job(db, job_id)).status == TIMED_OUT and row,
        timeout=30,
        what=f"the job to time out\n{pipeline.processes.log_tail()}",
    )
    assert timed_out.error_code == "deadline_exceeded"
    assert timed_out.upstream_task_id
    late = wait_until(
        lambda: (row := job(db, job_id)).status == SUCCEEDED and row,
        timeout=30,
        what="the reconcile pass to record the late success",
    )
    assert late.cost_points and late.result is not None and late.result["video_url"]
    with db.read_session() as session:
        reasons = list(session.scalars(select(JobEvent.reason).where(JobEvent.job_id == job_id)))
    assert reasons[-2:] == ["deadline_exceeded", "late_success"]


def test_a_single_job_behind_a_queued_10k_batch_starts_within_a_couple_of_ticks(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with running_pipeline(
        database_url=pg_url,
        redis_url=redis_url,
        logs=tmp_path,
        env={"PROVIDER_RATE_PER_SECOND": '{"default": 20}'},
        start=False,
    ) as pipeline:
        db = pipeline.db
        bulk, single_key = new_api_key(db, "bulk"), new_api_key(db, "single")
        insert_batch(db, bulk, [job_row(bulk) for _ in range(10_000)])
        pipeline.processes.start()
        wait_until(
            lambda: submitted_any(db),
            timeout=30,
            what=f"the batch to start\n{pipeline.processes.log_tail()}",
        )
        [single] = insert_jobs(db, [job_row(single_key)])
        started = time.monotonic()
        wait_until(
            lambda: job(db, single).status != "queued",
            timeout=3.0,
            what="the single job to be submitted",
        )
        print(f"\nsingle job submitted {time.monotonic() - started:.2f} s after it was queued")
        assert job(db, single).upstream_task_id


def submitted_any(db: Database) -> bool:
    with db.read_session() as session:
        return bool(session.scalar(select(func.count()).where(Job.status != "queued")))

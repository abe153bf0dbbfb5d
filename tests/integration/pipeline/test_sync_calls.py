"""The synchronous lane against the simulator's OpenAI-compatible host: GPT Image answers end
as files in result storage whose bytes are what the host sent; chat answers as text with
their token usage and cost; a worker that dies mid-call leaves the job `submit_uncertain`."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis

from core.db import Database
from core.files import files_of
from core.maintenance import run_maintenance
from core.settings import Settings
from core.storage import open_storage
from core.tables import ARCHIVE_DONE, FAILED, SUCCEEDED, JobEvent, utcnow
from metachat.openai import SyncAnswer
from sim import SimConfig
from tests.support.pipeline_jobs import (
    TestClock,
    insert_batch,
    insert_jobs,
    job_row,
    jobs,
    new_api_key,
    pipeline_settings,
    sim_transport,
    status_counts,
)
from worker.context import PumpContext, build_pump_context
from worker.submit_claim import ClaimTally, SubmitWork, claim_submits
from worker.sync_calls import (
    ResultNotStored,
    StoredImage,
    StoreOutput,
    SyncLane,
    no_store,
    store_images,
    sync_lease_seconds,
)

SettingsFor = Callable[..., Settings]
LLM_BASE = "http://sim.test/v1"


def lane_settings(settings_for: SettingsFor, db_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return pipeline_settings(
        settings_for,
        db_url,
        metachat_llm_base_url=LLM_BASE,
        metachat_sync_max_in_flight=16,
        storage_url=str(tmp_path / "files"),
        public_base_url="https://files.example.test",
        **extra,
    )


@contextmanager
def running_lane(
    db: Database,
    settings: Settings,
    transport: httpx.AsyncBaseTransport,
    *,
    store: StoreOutput | None = None,
) -> Iterator[SyncLane]:
    client = redis.Redis.from_url(settings.redis_url)

    def build(http: httpx.AsyncClient) -> PumpContext:
        return build_pump_context(settings, http=http, db=db, redis_client=client)

    lane = SyncLane(
        settings,
        build,
        store=store or store_images(open_storage(settings)),
        transport=transport,
    )
    try:
        yield lane
    finally:
        lane.close(timeout=30.0)
        client.close()


def run_until_done(db: Database, lane: SyncLane, timeout: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = status_counts(db)
        if not counts.keys() - {SUCCEEDED, FAILED} and lane.in_flight == 0:
            return counts
        assert time.monotonic() < deadline, counts
        lane.wake()  # what the submit tick does every second
        time.sleep(0.05)


def test_a_200_job_gpt_image_batch_ends_with_200_files_matching_what_the_host_sent(
    pg_db: Database, settings_for: SettingsFor, pg_url: str, tmp_path: Path
) -> None:
    settings = lane_settings(settings_for, pg_url, tmp_path)
    transport, sim = sim_transport(SimConfig.for_profile("fast"))
    key = new_api_key(pg_db)
    models = ("gpt-image-1.5", "gpt-image-1")
    rows = [
        job_row(key, model=models[n % 2], params={"quality": "low", "size": "1024x1024"})
        for n in range(200)
    ]
    insert_batch(pg_db, key, rows)

    with running_lane(pg_db, settings, transport) as lane:
        assert run_until_done(pg_db, lane) == {SUCCEEDED: 200}

    sent = Counter(image["sha256"] for image in sim.llm.sent)
    assert sum(sent.values()) == 200
    store = open_storage(settings)
    stored: Counter[str] = Counter()
    for job in jobs(pg_db, [row["id"] for row in rows]):
        assert job.archive_state == ARCHIVE_DONE
        assert job.result is not None and job.result["usage"]["output_tokens"] == 272
        (file,) = job.result["files"]
        assert file["content_type"] == "image/png"
        assert (file["width"], file["height"]) == (64, 64)
        assert file["url"].startswith("https://files.example.test/v1/files/")
        with pg_db.read_session() as session:
            (row,) = files_of(session, job.id)
        data = asyncio.run(store.get(row.key))
        assert hashlib.sha256(data).hexdigest() == row.sha256 == file["sha256"]
        stored[row.sha256] += 1
    assert stored == sent


def test_chat_jobs_store_text_usage_and_the_cost_from_usage_prices(
    db: Database, settings_for: SettingsFor, db_url: str, tmp_path: Path
) -> None:
    prices = {"gpt-4.1": {"per_1k_input_tokens": 2, "per_1k_output_tokens": 8}}
    settings = lane_settings(
        settings_for, db_url, tmp_path, metachat_catalogue_overrides={"usage_prices": prices}
    )
    transport, _ = sim_transport(SimConfig.for_profile("instant"))
    key = new_api_key(db)
    conversation = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Name a lighthouse."},
    ]
    conversed_row = job_row(key, model="claude-sonnet-4-5", params={"messages": conversation})
    conversed_row["prompt"] = None  # the conversation alone
    ids = insert_jobs(
        db,
        [
            job_row(key, model="gpt-4.1", prompt="Why is the sea blue?"),
            conversed_row,
            job_row(key, model="gpt-4.1", prompt="stop early", params={"max_tokens": 3}),
        ],
    )
    with running_lane(db, settings, transport, store=no_store) as lane:
        assert run_until_done(db, lane) == {SUCCEEDED: 3}

    priced, conversed, cut = jobs(db, ids)
    assert priced.result is not None
    assert "Why is the sea blue?" in priced.result["text"]
    usage = priced.result["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    expected = (usage["input_tokens"] * 2 + usage["output_tokens"] * 8) / 1000
    assert priced.cost_points == max(1, -int(-expected // 1))
    assert priced.result["finish_reason"] == "stop"
    assert conversed.result is not None and "Name a lighthouse." in conversed.result["text"]
    assert conversed.cost_points is None  # no price set: unknown, never 0
    assert cut.result is not None and cut.result["finish_reason"] == "length"
    assert cut.result["text"].count(" ") == 2


def test_upstream_refusals_fail_the_job_with_the_hosts_message(
    db: Database, settings_for: SettingsFor, db_url: str, tmp_path: Path
) -> None:
    settings = lane_settings(settings_for, db_url, tmp_path)
    transport, _ = sim_transport(SimConfig.for_profile("instant"))
    key = new_api_key(db)
    ids = insert_jobs(
        db,
        [
            job_row(key, model="gpt-image-1", prompt="sim:reject this"),
            job_row(
                key,
                model="gpt-image-1",
                params={"background": "transparent", "output_format": "jpeg"},
            ),
        ],
    )
    with running_lane(db, settings, transport) as lane:
        assert run_until_done(db, lane) == {FAILED: 2}
    moderated, contradictory = jobs(db, ids)
    assert moderated.error_code == "upstream_rejected"
    assert "safety system" in (moderated.error_message or "")
    assert contradictory.error_code == "upstream_rejected"
    assert "param background" in (contradictory.error_message or "")


def test_a_worker_dying_mid_call_leaves_the_job_submit_uncertain(
    db: Database, settings_for: SettingsFor, db_url: str, tmp_path: Path
) -> None:
    settings = lane_settings(settings_for, db_url, tmp_path)
    key = new_api_key(db)
    (job_id,) = insert_jobs(db, [job_row(key, model="gpt-image-1.5")])
    clock = TestClock(utcnow())
    client = redis.Redis.from_url(settings.redis_url)

    async def claim_and_die() -> None:
        async with httpx.AsyncClient() as http:
            ctx = build_pump_context(settings, http=http, db=db, redis_client=client, clock=clock)
            try:
                work = claim_submits(
                    ctx, now=clock(), report=ClaimTally(), sync=True, limit=4, lease_for=60.0
                )
                assert [item.job_id for item in work] == [job_id]
                from worker.sync_calls import _mark_sent

                assert _mark_sent(ctx, [job_id]) == {job_id}
                # the request leaves here; the process is killed before any answer
            finally:
                ctx.offload.close()

    asyncio.run(claim_and_die())
    client.close()
    assert sync_lease_seconds(settings) > settings.metachat_sync_read_timeout
    run_maintenance(db, settings, now=clock.advance(61.0))
    (job,) = jobs(db, [job_id])
    assert job.status == FAILED
    assert job.error_code == "submit_uncertain"
    with db.read_session() as session:
        reasons = [e.reason for e in session.query(JobEvent).filter(JobEvent.job_id == job_id)]
    assert reasons[-1] == "submit_uncertain"


def test_the_submit_pump_leaves_synchronous_jobs_to_the_lane(
    db: Database, settings_for: SettingsFor, db_url: str, tmp_path: Path
) -> None:
    settings = lane_settings(settings_for, db_url, tmp_path)
    key = new_api_key(db)
    sync_id, media_id = insert_jobs(
        db, [job_row(key, model="gpt-4o-mini", prompt="hi"), job_row(key, model="flux-2-pro")]
    )
    client = redis.Redis.from_url(settings.redis_url)

    async def claims() -> tuple[list[str], list[str]]:
        async with httpx.AsyncClient() as http:
            ctx = build_pump_context(settings, http=http, db=db, redis_client=client)
            try:
                now = utcnow() + dt.timedelta(seconds=1)
                media = claim_submits(ctx, now=now, report=ClaimTally())
                sync = claim_submits(ctx, now=now, report=ClaimTally(), sync=True, limit=8)
                return [w.job_id for w in media], [w.job_id for w in sync]
            finally:
                ctx.offload.close()

    media, sync = asyncio.run(claims())
    client.close()
    assert (media, sync) == ([media_id], [sync_id])


def test_an_answer_that_cannot_be_stored_fails_the_job_and_keeps_its_cost(
    db: Database, settings_for: SettingsFor, db_url: str, tmp_path: Path
) -> None:
    prices = {"gpt-image-1": {"per_image": 5}}
    settings = lane_settings(
        settings_for, db_url, tmp_path, metachat_catalogue_overrides={"usage_prices": prices}
    )
    transport, _ = sim_transport(SimConfig.for_profile("instant"))
    key = new_api_key(db)
    (job_id,) = insert_jobs(db, [job_row(key, model="gpt-image-1", params={"n": 2})])

    async def broken_store(item: SubmitWork, answer: SyncAnswer) -> list[StoredImage]:
        raise ResultNotStored("the bucket refused the write")

    with running_lane(db, settings, transport, store=broken_store) as lane:
        assert run_until_done(db, lane) == {FAILED: 1}
    (job,) = jobs(db, [job_id])
    assert job.error_code == "result_not_stored"
    assert "bucket refused" in (job.error_message or "")
    assert job.cost_points == 10

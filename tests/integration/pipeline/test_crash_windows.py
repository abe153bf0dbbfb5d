"""What happens to submits a worker was holding when it died: never sent → queued again;
maybe sent → ``submit_uncertain``, never sent twice. Real HTTP to the simulator, because only
httpx's own transport reports when a request starts to leave."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator

import pytest
import redis

from core.claims import note_upstream_ids
from core.db import Database
from core.maintenance import run_maintenance
from core.settings import Settings
from core.tables import FAILED, QUEUED, RUNNING
from metachat.client import make_http_client
from sim import SimConfig, SimServer
from tests.support.pipeline_jobs import (
    TestClock,
    insert_jobs,
    job,
    job_row,
    new_api_key,
    pipeline_settings,
)
from worker.context import build_pump_context, lease_seconds
from worker.sending import SubmitTrail, install_send_tracer, sending_job
from worker.submit_claim import ClaimTally, claim_submits


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig.for_profile("fast")) as server:
        yield server


def test_a_dead_workers_unsent_submit_is_queued_again_and_a_sent_one_is_not_resent(
    db: Database, settings_for: Callable[..., Settings], db_url: str, sim: SimServer
) -> None:
    settings = pipeline_settings(settings_for, db_url, metachat_base_url=sim.base_url)
    key = new_api_key(db)
    sent, unsent = insert_jobs(db, [job_row(key), job_row(key)])
    clock = TestClock()
    client = redis.Redis.from_url(settings.redis_url)
    trail = SubmitTrail(client, ttl_seconds=600)

    async def die_after_sending_one() -> None:
        async with make_http_client(trust_env=False) as http:
            install_send_tracer(http, trail)
            ctx = build_pump_context(
                settings, http=http, db=db, redis_client=client, owner="doomed", clock=clock
            )
            ctx.trail = trail
            work = {
                item.job_id: item for item in claim_submits(ctx, now=clock(), report=ClaimTally())
            }
            sending_job.set(sent)
            await ctx.client.submit(work[sent].request)
            # ... and the process dies before recording the answer or sending the other one

    asyncio.run(die_after_sending_one())
    later = clock.advance(lease_seconds(settings) + 1)
    report = run_maintenance(db, settings, now=later, witness=trail)
    client.close()
    assert (report.abandoned_failed, report.abandoned_requeued) == (1, 1)
    assert (job(db, sent).status, job(db, sent).error_code) == (FAILED, "submit_uncertain")
    assert (job(db, unsent).status, job(db, unsent).lease_owner) == (QUEUED, None)
    assert sim.stats()["tasks_created"] == 1


@pytest.mark.parametrize("noted_in", ["redis", "database"])
def test_an_answer_noted_before_the_crash_recovers_the_job_instead_of_failing_it(
    db: Database,
    settings_for: Callable[..., Settings],
    db_url: str,
    sim: SimServer,
    noted_in: str,
) -> None:
    settings = pipeline_settings(settings_for, db_url, metachat_base_url=sim.base_url)
    key = new_api_key(db)
    [job_id] = insert_jobs(db, [job_row(key)])
    clock = TestClock()
    client = redis.Redis.from_url(settings.redis_url)
    trail = SubmitTrail(client, ttl_seconds=600)

    async def die_after_noting_the_task_id() -> str:
        async with make_http_client(trust_env=False) as http:
            ctx = build_pump_context(
                settings, http=http, db=db, redis_client=client, owner="doomed", clock=clock
            )
            [item] = claim_submits(ctx, now=clock(), report=ClaimTally())
            task_id = await ctx.client.submit(item.request)
            if noted_in == "redis":
                trail.accepted(job_id, task_id)
            else:
                with db.session() as session:
                    note_upstream_ids(session, [(job_id, task_id)], owner="doomed")
            return task_id

    task_id = asyncio.run(die_after_noting_the_task_id())
    later = clock.advance(lease_seconds(settings) + 1)
    report = run_maintenance(db, settings, now=later, witness=trail)
    client.close()
    row = job(db, job_id)
    assert report.abandoned_recovered == 1
    assert (row.status, row.upstream_task_id) == (RUNNING, task_id)
    assert sim.stats()["tasks_created"] == 1


def test_without_marks_every_abandoned_submit_counts_as_maybe_sent(
    db: Database, settings_for: Callable[..., Settings], db_url: str
) -> None:
    settings = pipeline_settings(settings_for, db_url)
    key = new_api_key(db)
    row = job_row(key)
    row.update(lease_owner="gone:1", lease_until=dt.datetime.now(dt.UTC) - dt.timedelta(1))
    [job_id] = insert_jobs(db, [row])
    client = redis.Redis.from_url(settings.redis_url)
    run_maintenance(db, settings, witness=SubmitTrail(client, ttl_seconds=60))
    client.close()
    assert job(db, job_id).error_code == "submit_uncertain"

"""What happens to submits a worker was holding when it died, decided from the rows alone:
never marked sent → queued again; marked sent → ``submit_uncertain``, never sent twice; task
id noted → running. Redis plays no part: a FLUSHALL changes none of it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import redis

from core.claims import mark_submits_sent, note_upstream_ids
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
from worker.submit_claim import ClaimTally, SubmitWork, claim_submits


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig.for_profile("fast")) as server:
        yield server


def _flush(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    client.flushall()
    client.close()


def _die_mid_round(
    db: Database,
    settings: Settings,
    clock: TestClock,
    *,
    mark: list[int],
    send: list[int],
    note: list[int] = [],  # noqa: B006 - read only
) -> list[SubmitWork]:
    """Claim every queued job as the pump does, mark some sent, send some, note some task ids,
    then stop as a SIGKILL would: nothing more is written."""

    async def main() -> list[SubmitWork]:
        client = redis.Redis.from_url(settings.redis_url)
        async with make_http_client(trust_env=False) as http:
            ctx = build_pump_context(
                settings, http=http, db=db, redis_client=client, owner="doomed", clock=clock
            )
            try:
                work = claim_submits(ctx, now=clock(), report=ClaimTally())
                with db.session() as session:
                    mark_submits_sent(
                        session, [work[n].job_id for n in mark], owner="doomed", now=clock()
                    )
                for n in send:
                    task_id = await ctx.client.submit(work[n].request)
                    if n in note:
                        with db.session() as session:
                            note_upstream_ids(session, [(work[n].job_id, task_id)], owner="doomed")
                return work
            finally:
                ctx.offload.close()
                client.close()

    return asyncio.run(main())


@pytest.fixture
def settings(settings_for: Callable[..., Settings], db_url: str, sim: SimServer) -> Settings:
    return pipeline_settings(settings_for, db_url, metachat_base_url=sim.base_url)


def test_a_claimed_submit_never_marked_sent_is_queued_again_even_after_a_flushall(
    db: Database, settings: Settings, sim: SimServer
) -> None:
    key = new_api_key(db)
    insert_jobs(db, [job_row(key), job_row(key)])
    clock = TestClock()
    work = _die_mid_round(db, settings, clock, mark=[], send=[])
    _flush(settings)
    report = run_maintenance(db, settings, now=clock.advance(lease_seconds(settings) + 1))
    assert (report.abandoned_requeued, report.abandoned_failed) == (2, 0)
    for item in work:
        row = job(db, item.job_id)
        assert (row.status, row.lease_owner, row.submit_sent_at) == (QUEUED, None, None)
    assert sim.stats()["tasks_created"] == 0


def test_a_submit_marked_sent_without_a_noted_answer_is_uncertain_and_not_resent(
    db: Database, settings: Settings, sim: SimServer
) -> None:
    key = new_api_key(db)
    insert_jobs(db, [job_row(key), job_row(key), job_row(key)])
    clock = TestClock()
    # 0: sent and answered, answer lost; 1: marked, the process died before it left;
    # 2: claimed in the same round but not yet marked
    work = _die_mid_round(db, settings, clock, mark=[0, 1], send=[0])
    _flush(settings)
    report = run_maintenance(db, settings, now=clock.advance(lease_seconds(settings) + 1))
    assert (report.abandoned_failed, report.abandoned_requeued) == (2, 1)
    for n in (0, 1):
        row = job(db, work[n].job_id)
        assert (row.status, row.error_code) == (FAILED, "submit_uncertain")
    assert job(db, work[2].job_id).status == QUEUED
    assert sim.stats()["tasks_created"] == 1


def test_an_answer_noted_before_the_crash_recovers_the_job_instead_of_failing_it(
    db: Database, settings: Settings, sim: SimServer
) -> None:
    key = new_api_key(db)
    insert_jobs(db, [job_row(key)])
    clock = TestClock()
    sent_at = clock()
    [item] = _die_mid_round(db, settings, clock, mark=[0], send=[0], note=[0])
    _flush(settings)
    report = run_maintenance(db, settings, now=clock.advance(lease_seconds(settings) + 1))
    row = job(db, item.job_id)
    assert report.abandoned_recovered == 1
    assert row.status == RUNNING
    assert row.upstream_task_id is not None
    # the deadline counts from when the request left, not from the recovery
    assert row.submitted_at == sent_at
    assert sim.stats()["tasks_created"] == 1


def test_with_resubmit_on_a_marked_submit_is_queued_again(
    db: Database, settings_for: Callable[..., Settings], db_url: str, sim: SimServer
) -> None:
    settings = pipeline_settings(
        settings_for, db_url, metachat_base_url=sim.base_url, resubmit_on_uncertain=True
    )
    key = new_api_key(db)
    insert_jobs(db, [job_row(key)])
    clock = TestClock()
    [item] = _die_mid_round(db, settings, clock, mark=[0], send=[])
    report = run_maintenance(db, settings, now=clock.advance(lease_seconds(settings) + 1))
    assert report.abandoned_requeued == 1
    assert job(db, item.job_id).status == QUEUED

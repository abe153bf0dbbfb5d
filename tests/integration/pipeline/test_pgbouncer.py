"""The service through PgBouncer in transaction pooling mode (each transaction may run on a
different server connection): the usual traps are server-side prepared statements, session
state and locks held across transactions. The pumps use neither session settings (only
``SET LOCAL``) nor advisory locks, and every claim is one transaction with ``SKIP LOCKED``;
prepared statements are turned off by ``DB_PREPARED_STATEMENTS=false``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from api.app import create_app
from core.db import Database
from core.maintenance import run_maintenance
from core.settings import Settings
from core.tables import QUEUED, RUNNING, SUCCEEDED, Job, utcnow
from sim import SimConfig
from tests.support.api_client import api_clients
from tests.support.nodes import pgbouncer
from tests.support.pipeline_jobs import (
    insert_batch,
    job_row,
    new_api_key,
    pipeline_settings,
    pump_context,
    sim_base_url,
    sim_transport,
    status_counts,
)
from worker.poll import run_poll_pump
from worker.submit import run_submit_pump

JOBS = 300


@pytest.fixture
def pooled_url(pg_url: str) -> Iterator[str]:
    # fewer server connections than clients: transactions really do change connections
    with pgbouncer(pg_url, pool_size=3) as url:
        yield url


def _active(db: Database) -> int:
    with db.read_session() as session:
        return int(
            session.scalar(select(func.count()).where(Job.status.in_((QUEUED, RUNNING)))) or 0
        )


async def _two_workers_until_done(settings: Settings, dbs: list[Database]) -> None:
    transport, simulator = sim_transport(SimConfig.for_profile("instant"))
    async with (
        pump_context(dbs[0], settings, transport=transport, owner="node-a:1") as a,
        pump_context(dbs[1], settings, transport=transport, owner="node-b:1") as b,
    ):
        for _ in range(200):
            if await asyncio.to_thread(_active, dbs[0]) == 0:
                break
            await asyncio.gather(
                run_submit_pump(a), run_submit_pump(b), run_poll_pump(a), run_poll_pump(b)
            )
            await asyncio.to_thread(run_maintenance, dbs[1], settings, now=utcnow())
        assert simulator.stats.as_dict()["duplicates"] == {}
        assert simulator.stats.tasks_created == JOBS


def test_two_pumps_share_the_work_through_a_transaction_pooler(
    pooled_url: str, settings_for: Callable[..., Settings]
) -> None:
    settings = pipeline_settings(
        settings_for,
        pooled_url,
        metachat_base_url=sim_base_url(),
        db_prepared_statements=False,
        submit_batch_size=20,
        poll_batch_size=20,
        poll_time_scale=0.001,
    )
    dbs = [Database.for_settings(settings) for _ in range(2)]
    try:
        key = new_api_key(dbs[0])
        insert_batch(dbs[0], key, [job_row(key) for _ in range(JOBS)])
        # small rounds: every claim statement runs far more often than psycopg's prepare
        # threshold, on whichever server connection the pooler hands out
        asyncio.run(_two_workers_until_done(settings, dbs))
        assert status_counts(dbs[0]) == {SUCCEEDED: JOBS}
    finally:
        for db in dbs:
            db.dispose()


def test_the_api_answers_through_a_transaction_pooler(
    pooled_url: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(pooled_url, db_prepared_statements=False)
    db = Database.for_settings(settings)
    app = create_app(settings, db)
    try:
        with api_clients(app, db) as clients:
            client = clients.new("pooled", admin=True)
            spec = {"model": "flux-2-pro", "prompt": "a harbour at night"}
            batch = client.post("/v1/batches", json={"jobs": [spec] * 50})
            assert batch.status_code in (200, 201, 202), batch.text
            for _ in range(10):
                # /v1/stats sets work_mem for its transaction only (SET LOCAL)
                assert client.get("/v1/stats").status_code == 200
                listed = client.get("/v1/jobs", params={"limit": 100})
                assert listed.status_code == 200
                assert len(listed.json()["data"]) == 50
    finally:
        db.dispose()

"""Ticks behave the same on Redis and on RabbitMQ: a tick that expired before a worker took it
never runs (RabbitMQ drops it itself, a per-message TTL; on Redis the worker discards it on
receipt), and a fresh nudge runs at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from core.db import Database
from core.nudge import POLL_TICK, SUBMIT_TICK, TICK_QUEUE, nudge
from core.tables import QUEUED
from sim import SimConfig, SimServer
from tests.support.nodes import rabbitmq_vhost
from tests.support.nodes_run import cluster
from tests.support.pipeline_jobs import insert_batch, job_row, new_api_key, status_counts
from tests.support.pipeline_redis import pipeline_redis_server, redis_url
from tests.support.waiting import wait_until

__all__ = ["pipeline_redis_server", "redis_url"]

pytestmark = pytest.mark.timeout(300)

JOBS = 5


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    if request.param == "redis":
        yield redis_url
        return
    with rabbitmq_vhost() as url:
        yield url


def _send(broker_url: str, name: str, *, expires: dt.datetime | float) -> str:
    app = Celery("test-ticks", broker=broker_url, set_as_current=False)
    try:
        sent = app.send_task(name, queue=TICK_QUEUE, expires=expires, ignore_result=True)
        return str(sent.id)
    finally:
        app.close()


def test_an_expired_tick_is_dropped_and_a_fresh_nudge_runs(
    pg_url: str, redis_url: str, broker_url: str, tmp_path: Path
) -> None:
    sim = SimServer(SimConfig.for_profile("instant")).start()
    db = Database(pg_url)
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "BROKER_URL": broker_url,
        "METACHAT_BASE_URL": sim.base_url,
        "METACHAT_API_KEY": "e2e-brokers-key",
    }
    try:
        key = new_api_key(db)
        insert_batch(db, key, [job_row(key) for _ in range(JOBS)])
        # queued before any worker listens and already expired, then a fresh marker behind it
        # (one queue, first in first out, one message at a time)
        expired = _send(
            broker_url, SUBMIT_TICK, expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        )
        marker = _send(broker_url, POLL_TICK, expires=60.0)
        with cluster(env, tmp_path) as nodes:
            # no beat: the only ticks are the ones this test sends
            nodes.start_node("node-1", loglevel="DEBUG")
            log = nodes.node_log("node-1")
            wait_until(
                lambda: f"{POLL_TICK}[{marker}] succeeded" in log.read_text(errors="replace"),
                timeout=60,
                what=f"the marker tick to run\n{nodes.log_tail()}",
            )
            assert f"{SUBMIT_TICK}[{expired}] succeeded" not in log.read_text(errors="replace")
            assert status_counts(db) == {QUEUED: JOBS}
            assert nudge(broker_url, SUBMIT_TICK)
            wait_until(
                lambda: QUEUED not in status_counts(db),
                timeout=60,
                interval=0.2,
                what=f"the nudged jobs to be submitted: {status_counts(db)}\n{nodes.log_tail()}",
            )
            assert sum(status_counts(db).values()) == JOBS
    finally:
        sim.stop()
        db.dispose()

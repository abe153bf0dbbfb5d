"""A pump process killed in the middle of a delivery loses nothing: its lease runs out and
another pump delivers the same outbox row, under the same `webhook-id`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from core.db import Database
from core.tables import DELIVERY_PENDING, DELIVERY_SUCCEEDED, utcnow
from core.webhooks.deliveries import claim_due_deliveries
from tests.support.waiting import wait_until
from tests.support.webhook_pump import DeliverPump
from tests.support.webhook_receiver import Answer, Received, webhook_receiver
from tests.support.webhook_rows import attempts, delivery, finish_job, make_key

ROOT = Path(__file__).resolve().parents[3]


def test_a_lease_left_by_a_dead_pump_expires_and_the_delivery_goes_out(
    db: Database, pump_for: Callable[..., DeliverPump]
) -> None:
    key = make_key(db)
    with webhook_receiver() as receiver:
        finished = finish_job(db, key, receiver.url)
        with db.session() as session:
            [claimed] = claim_due_deliveries(
                session, owner="gone-worker", now=utcnow(), lease_seconds=0.5, limit=10
            )
        assert claimed.id == finished.delivery_id
        pump = pump_for(lease_seconds=0.5, webhook_timeout_seconds=0.2)
        assert pump.tick() == 0  # still leased: nobody else may send it yet
        pump.run_until(
            lambda: delivery(db, finished.delivery_id).state == DELIVERY_SUCCEEDED,
            what="the orphaned delivery to go out",
        )
        assert receiver.ids() == [finished.delivery_id]


def test_a_pump_process_killed_mid_send_leads_to_a_later_delivery_with_the_same_id(
    db: Database, db_url: str, redis_url: str, pump_for: Callable[..., DeliverPump]
) -> None:
    key = make_key(db)
    first_request_held = threading.Event()

    def script(n: int, _request: Received) -> Answer:
        return Answer(200, hold=first_request_held if n == 0 else None)

    with webhook_receiver(script) as receiver:
        finished = finish_job(db, key, receiver.url)
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "ARCHIVE_ALLOW_PRIVATE": "true",
            "WEBHOOK_TIMEOUT_SECONDS": "2",
            "LEASE_SECONDS": "1",
            "PUMP_OWNER": "doomed-worker",
            # the deliver pump alone: no archive pump runs to release a held webhook
            "ARCHIVE_WEBHOOK_WAIT_SECONDS": "0",
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.support.webhook_pump_child"], cwd=ROOT, env=env
        )
        try:
            wait_until(lambda: receiver.count() == 1, timeout=30, what="the first attempt")
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        first_request_held.set()

        row = delivery(db, finished.delivery_id)
        assert (row.state, row.lease_owner, row.attempts) == (DELIVERY_PENDING, "doomed-worker", 0)

        pump = pump_for()
        pump.run_until(
            lambda: delivery(db, finished.delivery_id).state == DELIVERY_SUCCEEDED,
            timeout=30,
            what="delivery after the lease expired",
        )
        assert receiver.ids() == [finished.delivery_id, finished.delivery_id]
    assert [a.succeeded for a in attempts(db, finished.delivery_id)] == [True]

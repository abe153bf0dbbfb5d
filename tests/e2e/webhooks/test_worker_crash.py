"""A real `mcjobs worker` SIGKILLed while a webhook is in flight: the delivery is not lost, it
arrives later from another worker under the same `webhook-id`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.db import Database
from core.nudge import DELIVER_TICK, nudge
from core.tables import DELIVERY_PENDING, DELIVERY_SUCCEEDED
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Answer, Received, webhook_receiver
from tests.support.webhook_rows import delivery, finish_job, make_key

ROOT = Path(__file__).resolve().parents[3]


@contextmanager
def worker(db_url: str, redis_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "METACHAT_BASE_URL": "http://127.0.0.1:9/open/v1",  # no upstream work in this test
        "METACHAT_API_KEY": "test-key",
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "ARCHIVE_ALLOW_PRIVATE": "true",
        "WEBHOOK_TIMEOUT_SECONDS": "2",
        "LEASE_SECONDS": "1",
        # no beat ticks the archive pump here: the webhook must not wait for it
        "ARCHIVE_WEBHOOK_WAIT_SECONDS": "0",
        "STORAGE_URL": str(log.parent / "files"),
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--concurrency", "1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the prefork child goes with it
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _nudged(redis_url: str, condition: Callable[[], bool]) -> bool:
    # No beat in this test: each check also sends the tick a beat would have sent.
    nudge(redis_url, DELIVER_TICK)
    return condition()


def test_a_sigkilled_worker_mid_delivery_leads_to_a_later_delivery_with_the_same_id(
    db: Database, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    key = make_key(db)
    first_request_held = threading.Event()

    def script(n: int, _request: Received) -> Answer:
        return Answer(200, hold=first_request_held if n == 0 else None)

    log = tmp_path / "workers.log"
    with webhook_receiver(script) as receiver:
        finished = finish_job(db, key, receiver.url)
        try:
            with worker(db_url, redis_url, log) as doomed:
                wait_until(
                    lambda: _nudged(redis_url, lambda: receiver.count() == 1),
                    timeout=60,
                    interval=0.5,
                    what="the first worker to send the webhook",
                )
                os.killpg(doomed.pid, signal.SIGKILL)
                doomed.wait(timeout=10)
            first_request_held.set()

            row = delivery(db, finished.delivery_id)
            assert row.state == DELIVERY_PENDING and row.lease_owner is not None

            with worker(db_url, redis_url, log):
                wait_until(
                    lambda: _nudged(
                        redis_url,
                        lambda: delivery(db, finished.delivery_id).state == DELIVERY_SUCCEEDED,
                    ),
                    timeout=60,
                    interval=0.5,
                    what="the second worker to deliver once the lease ran out",
                )
        except Exception:
            print(log.read_text(errors="replace")[-4000:])
            raise
        assert receiver.ids() == [finished.delivery_id, finished.delivery_id]
    assert delivery(db, finished.delivery_id).attempts == 1

"""The deliver pump against real HTTP receivers on 127.0.0.1, on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from core.db import Database
from core.keys import rotate_webhook_secret
from core.settings import DEFAULT_WEBHOOK_SCHEDULE
from core.tables import (
    DELIVERY_DEAD,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    FAILED,
    utcnow,
)
from tests.support.webhook_pump import DeliverPump
from tests.support.webhook_receiver import Answer, Received, always, statuses, webhook_receiver
from tests.support.webhook_rows import attempts, delivery, finish_job, make_key

PumpFor = Callable[..., DeliverPump]


def _state(db: Database, delivery_id: str) -> str:
    return delivery(db, delivery_id).state


def test_a_delivery_arrives_signed_so_the_standard_library_verifies_it(
    db: Database, pump_for: PumpFor
) -> None:
    key = make_key(db)
    with webhook_receiver() as receiver:
        finished = finish_job(db, key, receiver.url)
        assert pump_for().tick() == 1

        [request] = receiver.received
        body = request.body.decode()
        assert body == delivery(db, finished.delivery_id).payload
        event = Webhook(key.webhook_secret).verify(body, request.headers)
        assert event["type"] == "job.succeeded"
        assert event["data"]["id"] == finished.job_id
        assert event["data"]["metadata"] == {"sku": "A-17"}
        assert request.webhook_id == finished.delivery_id
        assert request.headers["content-type"] == "application/json"

    row = delivery(db, finished.delivery_id)
    assert (row.state, row.attempts, row.last_status_code) == (DELIVERY_SUCCEEDED, 1, 200)
    assert row.delivered_at is not None
    [attempt] = attempts(db, finished.delivery_id)
    assert attempt.succeeded and attempt.status_code == 200 and attempt.response_excerpt == "ok"
    assert attempt.latency_ms is not None and attempt.latency_ms >= 0


def test_a_signature_made_with_another_secret_does_not_verify(
    db: Database, pump_for: PumpFor
) -> None:
    key, stranger = make_key(db, "owner"), make_key(db, "stranger")
    with webhook_receiver() as receiver:
        finish_job(db, key, receiver.url)
        pump_for().tick()
        [request] = receiver.received
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger.webhook_secret).verify(request.body.decode(), request.headers)


def test_after_a_secret_rotation_both_the_new_and_the_previous_secret_verify(
    db: Database, pump_for: PumpFor
) -> None:
    key = make_key(db)
    with db.session() as session:
        new_secret = rotate_webhook_secret(session, key.id)
    assert new_secret is not None
    with webhook_receiver() as receiver:
        finish_job(db, key, receiver.url)
        pump_for().tick()
        [request] = receiver.received
    for secret in (new_secret, key.webhook_secret):
        Webhook(secret).verify(request.body.decode(), request.headers)
    assert len(request.headers["webhook-signature"].split(" ")) == 2


def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt_with_the_same_id(
    db: Database, pump_for: PumpFor
) -> None:
    key = make_key(db)
    with webhook_receiver(statuses(500, 503)) as receiver:
        finished = finish_job(db, key, receiver.url)
        pump_for().run_until(
            lambda: _state(db, finished.delivery_id) == DELIVERY_SUCCEEDED, what="delivered"
        )
        assert receiver.ids() == [finished.delivery_id] * 3
        for request in receiver.received:
            Webhook(key.webhook_secret).verify(request.body.decode(), request.headers)
        assert len({request.body for request in receiver.received}) == 1

    row = delivery(db, finished.delivery_id)
    assert (row.attempts, row.last_status_code, row.last_error) == (3, 200, None)
    log = attempts(db, finished.delivery_id)
    assert [(a.status_code, a.succeeded) for a in log] == [(500, False), (503, False), (200, True)]
    assert log[0].error == "HTTP 500"


def test_a_receiver_that_never_accepts_ends_dead_after_the_whole_schedule(
    db: Database, pump_for: PumpFor
) -> None:
    key = make_key(db)
    with webhook_receiver(always(500)) as receiver:
        finished = finish_job(db, key, receiver.url, status=FAILED)
        pump = pump_for()
        pump.run_until(lambda: _state(db, finished.delivery_id) == DELIVERY_DEAD, what="dead")
        expected = len(DEFAULT_WEBHOOK_SCHEDULE) + 1
        assert receiver.ids() == [finished.delivery_id] * expected
        assert pump.tick() == 0
        assert receiver.count() == expected

    row = delivery(db, finished.delivery_id)
    assert (row.attempts, row.last_status_code, row.due_at) == (expected, 500, None)
    assert len(attempts(db, finished.delivery_id)) == expected


def test_a_redirect_is_not_followed_and_counts_as_a_failed_attempt(
    db: Database, pump_for: PumpFor
) -> None:
    key = make_key(db)
    with webhook_receiver() as elsewhere:
        with webhook_receiver(always(302, Location=elsewhere.url)) as receiver:
            finished = finish_job(db, key, receiver.url)
            pump_for(webhook_time_scale=1.0).tick()
            assert receiver.count() == 1
        assert elsewhere.count() == 0

    row = delivery(db, finished.delivery_id)
    assert (row.state, row.attempts, row.last_status_code) == (DELIVERY_PENDING, 1, 302)
    assert row.last_error is not None and "redirect" in row.last_error
    assert row.due_at is not None and row.due_at > utcnow()


def test_410_gone_stops_the_retries_at_once(db: Database, pump_for: PumpFor) -> None:
    key = make_key(db)
    with webhook_receiver(always(410)) as receiver:
        finished = finish_job(db, key, receiver.url)
        pump = pump_for()
        pump.tick()
        assert pump.tick() == 0
        assert receiver.count() == 1
    row = delivery(db, finished.delivery_id)
    assert (row.state, row.attempts, row.last_status_code) == (DELIVERY_DEAD, 1, 410)


def test_retry_after_from_the_receiver_lengthens_the_wait(db: Database, pump_for: PumpFor) -> None:
    key = make_key(db)
    with webhook_receiver(always(429, **{"Retry-After": "120"})) as receiver:
        finished = finish_job(db, key, receiver.url)
        before = utcnow()
        pump = pump_for()
        pump.tick()
        assert pump.tick() == 0
        assert receiver.count() == 1
    row = delivery(db, finished.delivery_id)
    assert row.state == DELIVERY_PENDING and row.due_at is not None
    assert row.due_at >= before + dt.timedelta(seconds=119)


def test_a_slow_receiver_is_cut_off_at_the_timeout_and_tried_again(
    db: Database, pump_for: PumpFor
) -> None:
    key = make_key(db)
    release = threading.Event()

    def script(n: int, _request: Received) -> Answer:
        return Answer(200, hold=release if n == 0 else None)

    with webhook_receiver(script) as receiver:
        finished = finish_job(db, key, receiver.url)
        pump = pump_for(webhook_timeout_seconds=0.5)
        pump.tick()
        release.set()
        row = delivery(db, finished.delivery_id)
        assert (row.state, row.attempts, row.last_status_code) == (DELIVERY_PENDING, 1, None)
        assert row.last_error is not None and "timed out" in row.last_error
        pump.run_until(
            lambda: _state(db, finished.delivery_id) == DELIVERY_SUCCEEDED, what="delivered"
        )
        assert set(receiver.ids()) == {finished.delivery_id}


def test_the_body_read_from_a_chatty_receiver_is_capped(db: Database, pump_for: PumpFor) -> None:
    key = make_key(db)
    with webhook_receiver(lambda _n, _r: Answer(200, body=b"x" * 1_000_000)) as receiver:
        finished = finish_job(db, key, receiver.url)
        pump_for().tick()
    [attempt] = attempts(db, finished.delivery_id)
    assert attempt.succeeded
    assert attempt.response_excerpt is not None and len(attempt.response_excerpt) <= 2048


def test_deliveries_of_many_jobs_go_out_concurrently_each_under_its_own_id(
    db: Database, pump_for: PumpFor
) -> None:
    key = make_key(db)
    with webhook_receiver() as receiver:
        finished = [finish_job(db, key, receiver.url) for _ in range(12)]
        assert pump_for().tick() == 12
        assert sorted(receiver.ids()) == sorted(f.delivery_id for f in finished)
    bodies = [json.loads(r.body) for r in receiver.received]
    assert {b["data"]["id"] for b in bodies} == {f.job_id for f in finished}

"""`/v1/webhooks/deliveries`: the delivery log and redelivery, per tenant, on PostgreSQL and
SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from core import ids
from core.db import Database
from core.keys import CreatedKey
from core.settings import Settings
from core.tables import DELIVERY_DEAD, DELIVERY_SUCCEEDED, Batch
from tests.support.webhook_api import served_api
from tests.support.webhook_pump import DeliverPump
from tests.support.webhook_receiver import always, statuses, webhook_receiver
from tests.support.webhook_rows import delivery, finish_job, make_key, set_state

PumpFor = Callable[..., DeliverPump]
DEAD_URL = "http://127.0.0.1:9/hook"  # the discard port: nothing answers


@pytest.fixture
def client(
    db: Database, db_url: str, settings_for: Callable[..., Settings]
) -> Iterator[httpx.Client]:
    with (
        served_api(settings_for(db_url), db) as base_url,
        httpx.Client(base_url=base_url, trust_env=False) as http,
    ):
        yield http


def _auth(key: CreatedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.api_key}"}


def test_the_log_lists_a_keys_deliveries_with_their_attempts(
    db: Database, client: httpx.Client, pump_for: PumpFor
) -> None:
    key = make_key(db)
    with webhook_receiver(statuses(500)) as receiver:
        finished = finish_job(db, key, receiver.url)
        pump_for().run_until(
            lambda: delivery(db, finished.delivery_id).state == DELIVERY_SUCCEEDED, what="sent"
        )
    response = client.get("/v1/webhooks/deliveries", headers=_auth(key))
    assert response.status_code == 200
    page = response.json()
    assert page["next_cursor"] is None
    [row] = page["data"]
    assert row["id"] == finished.delivery_id
    assert (row["type"], row["job_id"], row["state"], row["attempts"]) == (
        "job.succeeded",
        finished.job_id,
        "succeeded",
        2,
    )
    assert row["url"] == receiver.url and row["delivered_at"] and row["next_attempt_at"] is None
    log = row["attempt_log"]
    assert [(a["status_code"], a["succeeded"]) for a in log] == [(500, False), (200, True)]
    assert log[0]["error"] == "HTTP 500" and log[1]["response_excerpt"] == "ok"
    assert all(a["latency_ms"] is not None and a["at"].endswith("Z") for a in log)


def test_a_key_never_sees_another_keys_deliveries_but_an_admin_sees_all(
    db: Database, client: httpx.Client
) -> None:
    alice, bob, admin = make_key(db, "alice"), make_key(db, "bob"), make_key(db, "ops", admin=True)
    mine = finish_job(db, alice, DEAD_URL)
    theirs = finish_job(db, bob, DEAD_URL)

    def listed(key: CreatedKey, **params: str) -> list[str]:
        response = client.get("/v1/webhooks/deliveries", headers=_auth(key), params=params)
        assert response.status_code == 200
        return [row["id"] for row in response.json()["data"]]

    assert listed(alice) == [mine.delivery_id]
    assert listed(bob) == [theirs.delivery_id]
    assert listed(alice, job_id=theirs.job_id) == []
    assert sorted(listed(admin)) == sorted([mine.delivery_id, theirs.delivery_id])


def test_filters_narrow_by_job_batch_and_state(db: Database, client: httpx.Client) -> None:
    key = make_key(db)
    batch_id = ids.new_id(ids.BATCH)
    with db.session() as session:
        session.add(Batch(id=batch_id, api_key_id=key.id, total=1))
    in_batch = finish_job(db, key, DEAD_URL, batch_id=batch_id)
    alone = finish_job(db, key, DEAD_URL)
    set_state(db, alone.delivery_id, DELIVERY_DEAD)

    def listed(**params: str) -> list[str]:
        response = client.get("/v1/webhooks/deliveries", headers=_auth(key), params=params)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["data"]]

    assert listed(batch_id=batch_id) == [in_batch.delivery_id]
    assert listed(job_id=alone.job_id) == [alone.delivery_id]
    assert listed(state="dead") == [alone.delivery_id]
    assert listed(state="pending") == [in_batch.delivery_id]
    assert listed(state="succeeded") == []


def test_the_log_pages_with_a_cursor_newest_first_without_gaps_or_repeats(
    db: Database, client: httpx.Client
) -> None:
    key = make_key(db)
    made = [finish_job(db, key, DEAD_URL).delivery_id for _ in range(5)]
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    pages = 0
    while True:
        response = client.get("/v1/webhooks/deliveries", headers=_auth(key), params=params)
        assert response.status_code == 200
        page = response.json()
        pages += 1
        seen.extend(row["id"] for row in page["data"])
        if page["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": page["next_cursor"]}
    assert seen == sorted(made, reverse=True)
    assert pages == 3


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"state": "lost"}, ["query", "state"], id="unknown-state"),
        pytest.param({"limit": "0"}, ["query", "limit"], id="limit-too-small"),
        pytest.param({"limit": "501"}, ["query", "limit"], id="limit-too-large"),
        pytest.param({"cursor": "not-a-cursor"}, ["query", "cursor"], id="bad-cursor"),
    ],
)
def test_bad_list_parameters_answer_422_naming_the_parameter(
    db: Database, client: httpx.Client, params: dict[str, str], loc: list[str]
) -> None:
    key = make_key(db)
    response = client.get("/v1/webhooks/deliveries", headers=_auth(key), params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert loc in [error["loc"] for error in response.json()["errors"]]


def test_the_routes_need_an_api_key(client: httpx.Client) -> None:
    assert client.get("/v1/webhooks/deliveries").status_code == 401
    assert client.post("/v1/webhooks/deliveries/msg_x/redeliver").status_code == 401


def test_redelivering_a_dead_delivery_sends_it_again_under_the_same_id(
    db: Database, client: httpx.Client, pump_for: PumpFor
) -> None:
    key = make_key(db)
    with webhook_receiver(always(410)) as receiver:
        finished = finish_job(db, key, receiver.url)
        pump = pump_for()
        pump.run_until(lambda: delivery(db, finished.delivery_id).state == DELIVERY_DEAD)
        receiver.script = always(200)

        response = client.post(
            f"/v1/webhooks/deliveries/{finished.delivery_id}/redeliver", headers=_auth(key)
        )
        assert response.status_code == 202
        body = response.json()
        assert (body["id"], body["state"], body["attempts"]) == (
            finished.delivery_id,
            "pending",
            0,
        )
        assert body["next_attempt_at"] is not None
        assert len(body["attempt_log"]) == 1

        pump.run_until(lambda: delivery(db, finished.delivery_id).state == DELIVERY_SUCCEEDED)
        assert receiver.ids() == [finished.delivery_id, finished.delivery_id]


def test_redelivering_another_keys_delivery_answers_404_and_changes_nothing(
    db: Database, client: httpx.Client
) -> None:
    owner, stranger = make_key(db, "owner"), make_key(db, "stranger")
    finished = finish_job(db, owner, DEAD_URL)
    set_state(db, finished.delivery_id, DELIVERY_DEAD)
    for delivery_id in (finished.delivery_id, "msg_doesnotexist"):
        response = client.post(
            f"/v1/webhooks/deliveries/{delivery_id}/redeliver", headers=_auth(stranger)
        )
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
    assert delivery(db, finished.delivery_id).state == DELIVERY_DEAD

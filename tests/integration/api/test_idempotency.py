"""`Idempotency-Key`: the same key and body answer the first response; nothing new is made."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from core.db import Database
from core.tables import Batch, IdempotencyKey, Job
from tests.support.api_client import ApiClient, ApiClients
from tests.support.api_data import count, flux_spec
from tests.support.waiting import wait_until

ROUTES = [
    pytest.param("/v1/jobs", flux_spec(), Job, id="job"),
    pytest.param("/v1/batches", {"jobs": [flux_spec(0), flux_spec(1)]}, Batch, id="batch"),
]


@pytest.mark.parametrize(("path", "body", "table"), ROUTES)
def test_a_repeated_request_gets_the_original_response(
    alice: ApiClient, db: Database, path: str, body: dict[str, Any], table: type[Job | Batch]
) -> None:
    first = alice.post(path, json=body, headers={"Idempotency-Key": "k-1"})
    again = alice.post(path, json=body, headers={"Idempotency-Key": "k-1"})

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert count(db, table) == 1


@pytest.mark.parametrize(("path", "body", "table"), ROUTES)
def test_the_same_key_with_another_body_conflicts(
    alice: ApiClient, db: Database, path: str, body: dict[str, Any], table: type[Job | Batch]
) -> None:
    alice.post(path, json=body, headers={"Idempotency-Key": "k-1"})
    changed = {**body, "metadata": {"changed": True}}

    response = alice.post(path, json=changed, headers={"Idempotency-Key": "k-1"})

    assert response.status_code == 409
    assert count(db, table) == 1


def test_a_key_used_for_a_job_cannot_make_a_batch(alice: ApiClient) -> None:
    alice.post("/v1/jobs", json=flux_spec(), headers={"Idempotency-Key": "k-1"})

    response = alice.post(
        "/v1/batches", json={"jobs": [flux_spec()]}, headers={"Idempotency-Key": "k-1"}
    )

    assert response.status_code == 409


def test_keys_belong_to_one_api_key(alice: ApiClient, bob: ApiClient, db: Database) -> None:
    mine = alice.post("/v1/jobs", json=flux_spec(), headers={"Idempotency-Key": "shared"})
    theirs = bob.post("/v1/jobs", json=flux_spec(), headers={"Idempotency-Key": "shared"})

    assert mine.json()["id"] != theirs.json()["id"]
    assert count(db, Job) == 2


def test_a_refused_request_does_not_use_up_the_key(alice: ApiClient, db: Database) -> None:
    bad = alice.post(
        "/v1/jobs", json=flux_spec(params={"num": 9}), headers={"Idempotency-Key": "k-1"}
    )
    good = alice.post("/v1/jobs", json=flux_spec(), headers={"Idempotency-Key": "k-1"})

    assert (bad.status_code, good.status_code) == (422, 202)
    assert count(db, IdempotencyKey) == 1


def test_an_expired_key_starts_afresh(
    clients_with: Callable[..., ApiClients], db: Database
) -> None:
    client = clients_with(idempotency_ttl_hours=1e-9).new("forgetful")

    first = client.post("/v1/jobs", json=flux_spec(), headers={"Idempotency-Key": "k-1"})
    later = client.post("/v1/jobs", json=flux_spec(), headers={"Idempotency-Key": "k-1"})

    assert first.json()["id"] != later.json()["id"]
    assert count(db, Job) == 2
    assert count(db, IdempotencyKey) == 1


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_an_unusable_key_is_invalid(alice: ApiClient, key: str) -> None:
    response = alice.post("/v1/jobs", json=flux_spec(), headers={"Idempotency-Key": key})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def _lock_waiters(pg_url: str) -> int:
    engine = create_engine(pg_url)
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    engine.dispose()
    return int(waiting)


@pytest.mark.parametrize(("path", "body", "table"), ROUTES)
def test_two_identical_requests_at_once_create_one_thing(
    pg_url: str,
    settings_for: Callable[..., Any],
    path: str,
    body: dict[str, Any],
    table: type[Job | Batch],
) -> None:
    """Both requests are held inside their transactions at the same time (the first behind a
    table lock the test holds, the second behind the first's key row), then let go."""
    from api.app import create_app
    from tests.support.api_client import api_clients

    db = Database(pg_url)
    app = create_app(settings_for(pg_url), db)
    blocker = create_engine(pg_url)
    responses: list[httpx.Response] = []
    with api_clients(app, db) as clients:
        client = clients.new("racer")
        with blocker.connect() as lock:
            lock.execute(text("LOCK TABLE jobs IN SHARE MODE"))

            def send() -> None:
                responses.append(client.post(path, json=body, headers={"Idempotency-Key": "r"}))

            threads = [threading.Thread(target=send) for _ in range(2)]
            for thread in threads:
                thread.start()
            wait_until(lambda: _lock_waiters(pg_url) >= 2, timeout=20, what="both waiting")
            lock.rollback()
        for thread in threads:
            thread.join(30)
    blocker.dispose()

    assert [r.status_code for r in responses] == [202, 202]
    assert responses[0].json() == responses[1].json()
    assert sorted(r.headers.get("idempotent-replayed", "no") for r in responses) == ["no", "true"]
    assert count(db, table) == 1
    db.dispose()

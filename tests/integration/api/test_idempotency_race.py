"""Exactly one job or batch per `Idempotency-Key`, whatever the timing: twenty identical requests
sent at the same instant to a real `mcjobs api` process over HTTP, trial after trial.

Each racer has its own connection, opened beforehand, and all of them wait at a barrier, so the
requests really overlap inside the server (its routes' transactions run in parallel threads).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from core.db import Database
from core.tables import Batch, IdempotencyKey, Job, utcnow
from tests.support.api_data import count, flux_spec
from tests.support.api_process import ApiProcess, api_process

RACERS = 20
TRIALS = {"postgresql": 15, "sqlite": 5}

ROUTES = [
    pytest.param("/v1/jobs", flux_spec(), id="job"),
    pytest.param("/v1/batches", {"jobs": [flux_spec(0), flux_spec(1)]}, id="batch"),
]


@pytest.fixture
def server(db: Database, redis_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    with api_process(db.url, redis_url, tmp_path) as running:
        yield running


def _race(server: ApiProcess, api_key: str, path: str, body: Any, key: str) -> list[httpx.Response]:
    clients = [
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
        )
        for _ in range(RACERS)
    ]
    for client in clients:
        client.get("/healthz")  # the connection is open before the race starts
    barrier = threading.Barrier(RACERS)
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def run(client: httpx.Client) -> None:
        barrier.wait(timeout=30)
        response = client.post(path, json=body, headers={"Idempotency-Key": key})
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=run, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for client in clients:
        client.close()
    return responses


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_twenty_identical_requests_at_once_create_exactly_one(
    server: ApiProcess, db: Database, db_url: str, path: str, body: dict[str, Any]
) -> None:
    api_key = server.new_key(db)
    trials = TRIALS["sqlite" if db.sqlite else "postgresql"]
    jobs_per_request = len(body["jobs"]) if "jobs" in body else 1

    for trial in range(trials):
        responses = _race(server, api_key, path, body, key=f"race-{trial}")

        assert len(responses) == RACERS
        assert {r.status_code for r in responses} == {202}, [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        fresh = [r for r in responses if r.headers.get("idempotent-replayed") != "true"]
        assert len(fresh) == 1
        assert count(db, Job) == (trial + 1) * jobs_per_request, f"trial {trial}"
        if path == "/v1/batches":
            assert count(db, Batch) == trial + 1, f"trial {trial}"


def test_an_expired_key_is_taken_over_by_exactly_one_of_twenty(
    server: ApiProcess, db: Database
) -> None:
    api_key = server.new_key(db)
    [first] = {r.json()["id"] for r in _race(server, api_key, "/v1/jobs", flux_spec(), "old")}
    with db.session() as session:  # the key's day is over
        session.execute(update(IdempotencyKey).values(created_at=utcnow() - dt.timedelta(hours=25)))

    responses = _race(server, api_key, "/v1/jobs", flux_spec(), key="old")

    assert {r.status_code for r in responses} == {202}
    [second] = {r.json()["id"] for r in responses}
    assert second != first
    assert len([r for r in responses if r.headers.get("idempotent-replayed") != "true"]) == 1
    assert count(db, Job) == 2
    assert count(db, IdempotencyKey) == 1

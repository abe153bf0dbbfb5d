"""Lists: keyset pages that never skip or repeat a row, filters, and refusals of bad values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from core.db import Database
from tests.support.api_client import ApiClient
from tests.support.api_data import finish_job, flux_spec, mj_spec


def _all_pages(client: ApiClient, path: str, **params: Any) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = client.get(path, params=query).json()
        pages += 1
        ids.extend(item["id"] for item in body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages


def test_pages_cover_every_job_once_newest_first(alice: ApiClient) -> None:
    made = [alice.post("/v1/jobs", json=flux_spec(n)).json()["id"] for n in range(4)]
    batch = alice.post("/v1/batches", json={"jobs": [flux_spec(n) for n in range(5)]}).json()
    in_batch = [j["id"] for j in alice.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]]

    ids, pages = _all_pages(alice, "/v1/jobs", limit=3)

    assert ids == list(reversed(made + in_batch))
    assert pages == 3


def test_a_batchs_jobs_page_in_submission_order(alice: ApiClient) -> None:
    batch = alice.post("/v1/batches", json={"jobs": [flux_spec(n) for n in range(7)]}).json()

    ids, _ = _all_pages(alice, f"/v1/batches/{batch['id']}/jobs", limit=2)
    newest_first, _ = _all_pages(alice, f"/v1/batches/{batch['id']}/jobs", limit=2, order="desc")

    assert len(ids) == 7
    assert ids == sorted(ids)
    assert newest_first == list(reversed(ids))


def test_filters_narrow_the_list(alice: ApiClient, db: Database) -> None:
    flux = alice.post("/v1/jobs", json=flux_spec()).json()
    grid = alice.post("/v1/jobs", json=mj_spec()).json()
    batch = alice.post("/v1/batches", json={"jobs": [mj_spec()]}).json()
    finish_job(db, grid["id"], "failed")

    def ids(**params: Any) -> set[str]:
        return {job["id"] for job in alice.get("/v1/jobs", params=params).json()["data"]}

    in_batch = ids(batch_id=batch["id"])
    assert ids(provider="flux") == {flux["id"]}
    assert ids(model="mj-v7") == {grid["id"]} | in_batch
    assert ids(status="failed") == {grid["id"]}
    assert ids(status=["failed", "queued"]) == {flux["id"], grid["id"]} | in_batch
    assert len(in_batch) == 1
    created = dt.datetime.fromisoformat(grid["created_at"])
    assert ids(created_before=grid["created_at"]) == {flux["id"]}
    assert ids(created_after=grid["created_at"]) == in_batch
    naive_later = (created + dt.timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert ids(created_after=naive_later) == set()


def test_batches_are_listed_with_their_counts(alice: ApiClient, db: Database) -> None:
    first = alice.post("/v1/batches", json={"jobs": [flux_spec(0), flux_spec(1)]}).json()
    second = alice.post("/v1/batches", json={"jobs": [flux_spec(2)]}).json()
    job = alice.get(f"/v1/batches/{first['id']}/jobs").json()["data"][0]
    finish_job(db, job["id"], "succeeded", values={"cost_points": 12})

    listed = alice.get("/v1/batches").json()["data"]

    assert [b["id"] for b in listed] == [second["id"], first["id"]]
    assert listed[1]["counts"]["succeeded"] == 1
    assert listed[1]["counts"]["queued"] == 1
    assert listed[1]["cost_points"] == 12


def test_events_page_in_order(alice: ApiClient, db: Database) -> None:
    job = alice.post("/v1/jobs", json=flux_spec()).json()
    finish_job(db, job["id"], "succeeded")

    first = alice.get(f"/v1/jobs/{job['id']}/events", params={"limit": 2}).json()
    rest = alice.get(f"/v1/jobs/{job['id']}/events", params={"cursor": first["next_cursor"]}).json()

    steps = [event["to"] for event in first["data"] + rest["data"]]
    assert steps == ["queued", "running", "succeeded"]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"status": "exploded"}, ["query", "status", 0], id="unknown-status"),
        pytest.param({"provider": "dalle"}, ["query", "provider"], id="unknown-provider"),
        pytest.param({"limit": 0}, ["query", "limit"], id="limit-zero"),
        pytest.param({"limit": 501}, ["query", "limit"], id="limit-over-500"),
        pytest.param({"cursor": "bm90LWEtY3Vyc29y"}, ["query", "cursor"], id="made-up-cursor"),
        pytest.param({"created_after": "yesterday"}, ["query", "created_after"], id="bad-time"),
        pytest.param({"model": "a\x00b"}, ["query", "model"], id="nul-in-model"),
        pytest.param({"order": "sideways"}, ["query", "order"], id="unknown-order"),
        pytest.param({"stauts": "failed"}, ["query", "stauts"], id="unknown-parameter"),
        pytest.param({"created_after": "0.5"}, ["query", "created_after"], id="unix-time"),
    ],
)
def test_bad_list_parameters_are_refused(
    alice: ApiClient, params: dict[str, Any], loc: list[Any]
) -> None:
    response = alice.get("/v1/jobs", params=params)

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == loc


def test_a_cursor_of_one_order_is_refused_in_the_other(alice: ApiClient) -> None:
    for n in range(3):
        alice.post("/v1/jobs", json=flux_spec(n))
    cursor = alice.get("/v1/jobs", params={"limit": 1}).json()["next_cursor"]

    response = alice.get("/v1/jobs", params={"limit": 1, "cursor": cursor, "order": "asc"})

    assert response.status_code == 422

"""`POST /v1/batches`: all specs accepted together or none; defaults and webhooks flow down."""

from __future__ import annotations

from typing import Any

import pytest

from core.db import Database
from core.tables import Batch, Job
from tests.support.api_client import ApiClient
from tests.support.api_data import count, flux_spec, mj_spec


def _jobs_of(client: ApiClient, batch_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/v1/batches/{batch_id}/jobs", params={"limit": 500}).json()
    return list(page["data"])


def test_a_batch_is_queued_whole_in_submission_order(alice: ApiClient) -> None:
    specs = [flux_spec(n, metadata={"row": n}) for n in range(5)]

    response = alice.post("/v1/batches", json={"jobs": specs})

    assert response.status_code == 202
    batch = response.json()
    assert batch["id"].startswith("bat_")
    assert (batch["status"], batch["total"]) == ("running", 5)
    assert batch["counts"]["queued"] == 5
    jobs = _jobs_of(alice, batch["id"])
    assert [job["metadata"]["row"] for job in jobs] == [0, 1, 2, 3, 4]
    assert {job["batch_id"] for job in jobs} == {batch["id"]}
    assert alice.get(f"/v1/batches/{batch['id']}").json() == batch


def test_one_bad_spec_refuses_the_whole_batch_naming_its_index(
    alice: ApiClient, db: Database
) -> None:
    specs: list[dict[str, Any]] = [mj_spec() for _ in range(20)]
    specs[17]["params"] = {"aspect": "sideways"}

    response = alice.post("/v1/batches", json={"jobs": specs})

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["jobs", 17, "params", "aspect"]]
    assert count(db, Job) == 0
    assert count(db, Batch) == 0


def test_a_shape_error_also_names_the_index(alice: ApiClient, db: Database) -> None:
    specs: list[dict[str, Any]] = [mj_spec() for _ in range(3)]
    specs[2]["priority"] = "high"

    response = alice.post("/v1/batches", json={"jobs": specs})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["jobs", 2, "priority"]
    assert count(db, Job) == 0


def test_defaults_fill_what_a_spec_leaves_out(alice: ApiClient) -> None:
    body = {
        "defaults": {
            "model": "mj-v7",
            "params": {"aspect": "16:9", "stylize": 200},
            "metadata": {"campaign": "spring"},
            "priority": 5,
        },
        "jobs": [
            {"prompt": "plain"},
            {"prompt": "own", "params": {"stylize": 50}, "metadata": {"sku": "B-2"}, "priority": 1},
            {"prompt": "other model", "model": "niji-6"},
        ],
    }

    batch = alice.post("/v1/batches", json=body).json()

    plain, own, other = _jobs_of(alice, batch["id"])
    assert (plain["model"], plain["params"], plain["priority"]) == (
        "mj-v7",
        {"aspect": "16:9", "stylize": 200},
        5,
    )
    assert own["params"] == {"aspect": "16:9", "stylize": 50}
    assert own["metadata"] == {"campaign": "spring", "sku": "B-2"}
    assert own["priority"] == 1
    assert other["model"] == "niji-6"


def test_jobs_without_a_webhook_get_the_batchs(alice: ApiClient) -> None:
    body = {
        "webhook_url": "http://127.0.0.1:9/batch",
        "jobs": [flux_spec(0), flux_spec(1, webhook_url="http://127.0.0.1:9/own")],
    }

    batch = alice.post("/v1/batches", json=body).json()

    assert batch["webhook_url"] == "http://127.0.0.1:9/batch"
    assert [job["webhook_url"] for job in _jobs_of(alice, batch["id"])] == [
        "http://127.0.0.1:9/batch",
        "http://127.0.0.1:9/own",
    ]


def test_the_batch_keeps_its_own_metadata_and_budget(alice: ApiClient) -> None:
    body = {"jobs": [flux_spec()], "metadata": {"run": 7}, "max_points": 1000}

    batch = alice.post("/v1/batches", json=body).json()

    assert (batch["metadata"], batch["max_points"]) == ({"run": 7}, 1000)
    assert _jobs_of(alice, batch["id"])[0]["metadata"] == {}


def test_more_jobs_than_allowed_is_too_large(clients_with: Any, db: Database) -> None:
    client = clients_with(max_batch_jobs=3).new("bulk")

    response = client.post("/v1/batches", json={"jobs": [flux_spec(n) for n in range(4)]})

    assert response.status_code == 413
    assert count(db, Job) == 0


def test_an_empty_batch_is_invalid(alice: ApiClient) -> None:
    response = alice.post("/v1/batches", json={"jobs": []})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["jobs"]


def test_a_body_over_the_byte_limit_is_refused_before_it_is_parsed(
    clients_with: Any, db: Database
) -> None:
    client = clients_with(max_request_bytes=4096).new("bulk")
    specs = [flux_spec(n) for n in range(100)]

    response = client.post("/v1/batches", json={"jobs": specs})

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert count(db, Job) == 0


@pytest.mark.parametrize(
    ("field", "value", "loc"),
    [
        pytest.param("webhook_url", "gopher://x.test", ["webhook_url"], id="batch-webhook"),
        pytest.param("metadata", {"b": "x" * 17_000}, ["metadata"], id="batch-metadata"),
        pytest.param("max_points", -1, ["max_points"], id="negative-budget"),
    ],
)
def test_bad_batch_fields_are_refused(
    alice: ApiClient, db: Database, field: str, value: Any, loc: list[Any]
) -> None:
    response = alice.post("/v1/batches", json={"jobs": [flux_spec()], field: value})

    assert response.status_code == 422
    assert loc in [e["loc"] for e in response.json()["errors"]]
    assert count(db, Batch) == 0

"""Tenant isolation: a key sees only its own jobs and batches; another key's id is a 404."""

from __future__ import annotations

import pytest

from tests.support.api_client import ApiClient
from tests.support.api_data import flux_spec

ROUTES_BY_ID = [
    pytest.param("GET", "/v1/jobs/{job}", id="get-job"),
    pytest.param("GET", "/v1/jobs/{job}/events", id="job-events"),
    pytest.param("POST", "/v1/jobs/{job}/cancel", id="cancel-job"),
    pytest.param("GET", "/v1/batches/{batch}", id="get-batch"),
    pytest.param("GET", "/v1/batches/{batch}/jobs", id="batch-jobs"),
    pytest.param("POST", "/v1/batches/{batch}/cancel", id="cancel-batch"),
    pytest.param("POST", "/v1/batches/{batch}/retry", id="retry-batch"),
]


@pytest.fixture
def alices(alice: ApiClient) -> dict[str, str]:
    job = alice.post("/v1/jobs", json=flux_spec()).json()
    batch = alice.post("/v1/batches", json={"jobs": [flux_spec()]}).json()
    return {"job": job["id"], "batch": batch["id"]}


@pytest.mark.parametrize(("method", "template"), ROUTES_BY_ID)
def test_another_keys_ids_are_not_found(
    alice: ApiClient, bob: ApiClient, alices: dict[str, str], method: str, template: str
) -> None:
    response = bob.request(method, template.format(**alices))

    assert response.status_code == 404
    assert response.json()["status"] == 404
    assert alice.get(f"/v1/jobs/{alices['job']}").json()["status"] == "queued"


@pytest.mark.parametrize(("method", "template"), ROUTES_BY_ID)
def test_an_admin_key_reaches_every_id(
    admin: ApiClient, alices: dict[str, str], method: str, template: str
) -> None:
    response = admin.request(method, template.format(**alices))

    assert response.status_code in (200, 202)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_id_that_cannot_exist_is_not_found(alice: ApiClient, method: str) -> None:
    path = "/v1/jobs/%2e%2e%00/cancel" if method == "POST" else "/v1/jobs/no such job"

    assert alice.request(method, path).status_code == 404


def test_lists_show_only_the_callers_rows(
    alice: ApiClient, bob: ApiClient, admin: ApiClient, alices: dict[str, str]
) -> None:
    bobs = bob.post("/v1/jobs", json=flux_spec()).json()["id"]

    assert [j["id"] for j in bob.get("/v1/jobs").json()["data"]] == [bobs]
    assert bob.get("/v1/batches").json()["data"] == []
    assert bob.get("/v1/jobs", params={"batch_id": alices["batch"]}).json()["data"] == []
    everyone = {j["id"] for j in admin.get("/v1/jobs").json()["data"]}
    assert {bobs, alices["job"]} <= everyone
    assert [b["id"] for b in admin.get("/v1/batches").json()["data"]] == [alices["batch"]]

"""`POST /v1/jobs`: a valid spec is queued at once; a bad one is refused pointing at the field."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from core import nudge
from core.db import Database
from core.tables import Job
from tests.support.api_client import ApiClient, ApiClients
from tests.support.api_data import count, finish_job, flux_spec, mj_spec, start_job


def test_a_valid_spec_is_queued_and_readable(alice: ApiClient) -> None:
    response = alice.post("/v1/jobs", json=flux_spec(metadata={"sku": "A-17"}, priority=3))

    assert response.status_code == 202
    job = response.json()
    assert job["id"].startswith("job_")
    assert job["status"] == "queued"
    assert (job["provider"], job["model"], job["action"]) == ("flux", "flux-2-pro", "generate")
    assert job["metadata"] == {"sku": "A-17"}
    assert job["priority"] == 3
    assert alice.get(f"/v1/jobs/{job['id']}").json() == job


def test_the_catalogue_price_becomes_the_estimate(clients_with: Any) -> None:
    client = clients_with(metachat_catalogue_overrides={"prices": {"flux-2-pro": 7}}).new("a")

    job = client.post("/v1/jobs", json=flux_spec()).json()

    assert job["estimated_points"] == 7


def test_an_accepted_job_nudges_the_submit_pump(alice: ApiClient, redis_url: str) -> None:
    broker = redis.Redis.from_url(redis_url)

    alice.post("/v1/jobs", json=flux_spec())

    assert broker.llen(nudge.TICK_QUEUE) >= 1
    broker.close()


def test_the_first_event_says_the_job_was_submitted(alice: ApiClient) -> None:
    job = alice.post("/v1/jobs", json=flux_spec()).json()

    events = alice.get(f"/v1/jobs/{job['id']}/events").json()

    assert [(e["from"], e["to"], e["reason"]) for e in events["data"]] == [
        (None, "queued", "submitted")
    ]


BAD_SPECS = [
    pytest.param({"model": "dall-e-9", "prompt": "x"}, ["model"], id="unknown-model"),
    pytest.param({"prompt": "x"}, ["model"], id="no-model"),
    pytest.param(mj_spec(params={"aspect": "wide"}), ["params", "aspect"], id="bad-param-value"),
    pytest.param(mj_spec(params={"colour": "red"}), ["params", "colour"], id="unknown-param"),
    pytest.param(
        {"model": "grok-imagine-video-1.5-preview", "prompt": "waves"},
        ["images"],
        id="video-without-first-frame",
    ),
    pytest.param(mj_spec(prompt=None), ["prompt"], id="missing-prompt"),
    pytest.param(mj_spec(priority=11), ["priority"], id="priority-out-of-range"),
    pytest.param(mj_spec(deadline_seconds=0), ["deadline_seconds"], id="zero-deadline"),
    pytest.param(mj_spec(webhook_url="ftp://x.test/h"), ["webhook_url"], id="webhook-not-http"),
    pytest.param(mj_spec(metadata={"blob": "x" * 17_000}), ["metadata"], id="metadata-over-16-KiB"),
    pytest.param(mj_spec(prompt="a\x00b"), ["prompt"], id="nul-in-prompt"),
    pytest.param(mj_spec(colour="red"), ["colour"], id="unknown-field"),
    pytest.param(
        mj_spec(images=[{"url": "file:///etc/passwd"}]), ["images", 0, "url"], id="file-image"
    ),
    pytest.param(
        {"model": "gpt-image-1.5", "prompt": "x", "params": {"n": 11}},
        ["params", "n"],
        id="gpt-image-too-many",
    ),
    pytest.param(
        {"model": "gpt-image-1", "action": "edit", "prompt": "x"}, ["images"], id="edit-no-image"
    ),
    pytest.param({"model": "gpt-4.1"}, ["params", "messages"], id="chat-without-messages"),
]


@pytest.mark.parametrize(
    ("spec", "provider", "action"),
    [
        (
            {
                "model": "gpt-image-1.5",
                "prompt": "a paper crane",
                "params": {"size": "1024x1024", "quality": "high", "background": "opaque"},
            },
            "gpt-image",
            "generate",
        ),
        (
            {"model": "imagen-4.0-generate-001", "prompt": "a fox", "params": {"n": 2}},
            "google-image",
            "generate",
        ),
        (
            {
                "model": "claude-sonnet-4-5",
                "params": {"messages": [{"role": "user", "content": "hi"}]},
            },
            "chat",
            "chat",
        ),
    ],
    ids=["gpt-image", "imagen", "chat"],
)
def test_jobs_for_the_openai_compatible_host_are_queued(
    alice: ApiClient, spec: dict[str, Any], provider: str, action: str
) -> None:
    response = alice.post("/v1/jobs", json=spec)

    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["provider"], job["action"], job["status"]) == (provider, action, "queued")


@pytest.mark.parametrize(("spec", "loc"), BAD_SPECS)
def test_a_bad_spec_is_refused_pointing_at_the_field(
    alice: ApiClient, db: Database, spec: dict[str, Any], loc: list[Any]
) -> None:
    response = alice.post("/v1/jobs", json=spec)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert loc in [error["loc"] for error in response.json()["errors"]]
    assert count(db, Job) == 0


def test_a_body_that_is_not_json_is_a_problem(alice: ApiClient) -> None:
    response = alice.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["status"] == 422


def test_without_a_key_nothing_is_accepted(clients: ApiClients, db: Database) -> None:
    response = clients.call("POST", "/v1/jobs", json=flux_spec())

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert count(db, Job) == 0


def test_a_revoked_or_made_up_key_is_refused(clients: ApiClients) -> None:
    response = clients.call(
        "GET", "/v1/jobs", headers={"Authorization": "Bearer mcj_not-a-real-key"}
    )

    assert response.status_code == 401


class TestFollowUps:
    """Midjourney follow-ups take `source: {job_id, index}` and the source job's model."""

    def test_a_follow_up_of_a_finished_grid_takes_its_model(
        self, alice: ApiClient, db: Database
    ) -> None:
        grid = alice.post("/v1/jobs", json=mj_spec(model="mj-v61")).json()
        finish_job(db, grid["id"], "succeeded")

        response = alice.post(
            "/v1/jobs", json={"action": "split", "source": {"job_id": grid["id"], "index": 2}}
        )

        assert response.status_code == 202
        job = response.json()
        assert (job["model"], job["action"]) == ("mj-v61", "split")
        assert job["source"] == {"job_id": grid["id"], "index": 2}

    @pytest.mark.parametrize("status", ["queued", "running", "failed"])
    def test_a_follow_up_waits_for_its_source_to_succeed(
        self, alice: ApiClient, db: Database, status: str
    ) -> None:
        grid = alice.post("/v1/jobs", json=mj_spec()).json()
        if status == "running":
            start_job(db, grid["id"])
        elif status == "failed":
            finish_job(db, grid["id"], "failed")

        response = alice.post(
            "/v1/jobs", json={"action": "split", "source": {"job_id": grid["id"], "index": 1}}
        )

        assert response.status_code == 409
        assert response.json()["errors"][0]["loc"] == ["source", "job_id"]

    def test_another_keys_job_cannot_be_a_source(
        self, alice: ApiClient, bob: ApiClient, db: Database
    ) -> None:
        grid = bob.post("/v1/jobs", json=mj_spec()).json()
        finish_job(db, grid["id"], "succeeded")

        response = alice.post(
            "/v1/jobs", json={"action": "split", "source": {"job_id": grid["id"], "index": 1}}
        )

        assert response.status_code == 404

    def test_a_split_needs_a_tile_index(self, alice: ApiClient, db: Database) -> None:
        grid = alice.post("/v1/jobs", json=mj_spec()).json()
        finish_job(db, grid["id"], "succeeded")

        response = alice.post(
            "/v1/jobs", json={"action": "split", "source": {"job_id": grid["id"]}}
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["source", "index"]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:8080/hook", id="loopback"),
        pytest.param("http://10.1.2.3/hook", id="private"),
        pytest.param("http://169.254.169.254/latest", id="link-local-metadata"),
    ],
)
def test_private_webhook_destinations_are_refused_unless_allowed(
    clients_with: Any, db: Database, url: str
) -> None:
    strict = clients_with(webhook_allow_private=False).new("strict")

    response = strict.post("/v1/jobs", json=flux_spec(webhook_url=url))
    batch = strict.post("/v1/batches", json={"jobs": [flux_spec()], "webhook_url": url})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["webhook_url"]
    assert batch.status_code == 422
    assert count(db, Job) == 0


def test_credentials_in_a_webhook_url_are_refused(alice: ApiClient) -> None:
    response = alice.post("/v1/jobs", json=flux_spec(webhook_url="https://u:p@hooks.test/h"))

    assert response.status_code == 422
    assert "u:p" not in response.text

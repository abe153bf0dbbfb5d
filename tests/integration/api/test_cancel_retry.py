"""Cancel a job or a batch; retry a batch's failures as new jobs."""

from __future__ import annotations

import json

import pytest

from core.db import Database
from tests.support.api_client import ApiClient
from tests.support.api_data import deliveries, finish_job, flux_spec, start_job

HOOK = "http://127.0.0.1:9/hook"


class TestCancelJob:
    def test_a_queued_job_is_cancelled_and_its_webhook_queued(
        self, alice: ApiClient, db: Database
    ) -> None:
        job = alice.post("/v1/jobs", json=flux_spec(webhook_url=HOOK)).json()

        response = alice.post(f"/v1/jobs/{job['id']}/cancel")

        assert response.status_code == 200
        cancelled = response.json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["error"]["code"] == "cancelled"
        assert cancelled["finished_at"] is not None
        [delivery] = deliveries(db, job_id=job["id"])
        assert delivery.event_type == "job.cancelled"
        assert json.loads(delivery.payload)["data"]["status"] == "cancelled"

    def test_a_running_job_is_cancelled_locally_and_says_it_may_cost(
        self, alice: ApiClient, db: Database
    ) -> None:
        job = alice.post("/v1/jobs", json=flux_spec()).json()
        start_job(db, job["id"])

        cancelled = alice.post(f"/v1/jobs/{job['id']}/cancel").json()

        assert cancelled["status"] == "cancelled"
        assert "may still be charged" in cancelled["error"]["message"]
        events = alice.get(f"/v1/jobs/{job['id']}/events").json()["data"]
        assert events[-1]["detail"] == {"cost_may_be_charged": True}

    @pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled", "timed_out"])
    def test_a_finished_job_cannot_be_cancelled(
        self, alice: ApiClient, db: Database, status: str
    ) -> None:
        job = alice.post("/v1/jobs", json=flux_spec()).json()
        if status == "cancelled":
            alice.post(f"/v1/jobs/{job['id']}/cancel")
        else:
            finish_job(db, job["id"], status)

        response = alice.post(f"/v1/jobs/{job['id']}/cancel")

        assert response.status_code == 409
        assert alice.get(f"/v1/jobs/{job['id']}").json()["status"] == status


class TestCancelBatch:
    def test_queued_jobs_are_cancelled_and_running_ones_go_on(
        self, alice: ApiClient, db: Database
    ) -> None:
        batch = alice.post(
            "/v1/batches", json={"jobs": [flux_spec(n) for n in range(3)], "webhook_url": HOOK}
        ).json()
        first, *_ = alice.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]
        start_job(db, first["id"])

        response = alice.post(f"/v1/batches/{batch['id']}/cancel")

        assert response.status_code == 200
        cancelled = response.json()
        assert cancelled["status"] == "cancelled"
        assert (cancelled["counts"]["cancelled"], cancelled["counts"]["running"]) == (2, 1)
        assert cancelled["finished_at"] is None
        assert [d.event_type for d in deliveries(db, batch_id=batch["id"])] == [
            "job.cancelled",
            "job.cancelled",
        ]

    def test_a_batch_with_nothing_running_finishes_at_once(
        self, alice: ApiClient, db: Database
    ) -> None:
        batch = alice.post(
            "/v1/batches", json={"jobs": [flux_spec(n) for n in range(2)], "webhook_url": HOOK}
        ).json()

        cancelled = alice.post(f"/v1/batches/{batch['id']}/cancel").json()

        assert cancelled["finished_at"] is not None
        events = [d.event_type for d in deliveries(db, batch_id=batch["id"])]
        assert sorted(events) == ["batch.completed", "job.cancelled", "job.cancelled"]

    def test_a_cancelled_batch_cannot_be_cancelled_again(self, alice: ApiClient) -> None:
        batch = alice.post("/v1/batches", json={"jobs": [flux_spec()]}).json()
        alice.post(f"/v1/batches/{batch['id']}/cancel")

        assert alice.post(f"/v1/batches/{batch['id']}/cancel").status_code == 409


class TestRetryBatch:
    def test_failures_come_back_as_new_jobs_and_the_old_ones_stay(
        self, alice: ApiClient, db: Database
    ) -> None:
        specs = [flux_spec(n, metadata={"row": n}) for n in range(4)]
        batch = alice.post("/v1/batches", json={"jobs": specs}).json()
        jobs = alice.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]
        for job, outcome in zip(
            jobs, ["succeeded", "failed", "timed_out", "cancelled"], strict=True
        ):
            if outcome == "cancelled":
                alice.post(f"/v1/jobs/{job['id']}/cancel")
            else:
                finish_job(db, job["id"], outcome)

        response = alice.post(f"/v1/batches/{batch['id']}/retry")

        assert response.status_code == 202
        retried = response.json()
        assert retried["retried"] == 2
        assert (retried["status"], retried["total"]) == ("running", 6)
        assert retried["counts"]["queued"] == 2
        assert retried["counts"]["failed"] == 1
        new = [alice.get(f"/v1/jobs/{i}").json() for i in retried["retried_job_ids"]]
        assert [job["metadata"]["row"] for job in new] == [1, 2]
        assert {job["batch_id"] for job in new} == {batch["id"]}
        assert alice.get(f"/v1/jobs/{jobs[1]['id']}").json()["status"] == "failed"

    def test_a_second_retry_does_not_requeue_the_same_failures(
        self, alice: ApiClient, db: Database
    ) -> None:
        batch = alice.post("/v1/batches", json={"jobs": [flux_spec()]}).json()
        [job] = alice.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]
        finish_job(db, job["id"], "failed")
        alice.post(f"/v1/batches/{batch['id']}/retry")

        again = alice.post(f"/v1/batches/{batch['id']}/retry").json()

        assert again["retried"] == 0
        assert again["total"] == 2

    def test_a_cancelled_batch_is_not_retried(self, alice: ApiClient) -> None:
        batch = alice.post("/v1/batches", json={"jobs": [flux_spec()]}).json()
        alice.post(f"/v1/batches/{batch['id']}/cancel")

        assert alice.post(f"/v1/batches/{batch['id']}/retry").status_code == 409

"""The CLI's API client: problems become readable errors; only safe requests are retried."""

from __future__ import annotations

import httpx
import pytest

from cli.http import ApiClient, ApiError
from cli.progress import wait_for_batch


class Api:
    """Answers from a script: each call takes the next (status, body) pair."""

    def __init__(self, *answers: tuple[int, object]) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        status, body = self.answers.pop(0)
        headers = {"content-type": "application/json"}
        return httpx.Response(status, json=body, headers=headers)


def _client(api: Api) -> ApiClient:
    client = ApiClient("http://api.test", "mcj_key", transport=httpx.MockTransport(api), retries=2)
    client._sleep = lambda _seconds: None  # type: ignore[method-assign]
    return client


def test_a_read_is_retried_through_an_outage() -> None:
    api = Api((503, {}), (502, {}), (200, {"id": "job_1"}))

    assert _client(api).get("/v1/jobs/job_1") == {"id": "job_1"}
    assert len(api.seen) == 3


def test_a_post_without_an_idempotency_key_is_never_repeated() -> None:
    api = Api((503, {"title": "Service Unavailable", "status": 503, "detail": "", "type": "x"}))

    with pytest.raises(ApiError) as caught:
        _client(api).post("/v1/jobs", {"model": "m"})

    assert caught.value.status == 503
    assert len(api.seen) == 1


def test_a_post_with_an_idempotency_key_is_retried_and_reports_a_replay() -> None:
    api = Api((503, {}), (202, {"id": "job_1"}))

    body, replayed = _client(api).post("/v1/jobs", {"model": "m"}, idempotency_key="k")

    assert body == {"id": "job_1"}
    assert replayed is False
    assert [r.headers["idempotency-key"] for r in api.seen] == ["k", "k"]


def test_a_problem_document_becomes_lines_naming_each_field() -> None:
    problem = {
        "type": "about:blank",
        "title": "Invalid job spec",
        "status": 422,
        "detail": "the job spec is invalid",
        "errors": [{"loc": ["jobs", 3, "params", "aspect"], "msg": "bad ratio"}],
    }
    api = Api((422, problem))

    with pytest.raises(ApiError) as caught:
        _client(api).post("/v1/batches", {"jobs": []})

    assert caught.value.lines() == [
        "error 422: Invalid job spec (the job spec is invalid)",
        "  jobs.3.params.aspect: bad ratio",
    ]


def test_without_a_key_the_client_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCJOBS_API_KEY", raising=False)

    with pytest.raises(ApiError, match="MCJOBS_API_KEY"):
        ApiClient("http://api.test")


def test_waiting_for_a_batch_ends_when_nothing_is_active() -> None:
    def batch(
        queued: int, running: int, succeeded: int, status: str = "running"
    ) -> dict[str, object]:
        counts = {"queued": queued, "running": running, "succeeded": succeeded}
        return {"id": "bat_1", "status": status, "total": 3, "counts": counts}

    api = Api(
        (200, batch(3, 0, 0)),
        (200, batch(1, 2, 0)),
        (200, batch(0, 0, 3)),
        (200, batch(0, 0, 3, "completed")),
    )
    ticks = iter(range(1000))

    final = wait_for_batch(
        _client(api), "bat_1", interval=1, clock=lambda: float(next(ticks)), sleep=lambda _s: None
    )

    assert final["status"] == "completed"
    assert len(api.seen) == 4

"""Metadata comes back as the client sent it, on PostgreSQL (jsonb) and SQLite alike; a number
the database could not give back as sent is refused with 422 pointing at the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api_client import ApiClient
from tests.support.api_data import flux_spec

KEPT = {
    "tiny": 1.5e-7,
    "tenth": 0.1,
    "just_below": 9999999999999998.0,
    "negative": -2.5,
    "whole_float": 1.0,
    "huge_integer": 10**40,
    "negative_integer": -(10**20),
    "zero": 0,
    "text": "Grüße, 漢字, \u2028",
    "flags": [True, False, None],
    "nested": {"list": [1, 2.0, "3", {"deeper": [0.25]}]},
}


def _same(sent: Any, got: Any) -> bool:
    """Equal and of the same JSON type all the way down (1.0 is not 1)."""
    if type(sent) is not type(got):
        return False
    if isinstance(sent, dict):
        return sent.keys() == got.keys() and all(_same(sent[k], got[k]) for k in sent)
    if isinstance(sent, list):
        return len(sent) == len(got) and all(map(_same, sent, got))
    return bool(sent == got)


def test_metadata_comes_back_as_sent(alice: ApiClient) -> None:
    job_id = alice.post("/v1/jobs", json=flux_spec(metadata=KEPT)).json()["id"]

    got = alice.get(f"/v1/jobs/{job_id}").json()["metadata"]

    assert _same(KEPT, got), got


def test_batch_and_job_metadata_come_back_as_sent(alice: ApiClient) -> None:
    body = {"jobs": [flux_spec(metadata=KEPT)], "metadata": KEPT}
    batch_id = alice.post("/v1/batches", json=body).json()["id"]

    batch = alice.get(f"/v1/batches/{batch_id}").json()
    [job] = alice.get(f"/v1/batches/{batch_id}/jobs").json()["data"]

    assert _same(KEPT, batch["metadata"]), batch["metadata"]
    assert _same(KEPT, job["metadata"]), job["metadata"]


@pytest.mark.parametrize(
    "literal",
    ["1e308", "1e16", "-1e16", "2.5e16", "1.7976931348623157e308", "10000000000000000.0", "-0.0"],
)
@pytest.mark.parametrize(
    ("path", "template", "loc"),
    [
        pytest.param(
            "/v1/jobs",
            '{"model": "flux-2-pro", "prompt": "x", "metadata": {"price": %s}}',
            ["metadata"],
            id="job",
        ),
        pytest.param(
            "/v1/batches",
            '{"jobs": [{"model": "flux-2-pro", "prompt": "x"}], "metadata": {"price": %s}}',
            ["metadata"],
            id="batch",
        ),
        pytest.param(
            "/v1/batches",
            '{"jobs": [{"model": "flux-2-pro", "prompt": "x", "metadata": {"price": %s}}]}',
            ["jobs", 0, "metadata"],
            id="batch-job",
        ),
    ],
)
def test_a_number_that_cannot_come_back_as_sent_is_refused(
    alice: ApiClient, path: str, template: str, loc: list[str | int], literal: str
) -> None:
    response = alice.post(
        path, content=template % literal, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["loc"] == loc
    assert error["msg"].startswith("price: ")

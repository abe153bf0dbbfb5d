"""`GET /v1/stats` over HTTP: admin keys only, the window and key filters, problem documents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import httpx
import pytest

from core.db import Database
from core.settings import Settings
from tests.support.ops_app import bearer, http_client, serve_app, this_minute
from tests.support.ops_data import OpsDataset, seed_ops_dataset


@pytest.fixture
def data(db: Database) -> OpsDataset:
    return seed_ops_dataset(db, now=this_minute())


@pytest.fixture
def client(db: Database, settings_for: Callable[..., Settings]) -> Iterator[httpx.Client]:
    with serve_app(db, settings_for) as url, http_client(url) as client:
        yield client


def test_an_admin_key_reads_the_stats(client: httpx.Client, data: OpsDataset) -> None:
    response = client.get("/v1/stats", params={"since": "2h"}, headers=bearer(data.admin.api_key))
    assert response.status_code == 200
    body = response.json()
    assert body["points"]["total"] == 58
    assert body["jobs"]["by_status"]["running"] == 4
    assert body["latency"]["upstream"]["midjourney"] == {
        "count": 5,
        "p50": 30.0,
        "p95": 48.0,
        "p99": 49.6,
    }
    assert [e["code"] for e in body["errors"]] == ["upstream_rejected", "deadline_exceeded"]
    # the real clock runs on from the dataset's "now", so more may be stuck, never fewer
    assert {data.stuck_mj, data.stuck_seedream, data.stuck_lease} <= {
        job["id"] for job in body["stuck"]
    }
    assert body["webhooks"]["failing"] == 1


@pytest.mark.parametrize(
    ("who", "status"),
    [("nobody", 401), ("wrong key", 401), ("tenant", 403)],
    ids=["without-a-key", "with-an-unknown-key", "with-a-tenant-key"],
)
def test_only_admin_keys_may_read_stats(
    client: httpx.Client, data: OpsDataset, who: str, status: int
) -> None:
    headers = {
        "nobody": {},
        "wrong key": bearer("mcj_not-a-real-key"),
        "tenant": bearer(data.alpha.api_key),
    }[who]
    response = client.get("/v1/stats", headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "points" not in response.text


def test_a_key_filter_and_an_explicit_start_narrow_the_figures(
    client: httpx.Client, data: OpsDataset
) -> None:
    # 45 minutes back holds beta's finished flux jobs (40 to 38.5 minutes before "now"); not
    # midnight, which is after them when the suite runs in the first 40 minutes of a UTC day
    since = this_minute() - dt.timedelta(minutes=45)
    start = since.isoformat().replace("+00:00", "Z")
    response = client.get(
        "/v1/stats",
        params={"since": start, "api_key_id": data.beta.id},
        headers=bearer(data.admin.api_key),
    )
    assert response.status_code == 200
    assert response.json()["since"].startswith(start[:16])
    assert response.json()["points"]["by_api_key"] == [
        {"api_key_id": data.beta.id, "name": "beta", "points": 8, "jobs": 2}
    ]


@pytest.mark.parametrize(
    "since",
    ["yesterday", "2026-12-01T08:00:00", "2999-01-01T00:00:00Z", "5000d"],
    ids=["not-a-time", "no-offset", "in-the-future", "too-long-a-span"],
)
def test_a_bad_since_is_a_422_naming_the_parameter(
    client: httpx.Client, data: OpsDataset, since: str
) -> None:
    response = client.get("/v1/stats", params={"since": since}, headers=bearer(data.admin.api_key))
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "since"]


def test_too_many_throughput_buckets_are_refused(client: httpx.Client, data: OpsDataset) -> None:
    response = client.get(
        "/v1/stats",
        params={"since": "30d", "bucket_seconds": 10},
        headers=bearer(data.admin.api_key),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "bucket_seconds"]

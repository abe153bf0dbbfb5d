"""`/metrics`: Prometheus text that parses, with gauges read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from core.db import Database
from core.metrics import record_submit
from core.settings import Settings
from core.stats import store_upstream_balance
from tests.support.ops_app import http_client, serve_app, this_minute
from tests.support.ops_data import OpsDataset, seed_ops_dataset


@pytest.fixture
def data(db: Database) -> OpsDataset:
    return seed_ops_dataset(db, now=this_minute())


@pytest.fixture
def client(db: Database, settings_for: Callable[..., Settings]) -> Iterator[httpx.Client]:
    with serve_app(db, settings_for) as url, http_client(url) as client:
        yield client


def _samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_job_and_delivery_gauges_come_from_the_database(
    client: httpx.Client, data: OpsDataset
) -> None:
    samples = _samples(client)

    def jobs(status: str, provider: str) -> float:
        return samples[("mcjobs_jobs", (("provider", provider), ("status", status)))]

    assert jobs("succeeded", "midjourney") == 6  # five today, one two days ago
    assert jobs("running", "seedream") == 1
    assert jobs("queued", "z-image") == 0
    assert samples[("mcjobs_expired_leases", ())] == 1
    assert samples[("mcjobs_webhook_deliveries", (("state", "dead"),))] == 2
    assert samples[("mcjobs_webhook_deliveries_failing", ())] == 1
    assert samples[("mcjobs_batches_running", ())] == 1
    oldest = samples[("mcjobs_oldest_queued_job_age_seconds", (("provider", "midjourney"),))]
    assert 600 <= oldest < 700


def test_counts_recorded_in_this_process_are_exposed(client: httpx.Client) -> None:
    key = ("mcjobs_upstream_submits_total", (("outcome", "accepted"), ("provider", "flux")))
    before = _samples(client).get(key, 0.0)
    record_submit("flux", "accepted", 0.2)
    record_submit("flux", "accepted", 0.3)
    after = _samples(client)
    assert after[key] == before + 2
    assert (
        after[("mcjobs_upstream_request_seconds_count", (("call", "submit"), ("provider", "flux")))]
        >= 2
    )


def test_the_cached_upstream_balance_is_a_gauge(
    client: httpx.Client, data: OpsDataset, redis_url: str
) -> None:
    with redis.Redis.from_url(redis_url) as cache:
        store_upstream_balance(cache, 123_456)
    assert _samples(client)[("mcjobs_upstream_balance_points", ())] == 123_456

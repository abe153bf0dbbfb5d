"""The shared per-provider limiter on a real Redis: one budget for every worker, self-healing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from core.limiter import ALL, ProviderLimiter
from tests.support.waiting import wait_until


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def limiter(
    client: redis.Redis, *, rate: float = 0.0, cap: int = 0, **kw: float
) -> ProviderLimiter:
    return ProviderLimiter(
        client,
        rates={"default": rate},
        caps={"default": cap},
        reservation_seconds=kw.get("ttl", 60),
    )


def ids(n: int, prefix: str = "job") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def test_the_rate_allows_a_burst_of_one_second_then_refuses(client: redis.Redis) -> None:
    grant = limiter(client, rate=5.0).acquire("flux", ids(8), running=0)
    assert grant.job_ids == tuple(ids(5))
    assert grant.reason == "rate"
    assert 0 < grant.retry_in <= 0.2


def test_tokens_come_back_over_time(client: redis.Redis) -> None:
    shared = limiter(client, rate=20.0)
    assert len(shared.acquire("flux", ids(20), running=0).job_ids) == 20
    wait_until(
        lambda: shared.acquire("flux", ["late"], running=0).job_ids,
        timeout=5,
        what="a refilled token",
    )


def test_two_workers_share_one_budget(client: redis.Redis, redis_url: str) -> None:
    other_client = redis.Redis.from_url(redis_url)
    first = limiter(client, rate=4.0).acquire("flux", ids(4, "a"), running=0)
    second = limiter(other_client, rate=4.0).acquire("flux", ids(4, "b"), running=0)
    other_client.close()
    assert len(first.job_ids) + len(second.job_ids) == 4


def test_each_provider_has_its_own_bucket(client: redis.Redis) -> None:
    shared = limiter(client, rate=2.0)
    assert len(shared.acquire("flux", ids(5), running=0).job_ids) == 2
    assert len(shared.acquire("midjourney", ids(5), running=0).job_ids) == 2


def test_a_configured_provider_rate_overrides_the_default(client: redis.Redis) -> None:
    shared = ProviderLimiter(client, rates={"default": 1.0, "flux": 3.0}, caps={})
    assert shared.rate_for("flux") == 3.0
    assert shared.rate_for("grok") == 1.0
    assert len(shared.acquire("flux", ids(5), running=0).job_ids) == 3


def test_the_in_flight_cap_counts_running_jobs_and_reservations(client: redis.Redis) -> None:
    shared = limiter(client, cap=10)
    first = shared.acquire("flux", ids(5, "a"), running=3)
    second = shared.acquire("flux", ids(5, "b"), running=3)
    assert (len(first.job_ids), len(second.job_ids)) == (5, 2)
    assert second.reason == "in_flight"
    shared.release("flux", first.job_ids)
    # the released five are now running according to the database
    assert len(shared.acquire("flux", ids(5, "c"), running=8).job_ids) == 0


def test_reservations_of_a_dead_worker_expire(client: redis.Redis) -> None:
    shared = limiter(client, cap=2, ttl=0.3)
    assert len(shared.acquire("flux", ids(2, "dead"), running=0).job_ids) == 2
    assert shared.acquire("flux", ["next"], running=0).job_ids == ()
    wait_until(
        lambda: shared.acquire("flux", ["next"], running=0).job_ids,
        timeout=5,
        what="the dead worker's reservations to expire",
    )


def test_a_flushed_redis_forgets_nothing_the_database_knows(client: redis.Redis) -> None:
    shared = limiter(client, cap=5)
    shared.acquire("flux", ids(3), running=0)
    client.flushdb()
    # the cap still holds, because the running count comes from the database
    assert len(shared.acquire("flux", ids(9, "after"), running=4).job_ids) == 1


def test_a_429_pauses_the_provider_and_halves_its_rate(client: redis.Redis) -> None:
    shared = limiter(client, rate=10.0)
    assert shared.slow_down("flux", 0.3) == pytest.approx(0.5)
    assert shared.acquire("flux", ids(1), running=0).reason == "paused"
    assert shared.acquire("midjourney", ids(1), running=0).job_ids == ("job-0",)
    assert 0 < shared.paused_for("flux") <= 0.3
    # repeated 429s keep halving, down to a floor
    for _ in range(10):
        factor = shared.slow_down("flux", 0.0)
    assert factor == pytest.approx(0.05)


def test_pausing_everything_stops_every_provider(client: redis.Redis) -> None:
    shared = limiter(client)
    assert shared.pause(ALL, 30.0) == pytest.approx(30.0, abs=0.1)
    assert shared.pause(ALL, 1.0) == pytest.approx(30.0, abs=0.1)
    for provider in ("flux", "midjourney"):
        assert shared.acquire(provider, ids(1), running=0).reason == "paused"


def test_unlimited_when_rate_and_cap_are_zero(client: redis.Redis) -> None:
    assert len(limiter(client).acquire("flux", ids(500), running=10_000).job_ids) == 500


def test_consecutive_unreachable_verdicts_are_counted_until_one_success(
    client: redis.Redis,
) -> None:
    shared = limiter(client)
    assert [shared.note_unreachable() for _ in range(3)] == [1, 2, 3]
    shared.note_reachable()
    assert shared.note_unreachable() == 1

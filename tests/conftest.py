"""Fixtures shared by every test layer.

`db` runs a test twice: on a fresh PostgreSQL database (a copy of one migrated template) and on a
fresh SQLite file. `pg_db` is PostgreSQL only. `redis_url` is a private Redis db number, flushed
before and after. Real services are used whenever they are reachable.
"""

from __future__ import annotations

import functools
import os
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.db import Database
from core.migrate import upgrade
from core.settings import Settings
from tests.support import services


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    if not services.postgres_available():
        pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL")
    name = f"mcjobs_tpl_{secrets.token_hex(4)}"
    with services.postgres_database() as url:
        upgrade(url)
        # A database with open connections cannot serve as a template: copy it under a new name.
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{make_url(url).database}"'))
        admin.dispose()
    try:
        yield name
    finally:
        services.drop_postgres_database(name)


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    with services.postgres_database(template=pg_template) as url:
        yield url


@pytest.fixture
def sqlite_db_url(tmp_path: Path) -> str:
    url = services.sqlite_url(tmp_path)
    upgrade(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("sqlite_db_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The base URL of a Redis server: the real one, else an embedded one."""
    if services.redis_available():
        yield services.TEST_REDIS_URL
        return
    server = services.start_embedded_redis()
    try:
        yield server.url
    finally:
        server.stop()


@functools.cache
def _redis_db_number() -> int:
    """One db number (1..15) for this test session; db 0 is left to whatever else uses the
    server. Chosen at random so two sessions on one machine rarely flush each other's keys."""
    if "TEST_REDIS_DB" in os.environ:
        return int(os.environ["TEST_REDIS_DB"])
    return random.SystemRandom().randint(1, 15)


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    base = redis_server.rsplit("/", 1)[0]
    url = f"{base}/{_redis_db_number()}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def settings_for(redis_url: str) -> object:
    """A factory: `settings_for(db_url, **overrides)` → Settings for a test."""

    def make(database_url: str, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "webhook_allow_private": True,
            "archive_allow_private": True,
            "metachat_api_key": "test-key",
            # webhook tests look at deliveries alone; the storage tests turn the wait on
            "archive_webhook_wait_seconds": 0,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make

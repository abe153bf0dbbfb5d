"""A real `mcjobs api` process on 127.0.0.1: the server options of `cli/serve.py` (HTTP
implementation, header cap, logging) are what such tests are about, so nothing in-process will do.
Its output goes to a log file the test can read."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.db import Database
from core.keys import create_api_key
from tests.support.services import free_port
from tests.support.waiting import wait_until

MCJOBS = str(Path(sys.executable).with_name("mcjobs"))


@dataclass
class ApiProcess:
    base_url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def new_key(self, db: Database, name: str = "client", *, admin: bool = False) -> str:
        with db.session() as session:
            return create_api_key(session, name=name, admin=admin).api_key


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def api_process(
    database_url: str, redis_url: str, logs: Path, env: Mapping[str, str] | None = None
) -> Iterator[ApiProcess]:
    """`mcjobs api --port <free>` on `database_url`, started and healthy; stopped afterwards."""
    port = free_port()
    log_path = logs / f"api-{port}.log"
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "METACHAT_API_KEY": "test-key",
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "ARCHIVE_ALLOW_PRIVATE": "true",
        "STORAGE_URL": str(logs / "files"),
        **(env or {}),
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [MCJOBS, "api", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or _healthy(base_url),
            timeout=60,
            what="mcjobs api to answer /healthz",
        )
        assert process.poll() is None, log_path.read_text(errors="replace")
        yield ApiProcess(base_url, port, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

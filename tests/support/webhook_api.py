"""The API app served over real HTTP on 127.0.0.1 from a background thread (uvicorn), for tests
that talk to it as clients and the CLI do."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from api.app import create_app
from core.db import Database
from core.settings import Settings
from tests.support.services import free_port
from tests.support.waiting import wait_until


@contextmanager
def served_api(settings: Settings, db: Database) -> Iterator[str]:
    """Yield the base URL of the running API; stop it afterwards."""
    config = uvicorn.Config(
        create_app(settings, db),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        lifespan="off",
        ws="none",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=20, what="the API to start")
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)

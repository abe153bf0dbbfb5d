"""A synchronous client for the API app in-process (httpx over `ASGITransport`).

The app runs on an event loop in a background thread (an anyio blocking portal), so tests stay
plain functions and several threads may call at once: the routes' database work then really
overlaps, which the idempotency race tests need.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import anyio.from_thread
import httpx
from fastapi import FastAPI

from core.db import Database
from core.keys import CreatedKey, create_api_key


class ApiClient:
    """`client.post("/v1/jobs", json=...)` → `httpx.Response`, authenticated as `key`."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, app: FastAPI, key: CreatedKey):
        self.key = key
        self._portal = portal
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            headers={"Authorization": f"Bearer {key.api_key}"},
            timeout=60,
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        call = functools.partial(self._client.request, method, url, **kwargs)
        return self._portal.call(call)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._portal.call(self._client.aclose)


class ApiClients:
    """Clients for one app: `new(name, admin=)` makes a key and a client authenticated by it."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, app: FastAPI, db: Database):
        self.portal = portal
        self.app = app
        self.db = db
        self._made: list[ApiClient] = []

    def new(self, name: str, *, admin: bool = False) -> ApiClient:
        with self.db.session() as session:
            key = create_api_key(session, name=name, admin=admin)
        client = ApiClient(self.portal, self.app, key)
        self._made.append(client)
        return client

    def anonymous(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://api.test",
            headers=headers or {},
        )

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """An unauthenticated request (or one with the caller's own headers)."""

        async def go() -> httpx.Response:
            async with self.anonymous() as client:
                return await client.request(method, url, **kwargs)

        return self.portal.call(go)

    def close(self) -> None:
        for client in self._made:
            client.close()


@contextmanager
def api_clients(app: FastAPI, db: Database) -> Iterator[ApiClients]:
    portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
        anyio.from_thread.start_blocking_portal()
    )
    with portal_cm as portal:
        clients = ApiClients(portal, app, db)
        try:
            yield clients
        finally:
            clients.close()

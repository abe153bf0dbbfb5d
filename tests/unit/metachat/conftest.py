"""Helpers for driving `MetaChatClient` through `httpx.MockTransport` (no sockets)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from metachat import (
    CatalogueOverrides,
    MetaChatClient,
    build_catalogue,
    make_http_client,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "metachat"
BASE_URL = "http://127.0.0.1:9/open/v1"
API_KEY = "sk-live-0123456789abcdef0123"
APP_ID = "app-77e1c0ffee42"

Handler = Callable[[httpx.Request], httpx.Response]


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def fixture_response(name: str) -> httpx.Response:
    """The HTTP answer a fixture file describes."""
    fixture = load_fixture(name)
    headers = fixture.get("headers", {})
    if "raw" in fixture:
        return httpx.Response(
            fixture["http"],
            content=fixture["raw"].encode(),
            headers={"content-type": "text/html", **headers},
        )
    return httpx.Response(fixture["http"], json=fixture["body"], headers=headers)


@dataclass
class Upstream:
    """A fake MetaChat: answers with ``respond`` and remembers every request it got."""

    respond: Handler
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)


def make_client(
    upstream: Handler,
    *,
    api_key: str | None = API_KEY,
    app_id: str | None = None,
    overrides: CatalogueOverrides | None = None,
) -> MetaChatClient:
    http = make_http_client(transport=httpx.MockTransport(upstream))
    return MetaChatClient(
        http, build_catalogue(overrides), base_url=BASE_URL, api_key=api_key, app_id=app_id
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

"""The body cap answers 413 whether the size is declared up front or only seen while reading."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request

from api.errors import install_error_handlers
from api.limits import BodySizeLimit


def _app(limit: int) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=limit)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    return app


def _post(limit: int, content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app(limit))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/echo", content=content)

    return anyio.run(go)


async def _chunks(total: int, size: int = 10) -> AsyncIterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


@pytest.mark.parametrize(
    ("content", "status"),
    [
        pytest.param(b"x" * 100, 200, id="declared-at-the-limit"),
        pytest.param(b"x" * 101, 413, id="declared-over-the-limit"),
        pytest.param("chunked-100", 200, id="streamed-at-the-limit"),
        pytest.param("chunked-200", 413, id="streamed-over-the-limit"),
    ],
)
def test_bodies_over_the_limit_are_too_large(content: bytes | str, status: int) -> None:
    body = _chunks(int(content.split("-")[1])) if isinstance(content, str) else content

    response = _post(100, body)

    assert response.status_code == status
    if status == 413:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 413

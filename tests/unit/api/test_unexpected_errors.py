"""An unexpected fault answers a 500 problem with an error id and logs that id and the
exception's type, nothing of the request, and re-raises nothing to the server."""

from __future__ import annotations

import logging
import re

import anyio
import httpx
import pytest
from fastapi import FastAPI

from api.errors import UnexpectedErrors, install_error_handlers

SECRET = "card-4111-1111"


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(UnexpectedErrors)

    @app.get("/sync/{value}")
    def sync_route(value: str) -> dict[str, str]:
        raise ValueError(f"cannot store {value}")

    @app.get("/async")
    async def async_route(note: str) -> dict[str, str]:
        raise KeyError(note)

    return app


def _get(path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        # raise_app_exceptions: anything re-raised past the middleware would fail the test
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)

    return anyio.run(go)


@pytest.mark.parametrize(
    ("path", "kind"),
    [(f"/sync/{SECRET}", "ValueError"), (f"/async?note={SECRET}", "KeyError")],
)
def test_a_fault_is_a_500_with_an_error_id_and_one_line_of_log(
    path: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = _get(path)

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    error_id = re.fullmatch(
        r"an unexpected error occurred \(error id ([0-9a-f]{16})\)", response.json()["detail"]
    )
    assert error_id is not None
    assert SECRET not in response.text
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.getMessage() == f"unexpected error {error_id.group(1)}: {kind}"
    assert record.exc_info is None
    server_side = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert not [line for line in server_side if SECRET in line]

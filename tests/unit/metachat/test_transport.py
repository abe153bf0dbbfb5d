"""The aiohttp-backed transport against real sockets on 127.0.0.1: whether a failed request is
reported as never sent (safe to repeat) or possibly sent (uncertain) decides whether a submit
may be sent again, so each failure is produced for real and its class checked."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from metachat.client import _NOT_SENT, make_http_client

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _post(base: str, **client_options: Any) -> httpx.Response:
    async with make_http_client(trust_env=False, **client_options) as http:
        return await http.post(f"{base}/submit", json={"prompt": "a cat"})


async def test_an_answer_is_read_with_status_headers_and_body() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        body = b'{"code": 200, "data": "task-1"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async with serving(answer) as base:
        response = await _post(base)
    assert response.status_code == 200
    assert response.json() == {"code": 200, "data": "task-1"}


async def test_a_refused_connection_is_never_sent() -> None:
    with pytest.raises(_NOT_SENT):
        await _post(f"http://127.0.0.1:{_closed_port()}")


async def test_a_connection_dropped_after_the_request_arrived_is_not_called_unsent() -> None:
    arrived = asyncio.Event()

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        arrived.set()
        writer.close()

    async with serving(drop) as base:
        with pytest.raises(httpx.TransportError) as caught:
            await _post(base)
    assert arrived.is_set()
    assert not isinstance(caught.value, _NOT_SENT), type(caught.value)


async def test_a_reset_after_the_request_arrived_is_not_called_unsent() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    async with serving(reset) as base:
        with pytest.raises(httpx.TransportError) as caught:
            await _post(base)
    assert not isinstance(caught.value, _NOT_SENT), type(caught.value)


async def test_a_silent_server_is_a_read_timeout_not_a_connect_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await reader.read()  # until the client gives up and closes

    async with serving(silent) as base:
        with pytest.raises(httpx.ReadTimeout):
            await _post(base, read_timeout=0.2)


async def test_a_body_cut_short_is_a_read_error() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"code"')
        await writer.drain()
        writer.close()

    async with serving(short) as base:
        with pytest.raises(httpx.TransportError) as caught:
            await _post(base)
    assert not isinstance(caught.value, _NOT_SENT), type(caught.value)


async def test_the_send_trace_reports_the_request_leaving_once_before_its_answer() -> None:
    seen: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        seen.append("server read the request")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async def trace(event: str, info: dict[str, Any]) -> None:
        seen.append(event)

    async with serving(answer) as base, make_http_client(trust_env=False) as http:
        response = await http.post(f"{base}/submit", json={}, extensions={"trace": trace})
    assert response.status_code == 200
    assert seen == ["http11.send_request_headers.started", "server read the request"]

"""The HTTP transport MetaChat calls go through: httpx's API on aiohttp's connection handling.

httpx stays the client every caller and test sees (``httpx.MockTransport`` still swaps in), but
the bytes go through aiohttp (`httpx_aiohttp.AiohttpTransport`), whose C-accelerated parser and
connection pool spend about a sixth of the CPU per request of httpx's own pure-Python stack
(measured in docs/benchmarks.md, "HTTP transport"). Two things are added on top:

- **Errors say whether the request left.** The client decides from the exception class whether
  a failed submit may have reached MetaChat (`metachat.client._NOT_SENT`). Only failures while
  connecting (refused, DNS, TLS, connect timeout, proxy, bad URL) become httpx's "never sent"
  classes; a dropped connection, a reset or a read timeout after the request was written becomes
  a read/protocol error, i.e. uncertain. The generic mapping would call a server disconnect a
  connect timeout, which would make a possibly charged submit look safe to repeat.
- **The send trace.** A request's ``trace`` extension (what `worker.sending` installs) is called
  with ``http11.send_request_headers.started`` when aiohttp reports its headers written, as
  httpcore does, so a round's next part is marked sent only once the previous part has left.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

Trace = Callable[[str, dict[str, Any]], Awaitable[None]]

# The trace extension of the request the current task is sending (aiohttp's trace callbacks run
# in the task that awaits the request, so a context variable reaches them).
_current_trace: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "mcjobs_transport_trace", default=None
)

# (aiohttp class, httpx class), most specific first: the first match wins.
_ERROR_MAP: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (asyncio.TimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientError, httpx.ReadError),
    (OSError, httpx.ReadError),
)


def _translate(exc: BaseException) -> BaseException:
    """The httpx error for a failure inside aiohttp, judged by aiohttp's own exception."""
    origin = exc.__cause__ if isinstance(exc, httpx.HTTPError) and exc.__cause__ else exc
    for aiohttp_class, httpx_class in _ERROR_MAP:
        if isinstance(origin, aiohttp_class):
            return httpx_class(str(origin) or type(origin).__name__)
    return exc


async def _headers_sent(
    session: aiohttp.ClientSession,
    context: types.SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    trace = _current_trace.get()
    if trace is not None:
        await trace("http11.send_request_headers.started", {})


class _TranslatedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def aclose(self) -> None:
        await self._inner.aclose()


class MetaChatTransport(AiohttpTransport):
    """`AiohttpTransport` with the error classes and send trace MetaChat calls rely on."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        trust_env: bool = True,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(limits=limits, trust_env=trust_env, verify=verify)
        self._trust_env = trust_env

    def get_client(self) -> aiohttp.ClientSession:
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(_headers_sent)
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry or 0,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector, trust_env=self._trust_env, trace_configs=[tracing]
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = _current_trace.set(request.extensions.get("trace"))
        try:
            response = await super().handle_async_request(request)
        except Exception as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            _current_trace.reset(token)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TranslatedStream(response.stream)
        return response

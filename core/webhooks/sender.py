"""One signed POST to a client's webhook URL, made safely.

- The host is resolved and checked right before the attempt (`resolve_destination`) and the
  connection goes to the checked address: the URL sent to httpx carries the IP, the `Host` header
  carries the name, and for https the `sni_hostname` extension makes TLS present and verify the
  name (httpx has no resolver hook).
- Redirects are not followed: a 3xx is a failed attempt.
- The whole attempt (connect, send, answer) has one deadline; at most a few KB of the answer are
  read, undecoded (`Accept-Encoding: identity`), so a hostile receiver can cost neither time nor
  memory.
- Each host name gets its own connection pool: pools are keyed by the address in the URL, and a
  TLS connection made for one name must never carry a request for another name on that address.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import certifi
import httpx

from core.tables import utcnow
from core.webhooks.attempts import AttemptKind, AttemptResult
from core.webhooks.schedule import parse_retry_after
from core.webhooks.signing import signature_headers
from core.webhooks.ssrf import (
    Destination,
    DestinationRefused,
    IPAddress,
    resolve_destination,
)

MAX_RESPONSE_BYTES = 4096
USER_AGENT = "mcjobs-webhooks/1"


@dataclass(frozen=True)
class OutgoingWebhook:
    """What to send: the delivery id (`webhook-id`), its URL, the exact body and the secrets."""

    delivery_id: str
    url: str
    payload: str
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        return f"OutgoingWebhook(delivery_id={self.delivery_id!r})"


def build_request(
    destination: Destination, address: IPAddress, *, body: bytes, headers: dict[str, str]
) -> httpx.Request:
    """A request to `destination` that connects to `address` and still names the host."""
    url = httpx.URL(destination.url)
    pinned = url.copy_with(host=str(address))
    request_headers = {
        "Host": url.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        **headers,
    }
    extensions: dict[str, object] = {}
    if destination.scheme == "https" and not destination.host_is_literal:
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    return httpx.Request(
        "POST", pinned, headers=request_headers, content=body, extensions=extensions
    )


class WebhookSender:
    """Sends webhook attempts; one per worker process, used on one event loop.

    `transport` replaces the network in tests (e.g. `httpx.MockTransport`).
    """

    def __init__(
        self,
        *,
        timeout: float,
        allow_private: bool,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_pools: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.max_response_bytes = max_response_bytes
        self.max_pools = max_pools
        self._transport = transport
        self._clock = clock
        self._ssl_context: ssl.SSLContext | None = None
        self._clients: dict[tuple[str, str, int], httpx.AsyncClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"WebhookSender(timeout={self.timeout}, allow_private={self.allow_private})"

    async def send(self, webhook: OutgoingWebhook) -> AttemptResult:
        """Make one attempt; never raises for anything the receiver or the network does."""
        at = self._clock()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                return await self._attempt(webhook, at, started)
        except TimeoutError:
            return AttemptResult(
                AttemptKind.FAILED,
                at,
                latency_ms=_elapsed_ms(started),
                error=f"timed out after {self.timeout:g}s",
            )

    async def _attempt(
        self, webhook: OutgoingWebhook, at: dt.datetime, started: float
    ) -> AttemptResult:
        try:
            destination = await asyncio.to_thread(
                resolve_destination, webhook.url, allow_private=self.allow_private
            )
        except DestinationRefused as refused:
            kind = AttemptKind.REFUSED if refused.permanent else AttemptKind.FAILED
            return AttemptResult(kind, at, error=f"destination refused: {refused.reason}")
        if not webhook.secrets:
            return AttemptResult(AttemptKind.REFUSED, at, error="no webhook secret to sign with")
        body = webhook.payload.encode("utf-8")
        headers = signature_headers(webhook.delivery_id, webhook.payload, webhook.secrets, at=at)
        client = self._client_for(destination)
        last_error = "no address to connect to"
        try:
            # Every address was checked; try them in resolver order until one connects.
            for address in destination.addresses:
                request = build_request(destination, address, body=body, headers=headers)
                try:
                    return await self._exchange(client, request, at, started)
                except httpx.ConnectError as exc:
                    last_error = f"connection failed: {_describe(exc)}"
                except httpx.TimeoutException as exc:
                    return AttemptResult(
                        AttemptKind.FAILED,
                        at,
                        latency_ms=_elapsed_ms(started),
                        error=f"timed out ({type(exc).__name__})",
                    )
                except httpx.HTTPError as exc:
                    return AttemptResult(
                        AttemptKind.FAILED,
                        at,
                        latency_ms=_elapsed_ms(started),
                        error=f"request failed: {_describe(exc)}",
                    )
        finally:
            if client not in self._clients.values():
                await client.aclose()
        return AttemptResult(
            AttemptKind.FAILED, at, latency_ms=_elapsed_ms(started), error=last_error
        )

    async def _exchange(
        self, client: httpx.AsyncClient, request: httpx.Request, at: dt.datetime, started: float
    ) -> AttemptResult:
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            excerpt = await self._read_excerpt(response)
        finally:
            await response.aclose()
        latency = _elapsed_ms(started)
        code = response.status_code
        if 200 <= code < 300:
            return AttemptResult(AttemptKind.DELIVERED, at, code, latency, None, excerpt)
        if code == 410:
            error = "410 Gone: the receiver asked us to stop"
            return AttemptResult(AttemptKind.GONE, at, code, latency, error, excerpt)
        if 300 <= code < 400:
            error = f"redirect ({code}) not followed: webhooks must answer 2xx themselves"
        else:
            error = f"HTTP {code}"
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=at)
        return AttemptResult(AttemptKind.FAILED, at, code, latency, error, excerpt, retry_after)

    async def _read_excerpt(self, response: httpx.Response) -> str | None:
        try:
            data = response.content  # already in memory (a transport that reads eagerly)
        except httpx.ResponseNotRead:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= self.max_response_bytes:
                    break
            data = b"".join(chunks)
        data = data[: self.max_response_bytes]
        return data.decode("utf-8", errors="replace") if data else None

    def _client_for(self, destination: Destination) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Clients belong to the loop they first ran on; a new loop starts afresh.
            self._clients.clear()
            self._loop = loop
        key = (destination.scheme, destination.host, destination.port)
        client = self._clients.get(key)
        if client is None:
            client = self._new_client()
            if len(self._clients) < self.max_pools:
                self._clients[key] = client
        return client

    def _new_client(self) -> httpx.AsyncClient:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=certifi.where())
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
            trust_env=False,  # an environment proxy would connect somewhere we did not check
            verify=self._ssl_context,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=5),
            transport=self._transport,
        )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"

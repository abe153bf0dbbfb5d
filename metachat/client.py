"""The async MetaChat client: the only code that sends bytes to MetaChat.

One `MetaChatClient` wraps one long-lived ``httpx.AsyncClient`` made by `make_http_client`; the
caller owns (and closes) the HTTP client. Tests and the simulator swap the transport::

    http = make_http_client(transport=httpx.MockTransport(handler))
    client = MetaChatClient(http, build_catalogue(), base_url="http://127.0.0.1:9000/open/v1",
                            api_key="sk-...", app_id=None)
    task_id = await client.submit(SubmitRequest(model="mj-v7", action="imagine", prompt="..."))
    task = await client.fetch("mj-v7", "imagine", task_id)

Every failure is an `UpstreamError` subclass from `metachat.errors`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from metachat import normalise, openai
from metachat.bodies import has_inline_images, submit_body
from metachat.catalogue import Catalogue
from metachat.envelope import read_envelope
from metachat.errors import (
    UpstreamEndpointMissing,
    UpstreamTaskNotFound,
    UpstreamTransient,
    UpstreamUncertain,
)
from metachat.openai import SyncAnswer
from metachat.specs import ActionSpec, path_with_id
from metachat.tasks import SubmitRequest, UpstreamTask, UsageRecord
from metachat.transport import MetaChatTransport

logger = logging.getLogger(__name__)

USER_AGENT = "mcjobs-metachat/1"
REDACTED = "[redacted]"
DEFAULT_LLM_BASE_URL = "https://llm-api.mmchat.xyz/v1"
# A synchronous answer is its result: images take 10-120 s (our assumption from OpenAI's own
# figures), so its read timeout is its own setting, far above a media submit's.
DEFAULT_SYNC_READ_TIMEOUT = 180.0
# Answers above this many bytes are parsed and decoded on a thread, off the event loop.
_INLINE_PARSE_BYTES = 64 * 1024

# httpx raises these before any byte of the request reached the server.
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def make_http_client(
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    write_timeout: float = 30.0,
    pool_timeout: float = 5.0,
    max_connections: int = 50,
    max_keepalive_connections: int = 20,
    keepalive_expiry: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
    trust_env: bool = True,
) -> httpx.AsyncClient:
    """The one factory for the HTTP client MetaChat calls go through.

    Every timeout is explicit (httpx's 5 s default for everything would cut off slow submits),
    redirects are never followed, and connections are pooled for reuse across pump ticks.
    Create it on the event loop that will use it.
    """
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=keepalive_expiry,
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=write_timeout, pool=pool_timeout
        ),
        limits=limits,
        follow_redirects=False,
        transport=transport or MetaChatTransport(limits=limits, trust_env=trust_env),
        trust_env=trust_env,
        headers={"User-Agent": USER_AGENT},
    )


class MetaChatClient:
    """Submit tasks, fetch their state, read the account; answers in our vocabulary."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        catalogue: Catalogue,
        *,
        base_url: str,
        api_key: str | None,
        app_id: str | None = None,
        llm_base_url: str = DEFAULT_LLM_BASE_URL,
        sync_read_timeout: float = DEFAULT_SYNC_READ_TIMEOUT,
    ) -> None:
        self._http = http
        self._catalogue = catalogue
        self._base_url = base_url.rstrip("/")
        self._llm_base_url = llm_base_url.rstrip("/")
        self._sync_read_timeout = sync_read_timeout
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        if app_id:
            self._headers["X-App-ID"] = app_id
        # Short values would mangle ordinary words if scrubbed; real keys are long.
        self._secrets = tuple(s for s in (api_key, app_id) if s and len(s) >= 8)
        # (result path, fallback path) → whichever last answered for a task; per process.
        self._answering_path: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return f"MetaChatClient(base_url={self._base_url!r})"

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def llm_base_url(self) -> str:
        return self._llm_base_url

    @property
    def sync_read_timeout(self) -> float:
        return self._sync_read_timeout

    @property
    def sends_app_id(self) -> bool:
        """Whether requests carry ``X-App-ID`` (its value is never exposed)."""
        return "X-App-ID" in self._headers

    async def submit(self, request: SubmitRequest) -> str:
        """Create one upstream task and return its id.

        `UpstreamUncertain` here means the task may exist and be charged: do not resubmit
        blindly. `UpstreamTransient` with ``sent=False`` is always safe to retry.
        """
        action = self._catalogue.action(request.model, request.action)
        if has_inline_images(request):
            body = await asyncio.to_thread(submit_body, action, request)
        else:
            body = submit_body(action, request)
        data = await self._call("POST", action.submit_path, json=body, fetching=False)
        return normalise.submitted_task_id(data)

    async def call(self, request: SubmitRequest) -> SyncAnswer:
        """One synchronous call on the OpenAI-compatible host: its answer is the whole result
        (images decoded from base64, text, token usage, cost). Errors as `submit`'s: an
        `UpstreamUncertain` means the host may have done (and charged) the work unseen."""
        action = self._catalogue.action(request.model, request.action)
        if not action.sync:
            raise ValueError(f"{request.model} {request.action} is not a synchronous action")
        body = openai.request_body(action, request)
        response = await self._send(
            "POST",
            f"{self._llm_base_url}/{action.submit_path}",
            action.submit_path,
            json=body,
            read_limits=self._sync_timeout(),
        )
        if len(response.content) > _INLINE_PARSE_BYTES:
            return await asyncio.to_thread(self._sync_answer, action, response)
        return self._sync_answer(action, response)

    def _sync_answer(self, action: ActionSpec, response: httpx.Response) -> SyncAnswer:
        return openai.sync_answer(action, openai.read_answer(response, redact=self._redact))

    async def llm_call_path(
        self, method: str, path: str, *, json: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request to any path of the OpenAI-compatible host, read like every answer there
        (for diagnostics, `metachat.probe`)."""
        path = path.strip("/")
        response = await self._send(method, f"{self._llm_base_url}/{path}", path, json=json)
        return openai.read_answer(response, redact=self._redact)

    def _sync_timeout(self) -> httpx.Timeout:
        current = self._http.timeout
        return httpx.Timeout(
            connect=current.connect,
            read=self._sync_read_timeout,
            write=current.write,
            pool=current.pool,
        )

    async def fetch(self, model: str, action: str, task_id: str) -> UpstreamTask:
        """The task's current state. Every retryable error (``is_retryable``) is safe to retry.

        An action with a fallback result path (the Midjourney video result) is polled on the
        path that last answered; when that one does not know the task, or does not exist, the
        other is asked once and remembered. A wrong guess costs one extra request per process.
        """
        spec = self._catalogue.action(model, action)
        if spec.result_fallback_path is None:
            data = await self._call("GET", spec.result_path_for(task_id), fetching=True)
        else:
            data = await self._fetch_either(spec.result_path, spec.result_fallback_path, task_id)
        return normalise.upstream_task(data, task_id=task_id, result_field=spec.result_field)

    async def _fetch_either(self, result_path: str, fallback_path: str, task_id: str) -> Any:
        pair = (result_path, fallback_path)
        first = self._answering_path.get(pair, result_path)
        second = fallback_path if first == result_path else result_path
        try:
            data = await self._call("GET", path_with_id(first, task_id), fetching=True)
        except (UpstreamTaskNotFound, UpstreamEndpointMissing) as missed:
            try:
                data = await self._call("GET", path_with_id(second, task_id), fetching=True)
            except (UpstreamTaskNotFound, UpstreamEndpointMissing) as also_missed:
                # Both asked: a path that exists and does not know the task is the answer.
                if isinstance(missed, UpstreamTaskNotFound):
                    raise missed from None
                raise also_missed from None
            logger.info("metachat: %s answered for a task %s did not know", second, first)
            self._answering_path[pair] = second
            return data
        self._answering_path[pair] = first
        return data

    async def balance(self) -> int | None:
        """The account's API points, rounded down; None when MetaChat does not say."""
        data = await self._call("GET", self._catalogue.balance_path, fetching=False)
        return normalise.balance_points(data)

    async def usage_records(self, page: int = 1, size: int = 50) -> list[UsageRecord]:
        """One page (1-based) of the account's point usage."""
        data = await self._call(
            "GET",
            self._catalogue.usage_path,
            params={"page": page, "size": size},
            fetching=False,
        )
        return normalise.usage_records(data)

    async def call_path(
        self,
        method: str,
        path: str,
        *,
        fetching: bool,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """One request to any path under the base URL, read like every other answer: the
        envelope's ``data`` or the matching `UpstreamError`. For diagnostics
        (`metachat.probe`); jobs go through `submit` and `fetch`."""
        return await self._call(
            method, path.strip("/"), fetching=fetching, json=json, params=params
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        fetching: bool,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        response = await self._send(
            method, f"{self._base_url}/{path}", path, json=json, params=params
        )
        return read_envelope(response, fetching=fetching, redact=self._redact)

    async def _send(
        self,
        method: str,
        url: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        read_limits: httpx.Timeout | None = None,
    ) -> httpx.Response:
        started = time.monotonic()
        extra: dict[str, Any] = {} if read_limits is None else {"timeout": read_limits}
        try:
            response = await self._http.request(
                method, url, json=json, params=params, headers=self._headers, **extra
            )
        except _NOT_SENT as exc:
            raise UpstreamTransient(
                f"could not reach MetaChat: {self._redact(_describe(exc))}", sent=False
            ) from exc
        except httpx.RequestError as exc:
            raise UpstreamUncertain(
                f"no answer from MetaChat after sending {method} {path}: "
                f"{self._redact(_describe(exc))}"
            ) from exc
        logger.debug(
            "metachat %s %s -> %s in %.3fs",
            method,
            path,
            response.status_code,
            time.monotonic() - started,
        )
        return response

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def _describe(exc: Exception) -> str:
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__

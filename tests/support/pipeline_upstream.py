"""Canned MetaChat answers for pump tests on an ``httpx.MockTransport``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

Reply = Callable[[httpx.Request], httpx.Response]


def envelope(data: Any = None, *, status: str = "Success", message: str = "ok") -> dict[str, Any]:
    return {"status": status, "message": message, "data": data}


def submitted(task_id: str = "task-1") -> Reply:
    return lambda request: httpx.Response(200, json=envelope({"id": task_id}))


def refused(message: str = "绘图描述中存在错误的参数，请修改后重新提交。") -> Reply:  # noqa: RUF001
    return lambda request: httpx.Response(200, json=envelope(status="Fail", message=message))


def http_error(code: int, **headers: str) -> Reply:
    kinds = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
    body = {"status": kinds.get(code, "internal_error"), "message": f"HTTP {code}"}
    return lambda request: httpx.Response(code, json=body, headers=headers)


def html(code: int) -> Reply:
    page = b"<html><body><h1>Bad Gateway</h1></body></html>"
    return lambda request: httpx.Response(code, content=page, headers={"content-type": "text/html"})


def raises(error: type[httpx.TransportError]) -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)

    return reply


def task(status: str, **fields: Any) -> Reply:
    """A result answer for whatever task id is asked."""

    def reply(request: httpx.Request) -> httpx.Response:
        task_id = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=envelope({"id": task_id, "status": status, **fields}))

    return reply


class Recorder:
    """A MockTransport handler that answers with ``reply`` and keeps every request."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests if request.content]

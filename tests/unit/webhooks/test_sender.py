"""One attempt, without sockets: where the sender connects, what it sends, how it reads answers."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

import httpx
import pytest
from standardwebhooks import Webhook

from core.keys import new_webhook_secret
from core.webhooks.attempts import AttemptKind, AttemptResult
from core.webhooks.sender import OutgoingWebhook, WebhookSender, build_request
from core.webhooks.ssrf import resolve_destination
from tests.support.webhook_dns import fake_dns

PUBLIC_A = "93.184.216.34"
PUBLIC_B = "93.184.216.35"
SECRET = new_webhook_secret()
BODY = '{"data":{"id":"job_1"},"type":"job.succeeded"}'


def _send(
    handler: Callable[[httpx.Request], httpx.Response], url: str, **kwargs: object
) -> AttemptResult:
    async def run() -> AttemptResult:
        sender = WebhookSender(
            timeout=5.0,
            allow_private=False,
            transport=httpx.MockTransport(handler),
            **kwargs,  # type: ignore[arg-type]
        )
        try:
            return await sender.send(OutgoingWebhook("msg_1", url, BODY, (SECRET,)))
        finally:
            await sender.aclose()

    return asyncio.run(run())


def test_a_name_that_rebinds_to_loopback_after_the_check_is_still_sent_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [[PUBLIC_A]]
    fake_dns(
        monkeypatch, {"hooks.example.com": lambda: answers.pop(0) if answers else ["127.0.0.1"]}
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    result = _send(handler, "https://hooks.example.com/cb?x=1")
    assert result.kind is AttemptKind.DELIVERED
    [request] = seen
    assert request.url.host == PUBLIC_A
    assert request.url.raw_path == b"/cb?x=1"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert Webhook(SECRET).verify(request.content.decode(), dict(request.headers))


def test_a_name_that_now_resolves_to_a_private_address_is_not_contacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"hooks.example.com": ["10.0.0.7"]})
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    result = _send(handler, "https://hooks.example.com/")
    assert seen == []
    assert result.kind is AttemptKind.FAILED
    assert result.error is not None and "resolves to a private address" in result.error
    assert "10.0.0.7" not in result.error


def test_when_the_first_address_refuses_the_connection_the_next_checked_one_is_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC_A, PUBLIC_B]})
    tried: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if request.url.host == PUBLIC_A:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200)

    assert _send(handler, "http://hooks.example.com/").kind is AttemptKind.DELIVERED
    assert tried == [PUBLIC_A, PUBLIC_B]


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        pytest.param(200, AttemptKind.DELIVERED, None, id="200"),
        pytest.param(202, AttemptKind.DELIVERED, None, id="202"),
        pytest.param(301, AttemptKind.FAILED, "redirect (301) not followed", id="301"),
        pytest.param(307, AttemptKind.FAILED, "redirect (307) not followed", id="307"),
        pytest.param(400, AttemptKind.FAILED, "HTTP 400", id="400"),
        pytest.param(410, AttemptKind.GONE, "410 Gone", id="410"),
        pytest.param(500, AttemptKind.FAILED, "HTTP 500", id="500"),
    ],
)
def test_answers_are_classified(status: int, kind: AttemptKind, error: str | None) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(status, headers={"Location": "http://10.0.0.1/"}, text="answer")

    result = _send(handler, f"http://{PUBLIC_A}/hook")
    assert (result.kind, result.status_code) == (kind, status)
    assert result.error == error or (error is not None and error in (result.error or ""))
    assert result.response_excerpt == "answer"
    assert len(calls) == 1  # a redirect's Location is never visited


def test_a_transport_error_is_a_failed_attempt_not_an_exception() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    result = _send(handler, f"http://{PUBLIC_A}/hook")
    assert result.kind is AttemptKind.FAILED
    assert result.error == "request failed: peer closed connection"


def test_only_the_first_bytes_of_an_answer_are_kept() -> None:
    result = _send(
        lambda _r: httpx.Response(500, content=b"y" * 100_000),
        f"http://{PUBLIC_A}/hook",
        max_response_bytes=64,
    )
    assert result.response_excerpt == "y" * 64


def test_an_ipv6_destination_is_addressed_in_brackets_without_sni() -> None:
    destination = resolve_destination("https://[2606:2800:220:1::1]:8443/x", allow_private=False)
    request = build_request(
        destination, ipaddress.ip_address("2606:2800:220:1::1"), body=b"{}", headers={}
    )
    assert str(request.url) == "https://[2606:2800:220:1::1]:8443/x"
    assert request.headers["host"] == "[2606:2800:220:1::1]:8443"
    assert "sni_hostname" not in request.extensions

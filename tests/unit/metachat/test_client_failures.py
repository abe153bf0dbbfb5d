"""Transport failures mapped to the taxonomy, and secrets kept out of every error."""

from __future__ import annotations

import httpx
import pytest

from metachat import (
    MetaChatClient,
    SubmitRequest,
    UpstreamError,
    UpstreamRejected,
    UpstreamTransient,
    UpstreamUncertain,
    build_catalogue,
    make_http_client,
)
from tests.unit.metachat.conftest import API_KEY, APP_ID, BASE_URL, Upstream, make_client

pytestmark = pytest.mark.anyio

IMAGINE = SubmitRequest("mj-v7", "imagine", prompt="a lighthouse")


def raising(exc_type: type[httpx.RequestError]) -> Upstream:
    def respond(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return Upstream(respond)


NOT_SENT = [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError]
SENT = [
    httpx.ReadTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteTimeout,
    httpx.WriteError,
]


@pytest.mark.parametrize("exc_type", NOT_SENT, ids=[e.__name__ for e in NOT_SENT])
async def test_a_request_that_never_left_is_a_transient_error_safe_to_resend(
    exc_type: type[httpx.RequestError],
) -> None:
    with pytest.raises(UpstreamTransient) as caught:
        await make_client(raising(exc_type)).submit(IMAGINE)
    assert caught.value.sent is False
    assert caught.value.is_retryable


@pytest.mark.parametrize("exc_type", SENT, ids=[e.__name__ for e in SENT])
async def test_a_submit_lost_after_sending_is_uncertain_not_transient(
    exc_type: type[httpx.RequestError],
) -> None:
    with pytest.raises(UpstreamUncertain) as caught:
        await make_client(raising(exc_type)).submit(IMAGINE)
    assert not isinstance(caught.value, UpstreamTransient)


@pytest.mark.parametrize("exc_type", SENT, ids=[e.__name__ for e in SENT])
async def test_a_fetch_lost_after_sending_is_simply_retryable(
    exc_type: type[httpx.RequestError],
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await make_client(raising(exc_type)).fetch("mj-v7", "imagine", "t-1")
    assert caught.value.is_retryable


async def test_a_real_refused_connection_is_transient_and_unsent() -> None:
    # Port 9 on loopback has no listener here: a genuine ConnectError, no mock.
    http = make_http_client(connect_timeout=2.0)
    async with http:
        client = MetaChatClient(http, build_catalogue(), base_url=BASE_URL, api_key=API_KEY)
        with pytest.raises(UpstreamTransient) as caught:
            await client.submit(IMAGINE)
    assert caught.value.sent is False


async def test_an_upstream_message_echoing_the_key_is_redacted() -> None:
    upstream = Upstream(
        lambda r: httpx.Response(
            200, json={"status": "Fail", "message": f"bad key {API_KEY} for app {APP_ID}"}
        )
    )
    with pytest.raises(UpstreamRejected) as caught:
        await make_client(upstream, app_id=APP_ID).submit(IMAGINE)
    for text in (str(caught.value), repr(caught.value), caught.value.message):
        assert API_KEY not in text
        assert APP_ID not in text
    assert "[redacted]" in str(caught.value)


async def test_a_transport_error_mentioning_the_key_is_redacted() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout(f"timed out talking with {request.headers['authorization']}")

    with pytest.raises(UpstreamUncertain) as caught:
        await make_client(Upstream(respond)).submit(IMAGINE)
    assert API_KEY not in str(caught.value)


def test_the_client_repr_shows_no_secrets() -> None:
    client = make_client(Upstream(lambda r: httpx.Response(200)), app_id=APP_ID)
    assert API_KEY not in repr(client)
    assert APP_ID not in repr(client)
    assert BASE_URL in repr(client)


async def test_the_http_client_has_explicit_timeouts_and_never_follows_redirects() -> None:
    http = make_http_client(
        connect_timeout=1.0, read_timeout=20.0, write_timeout=7.0, pool_timeout=2.0
    )
    async with http:
        assert http.timeout == httpx.Timeout(connect=1.0, read=20.0, write=7.0, pool=2.0)
        assert http.follow_redirects is False


async def test_a_redirect_is_not_followed_but_reported_as_unreadable() -> None:
    upstream = Upstream(
        lambda r: httpx.Response(302, headers={"Location": "https://elsewhere.example/"})
    )
    with pytest.raises(UpstreamError) as caught:
        await make_client(upstream).fetch("mj-v7", "imagine", "t-1")
    assert len(upstream.requests) == 1
    assert caught.value.http_status == 302

"""The OpenAI-compatible host through the client: request bodies, decoded answers, usage and
cost, and every error in OpenAI's format mapped to the same classes as the media API's."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from metachat import (
    CatalogueOverrides,
    SpecError,
    SubmitRequest,
    UpstreamAuthError,
    UpstreamEndpointMissing,
    UpstreamInvalidResponse,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTransient,
    UpstreamUncertain,
    UpstreamUnknownModel,
    build_catalogue,
)
from metachat.client import MetaChatClient, make_http_client
from sim.storage import png_bytes

pytestmark = pytest.mark.anyio

KEY = "sk-openai-host-secret-1234"
PNG = png_bytes("job", "0.png", size=4)
IMAGES_ANSWER = {
    "created": 1,
    "data": [{"b64_json": base64.b64encode(PNG).decode()}],
    "usage": {"input_tokens": 12, "output_tokens": 1056, "total_tokens": 1068},
}
CHAT_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Blue."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
}


def client_for(
    answer: httpx.Response | Exception, *, overrides: dict[str, Any] | None = None
) -> tuple[MetaChatClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = make_http_client(transport=httpx.MockTransport(respond))
    catalogue = build_catalogue(CatalogueOverrides.model_validate(overrides or {}))
    client = MetaChatClient(
        http,
        catalogue,
        base_url="https://api.example/open/v1",
        api_key=KEY,
        llm_base_url="https://llm.example/v1",
        sync_read_timeout=150.0,
    )
    return client, seen


async def test_a_gpt_image_call_sends_openai_knobs_and_decodes_the_png() -> None:
    client, seen = client_for(
        httpx.Response(200, json=IMAGES_ANSWER),
        overrides={"usage_prices": {"gpt-image-1.5": {"per_image": 3.5}}},
    )
    params = {"size": "1536x1024", "quality": "high", "background": "transparent", "n": 1}
    answer = await client.call(
        SubmitRequest("gpt-image-1.5", "generate", prompt="a red kite", params=params)
    )
    (request,) = seen
    assert str(request.url) == "https://llm.example/v1/images/generations"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    sent = json.loads(request.content)
    assert sent == {"model": "gpt-image-1.5", "prompt": "a red kite", **params}
    assert request.extensions["timeout"]["read"] == 150.0
    assert [(i.data, i.content_type) for i in answer.images] == [(PNG, "image/png")]
    assert answer.usage == {"input_tokens": 12, "output_tokens": 1056, "total_tokens": 1068}
    assert answer.points == 4  # 3.5 per image, rounded up
    assert answer.raw["data"] == [{"b64_json": f"<{len(PNG)} bytes>"}]


async def test_an_edit_sends_its_references_as_image_urls() -> None:
    client, seen = client_for(httpx.Response(200, json=IMAGES_ANSWER))
    images = [{"url": "https://example.com/a.png"}, {"url": "data:image/png;base64,AAAA"}]
    await client.call(SubmitRequest("gpt-image-1", "edit", prompt="add a hat", images=images))
    sent = json.loads(seen[0].content)
    assert seen[0].url.path == "/v1/images/edits"
    assert sent["images"] == [
        {"image_url": "https://example.com/a.png"},
        {"image_url": "data:image/png;base64,AAAA"},
    ]


async def test_google_image_models_ask_for_base64_by_default() -> None:
    client, seen = client_for(httpx.Response(200, json=IMAGES_ANSWER))
    await client.call(SubmitRequest("imagen-4.0-generate-001", "generate", prompt="a fox"))
    assert json.loads(seen[0].content)["response_format"] == "b64_json"


async def test_a_chat_sends_messages_then_the_prompt_and_reads_text_and_usage() -> None:
    client, seen = client_for(
        httpx.Response(200, json=CHAT_ANSWER),
        overrides={"usage_prices": {"gpt-4.1": {"per_1k_output_tokens": 1000}}},
    )
    messages = [{"role": "system", "content": "Be brief."}]
    answer = await client.call(
        SubmitRequest(
            "gpt-4.1",
            "chat",
            prompt="Why is the sea blue?",
            params={"messages": messages, "temperature": 0.2},
        )
    )
    assert json.loads(seen[0].content) == {
        "model": "gpt-4.1",
        "messages": [*messages, {"role": "user", "content": "Why is the sea blue?"}],
        "temperature": 0.2,
    }
    assert (answer.text, answer.finish_reason) == ("Blue.", "stop")
    assert answer.usage == {"input_tokens": 20, "output_tokens": 2, "total_tokens": 22}
    assert answer.points == 2


async def test_no_price_means_an_unknown_cost_not_zero() -> None:
    client, _ = client_for(httpx.Response(200, json=CHAT_ANSWER))
    answer = await client.call(SubmitRequest("gpt-4.1", "chat", prompt="hi"))
    assert answer.points is None


def error(status: int, kind: str, code: str | None = None, **headers: str) -> httpx.Response:
    body = {"error": {"message": f"{kind} says no", "type": kind, "param": None, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (error(400, "invalid_request_error"), UpstreamRejected),
        (error(401, "invalid_request_error", "invalid_api_key"), UpstreamAuthError),
        (error(403, "permission_error"), UpstreamAuthError),
        (error(404, "invalid_request_error", "model_not_found"), UpstreamUnknownModel),
        (httpx.Response(404, json={"status": "not_found_error"}), UpstreamEndpointMissing),
        (
            error(429, "requests", "rate_limit_exceeded", **{"Retry-After": "7"}),
            UpstreamRateLimited,
        ),
        (error(429, "insufficient_quota", "insufficient_quota"), UpstreamQuotaExceeded),
        (error(500, "server_error"), UpstreamTransient),
        (httpx.Response(502, text="<html>bad gateway</html>"), UpstreamTransient),
        (httpx.Response(200, text="<html>OK</html>"), UpstreamInvalidResponse),
        (httpx.Response(200, json={"data": []}), UpstreamInvalidResponse),
        (httpx.Response(200, json={"data": [{"b64_json": "@@"}]}), UpstreamInvalidResponse),
        (httpx.ReadTimeout("slow"), UpstreamUncertain),
        (httpx.ConnectError("refused"), UpstreamTransient),
    ],
    ids=[
        "bad-request",
        "bad-key",
        "forbidden",
        "unknown-model",
        "no-such-path",
        "rate-limited",
        "quota",
        "server-error",
        "proxy-page",
        "not-json",
        "no-images",
        "bad-base64",
        "read-timeout",
        "not-sent",
    ],
)
async def test_openai_errors_map_to_the_same_classes_as_the_media_api(
    answer: httpx.Response | Exception, raised: type[Exception]
) -> None:
    client, _ = client_for(answer)
    with pytest.raises(raised) as caught:
        await client.call(SubmitRequest("gpt-image-1", "generate", prompt="x"))
    assert KEY not in str(caught.value)
    if isinstance(caught.value, UpstreamRateLimited):
        assert caught.value.retry_after == 7
    if isinstance(caught.value, UpstreamTransient) and isinstance(answer, httpx.ConnectError):
        assert caught.value.sent is False


CATALOGUE = build_catalogue()


@pytest.mark.parametrize(
    ("model", "action", "prompt", "params", "images", "loc"),
    [
        ("gpt-image-1", "generate", "x", {"n": 11}, [], ("params", "n")),
        ("gpt-image-1", "generate", "x", {"size": "999x999"}, [], ("params", "size")),
        ("gpt-image-1", "generate", "x", {"output_format": "gif"}, [], ("params", "output_format")),
        ("gpt-image-1", "generate", None, {}, [], ("prompt",)),
        ("gpt-image-1", "edit", "x", {}, [], ("images",)),
        ("gpt-4.1", "chat", None, {}, [], ("params", "messages")),
        ("gpt-4.1", "chat", None, {"messages": [{"role": "robot", "content": "x"}]}, [], None),
        ("gpt-4.1", "chat", "x", {"temperature": 3}, [], ("params", "temperature")),
    ],
    ids=[
        "too-many",
        "odd-size",
        "gif",
        "no-prompt",
        "edit-without-image",
        "empty-chat",
        "bad-role",
        "hot",
    ],
)
def test_bad_specs_point_at_the_field(
    model: str,
    action: str,
    prompt: str | None,
    params: dict[str, Any],
    images: list[dict[str, Any]],
    loc: tuple[str, ...] | None,
) -> None:
    with pytest.raises(SpecError) as caught:
        CATALOGUE.validate(
            model=model,
            action=action,
            prompt=prompt,
            params=params,
            images=images,
            has_source=False,
            source_index=None,
        )
    locs = [found for found, _ in caught.value.errors]
    if loc is None:
        assert locs and locs[0][:2] == ("params", "messages")
    else:
        assert loc in locs


def test_extra_chat_models_and_usage_prices_are_catalogue_settings() -> None:
    catalogue = build_catalogue(
        CatalogueOverrides.model_validate(
            {
                "chat_models": ["mistral-large-latest"],
                "usage_prices": {"mistral-large-latest": {"per_1k_input_tokens": 1}},
                "paths": {"chat.completions": "openai/chat/completions"},
            }
        )
    )
    spec = catalogue.action("mistral-large-latest")
    assert (spec.name, spec.submit_path, spec.sync) == ("chat", "openai/chat/completions", True)
    assert spec.usage_prices.points(images=0, input_tokens=1500, output_tokens=9) == 2
    with pytest.raises(ValueError, match="usage_prices"):
        build_catalogue(CatalogueOverrides.model_validate({"usage_prices": {"nope": {}}}))

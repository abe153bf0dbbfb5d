"""The OpenAI-compatible host: request bodies and answers for images and chat completions.

These calls are synchronous: one request, and its answer is the result (images as base64,
text, token usage). Bodies follow OpenAI's shapes; errors come in OpenAI's format
``{"error": {"message", "type", "param", "code"}}`` and map onto the same `UpstreamError`
classes as the media API's envelope, so the pumps judge both the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from metachat.envelope import MAX_MESSAGE_CHARS, rejection
from metachat.errors import (
    UpstreamAuthError,
    UpstreamEndpointMissing,
    UpstreamInvalidResponse,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTransient,
    UpstreamUnknownModel,
    parse_retry_after,
)
from metachat.specs import ActionSpec
from metachat.tasks import SubmitRequest

# OpenAI's error codes that mean "the account has no money left", not "slow down".
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
_MODEL_CODES = frozenset({"model_not_found"})


@dataclass(frozen=True)
class GeneratedImage:
    """One decoded picture of an images answer."""

    data: bytes
    content_type: str


@dataclass(frozen=True)
class SyncAnswer:
    """A synchronous call's whole result, in our words.

    ``usage`` uses ``input_tokens`` / ``output_tokens`` / ``total_tokens`` whichever names the
    answer used (chat's ``prompt_tokens`` / ``completion_tokens`` included); a count the answer
    did not give is absent. ``points``: the cost from the catalogue's usage prices, None when
    unknown. ``raw`` is the answer with each base64 payload replaced by its decoded size.
    """

    images: list[GeneratedImage] = field(default_factory=list)
    text: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str | None = None
    points: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def request_body(action: ActionSpec, request: SubmitRequest) -> dict[str, Any]:
    """The JSON body for a synchronous action."""
    params = {
        key: value
        for key, value in {**action.default_params, **request.params}.items()
        if value is not None
    }
    if action.body == "openai_chat":
        messages = list(params.pop("messages", None) or [])
        if request.prompt is not None:
            messages.append({"role": "user", "content": request.prompt})
        return {"model": request.model, "messages": messages, **params}
    body: dict[str, Any] = {"model": request.model, "prompt": request.prompt or "", **params}
    if action.body == "openai_edits":
        # The JSON form of images/edits (references by URL, data URLs included); see
        # docs/upstream.md for why not multipart.
        body["images"] = [{"image_url": image["url"]} for image in request.images]
    return body


def read_answer(response: httpx.Response, *, redact: Callable[[str], str]) -> dict[str, Any]:
    """The answer's JSON object when it succeeded; otherwise the matching `UpstreamError`."""
    code = response.status_code
    body = _json_object(response)
    error = body.get("error") if body is not None else None
    if code < 300 and body is not None and not error:
        return body
    detail = error if isinstance(error, dict) else {}
    if not detail and body is not None and isinstance(body.get("message"), str):
        detail = {"message": body["message"]}  # a MetaChat envelope on this host
    message = redact(_message(detail, error, response))
    kind = str(detail.get("type") or "")
    err_code = str(detail.get("code") or "")
    if err_code in _QUOTA_CODES or kind in _QUOTA_CODES:
        raise UpstreamQuotaExceeded(message, http_status=code)
    if code in (401, 403) or kind in ("authentication_error", "permission_error"):
        auth_kind = (
            "permission_error"
            if code == 403 or kind == "permission_error"
            else ("authentication_error")
        )
        raise UpstreamAuthError(message, kind=auth_kind, http_status=code)
    if code == 429 or kind == "rate_limit_error":
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        problem = rejection(message, http_status=code)
        if isinstance(problem, UpstreamQuotaExceeded):
            raise problem
        raise UpstreamRateLimited(message, http_status=code, retry_after=retry_after)
    if err_code in _MODEL_CODES:
        raise UpstreamUnknownModel(message, received=None, allowed=(), http_status=code)
    if code >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise UpstreamTransient(message, sent=True, http_status=code, retry_after=retry_after)
    if code == 404 and not error:
        path = response.request.url.path
        raise UpstreamEndpointMissing(
            f"MetaChat has no such endpoint ({path}); check the catalogue paths "
            f"(mcjobs upstream check): {message}",
            path=path,
            http_status=code,
        )
    if code >= 400 or error:
        param = detail.get("param")
        named = f" (param {param})" if isinstance(param, str) and param else ""
        raise rejection(f"{message}{named}", http_status=code)
    raise UpstreamInvalidResponse(
        f"MetaChat answered HTTP {code} with a body that is not a JSON object", http_status=code
    )


def sync_answer(action: ActionSpec, body: Mapping[str, Any]) -> SyncAnswer:
    """Decode an answer the host accepted; `UpstreamInvalidResponse` when it has no output."""
    usage = _usage(body.get("usage"))
    if action.body == "openai_chat":
        text, finish = _chat_text(body)
        images: list[GeneratedImage] = []
        raw = dict(body)
    else:
        images, raw = _images(body)
        text, finish = None, None
    points = action.usage_prices.points(
        images=len(images),
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
    )
    return SyncAnswer(
        images=images, text=text, usage=usage, finish_reason=finish, points=points, raw=raw
    )


def _images(body: Mapping[str, Any]) -> tuple[list[GeneratedImage], dict[str, Any]]:
    entries = body.get("data")
    if not isinstance(entries, list) or not entries:
        raise UpstreamInvalidResponse("the images answer has no data[]")
    images: list[GeneratedImage] = []
    kept: list[Any] = []
    fallback_type = _content_type_for(body.get("output_format"))
    for index, entry in enumerate(entries):
        payload = entry.get("b64_json") if isinstance(entry, dict) else None
        if not isinstance(payload, str) or not payload:
            raise UpstreamInvalidResponse(f"data[{index}] of the images answer has no b64_json")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise UpstreamInvalidResponse(
                f"data[{index}].b64_json of the images answer is not base64"
            ) from None
        images.append(GeneratedImage(data, _sniff(data) or fallback_type))
        kept.append({**entry, "b64_json": f"<{len(data)} bytes>"})
    return images, {**body, "data": kept}


def _chat_text(body: Mapping[str, Any]) -> tuple[str, str | None]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamInvalidResponse("the chat answer has no choices[]")
    choice = choices[0]
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        if isinstance(message, dict) and message.get("refusal"):
            raise UpstreamRejected(f"the model refused: {str(message['refusal'])[:300]}")
        raise UpstreamInvalidResponse("the chat answer's first choice has no text content")
    finish = choice.get("finish_reason")
    return content, finish if isinstance(finish, str) else None


def _usage(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    names = {
        "input_tokens": ("input_tokens", "prompt_tokens"),
        "output_tokens": ("output_tokens", "completion_tokens"),
        "total_tokens": ("total_tokens",),
    }
    usage: dict[str, int] = {}
    for ours, theirs in names.items():
        for name in theirs:
            count = value.get(name)
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                usage[ours] = count
                break
    return usage


def _content_type_for(output_format: object) -> str:
    return {"jpeg": "image/jpeg", "webp": "image/webp"}.get(str(output_format), "image/png")


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _message(detail: Mapping[str, Any], error: object, response: httpx.Response) -> str:
    text = detail.get("message") if detail else error
    if not isinstance(text, str) or not text.strip():
        text = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return text.strip()[:MAX_MESSAGE_CHARS]

"""Reading a MetaChat answer: HTTP status plus the ``{status, message, data}`` envelope.

MetaChat reports problems in two layers: HTTP codes for service-level failures (401, 403, 429,
5xx, with the error *type* in the body's ``status``), and HTTP 200 with ``status: "Fail"`` for
refusals. It mixes them too (a 500 carrying ``Fail`` for an unknown video task), so the decision
looks at both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from metachat.errors import (
    UpstreamAuthError,
    UpstreamEndpointMissing,
    UpstreamInvalidResponse,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTaskNotFound,
    UpstreamTransient,
    UpstreamUnknownModel,
    parse_retry_after,
)

MAX_MESSAGE_CHARS = 500

_AUTH_KINDS = {"authentication_error": 401, "permission_error": 403}
_NOT_FOUND = re.compile(r"not\s*found|不存在", re.IGNORECASE)
# Seen live in English; the Chinese wordings are our guess at the same refusal.
_QUOTA = re.compile(
    r"exceeded your current api quota|purchase the api points|余额不足|元点不足", re.I
)
_ENUM = re.compile(
    r"Invalid enum value\.\s*Expected (?P<expected>.*?),?\s*received '(?P<got>[^']*)'"
)


def read_envelope(response: httpx.Response, *, fetching: bool, redact: Callable[[str], str]) -> Any:
    """The envelope's ``data`` for a successful answer; otherwise the matching `UpstreamError`.

    ``fetching``: the call reads an existing task, so "not found" means the task is gone.
    ``redact`` scrubs secrets from any text copied out of the answer.
    """
    code = response.status_code
    body = _json_object(response)
    kind = body.get("status") if body is not None else None
    kind_word = kind.strip().lower() if isinstance(kind, str) else None
    message = redact(_message(body, response))
    refused = code >= 300 or kind_word not in (None, "success")

    # The message first: a quota reported as a 429 is not a rate limit that waiting will clear.
    if refused and _QUOTA.search(message):
        raise UpstreamQuotaExceeded(message, http_status=code)
    if code in (401, 403) or kind_word in _AUTH_KINDS:
        auth_kind = kind_word if kind_word in _AUTH_KINDS else _auth_kind_for(code)
        raise UpstreamAuthError(message, kind=auth_kind, http_status=code)
    if code == 429 or kind_word == "rate_limit_error":
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise UpstreamRateLimited(message, http_status=code, retry_after=retry_after)
    if fetching and kind_word == "fail" and _NOT_FOUND.search(message):
        raise UpstreamTaskNotFound(message, http_status=code)
    if code >= 500 or kind_word == "internal_error":
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise UpstreamTransient(message, sent=True, http_status=code, retry_after=retry_after)
    if code == 404 and kind_word != "fail":
        path = response.request.url.path
        raise UpstreamEndpointMissing(
            f"MetaChat has no such endpoint ({path}); check the catalogue paths "
            f"(mcjobs upstream check): {message}",
            path=path,
            http_status=code,
        )
    if code == 413:
        raise UpstreamRejected(f"request too large for MetaChat: {message}", http_status=code)
    if code >= 400:
        raise rejection(message, http_status=code)
    if code >= 300 or body is None:
        raise UpstreamInvalidResponse(
            f"MetaChat answered HTTP {code} with {_describe_body(response)}", http_status=code
        )
    if kind is None or kind_word == "success":
        return body.get("data")
    raise rejection(message, http_status=code)


def rejection(message: str, *, http_status: int | None) -> UpstreamRejected:
    """The most specific `UpstreamRejected` for a refusal message."""
    if _QUOTA.search(message):
        return UpstreamQuotaExceeded(message, http_status=http_status)
    enum = _ENUM.search(message)
    if enum:
        allowed = tuple(re.findall(r"'([^']*)'", enum["expected"]))
        return UpstreamUnknownModel(
            message, received=enum["got"], allowed=allowed, http_status=http_status
        )
    return UpstreamRejected(message, http_status=http_status)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _message(body: dict[str, Any] | None, response: httpx.Response) -> str:
    text = None
    if body is not None:
        for key in ("message", "msg", "error"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                text = value.strip()
                break
    if text is None:
        # Never echo a proxy's HTML page; the code and reason say enough.
        text = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return text[:MAX_MESSAGE_CHARS]


def _describe_body(response: httpx.Response) -> str:
    if not response.content:
        return "an empty body"
    if _json_object(response) is None:
        content_type = response.headers.get("content-type", "unknown type")
        return f"a body that is not a JSON object ({content_type})"
    return "an unexpected body"


def _auth_kind_for(code: int) -> str:
    return "permission_error" if code == 403 else "authentication_error"

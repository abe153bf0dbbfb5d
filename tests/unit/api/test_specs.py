"""Job specs: what the JSON shape refuses before the catalogue sees it, and request hashes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.idempotency import fingerprint
from core.submission import JobSpec, json_problem, metadata_problem, webhook_url_problem


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"a": [1, "ok", {"b": None}]}, None, id="plain-json"),
        pytest.param({"a": "x\x00"}, (("a",), "must not contain NUL characters"), id="nul"),
        pytest.param(
            {"a": "\ud800"},
            (("a",), "must be valid Unicode (no lone surrogates)"),
            id="lone-surrogate",
        ),
        pytest.param({"a": [float("nan")]}, (("a", 0), "must be a finite number"), id="nan"),
    ],
)
def test_json_that_cannot_be_stored_is_found(value: Any, expected: Any) -> None:
    assert json_problem(value) == expected


def test_json_nested_too_deep_is_found() -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]

    found = json_problem(deep)

    assert found is not None
    assert "nested deeper" in found[1]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param({"model": "m", "priority": 1.5}, "priority", id="fractional-priority"),
        pytest.param({"model": "m", "deadline_seconds": 10**9}, "deadline_seconds", id="deadline"),
        pytest.param({"model": "m", "images": [{}] * 17}, "images", id="too-many-images"),
        pytest.param({"model": "m", "source": {"job_id": ""}}, "source", id="empty-source"),
        pytest.param({"model": "m", "params": [1]}, "params", id="params-not-object"),
    ],
)
def test_the_json_shape_is_checked_first(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(spec)

    assert caught.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        pytest.param("https://hooks.example.com/a?b=c", True, id="https"),
        pytest.param("http://127.0.0.1:8080/h", True, id="http-private-allowed"),
        pytest.param("https://user:pw@example.com/h", False, id="credentials"),
        pytest.param("ftp://example.com/h", False, id="ftp"),
        pytest.param("https:///no-host", False, id="no-host"),
        pytest.param("http://example.com:99999/h", False, id="bad-port"),
    ],
)
def test_webhook_urls_must_be_http(url: str, ok: bool) -> None:
    assert (webhook_url_problem(url, allow_private=True) is None) is ok


def test_metadata_is_limited_to_16_kib() -> None:
    assert metadata_problem({"k": "x" * 16_000}) is None
    assert "at most 16384 bytes" in (metadata_problem({"k": "x" * 16_400}) or "")


def test_a_request_hash_ignores_key_order_but_not_values() -> None:
    assert fingerprint("POST /v1/jobs", {"a": 1, "b": 2}) == fingerprint(
        "POST /v1/jobs", {"b": 2, "a": 1}
    )
    assert fingerprint("POST /v1/jobs", {"a": 1}) != fingerprint("POST /v1/jobs", {"a": 2})
    assert fingerprint("POST /v1/jobs", {"a": 1}) != fingerprint("POST /v1/batches", {"a": 1})

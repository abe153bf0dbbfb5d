"""Retry-After parsing and the status vocabulary mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from metachat import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTransient,
    UpstreamUncertain,
    parse_retry_after,
    task_status,
)

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Fri, 01 May 2026 12:00:30 GMT", 30.0),
        ("Fri, 01 May 2026 11:59:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
        ("nan", None),
    ],
    ids=[
        "seconds",
        "padded",
        "fraction",
        "zero",
        "negative-clamped",
        "http-date-ahead",
        "http-date-past",
        "garbage",
        "empty",
        "absent",
        "infinite",
        "nan",
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("value", "ours"),
    [
        ("submitted", "queued"),
        ("in_progress", "running"),
        ("success", "succeeded"),
        ("failure", "failed"),
        ("IN_PROGRESS", "running"),
        (" Success ", "succeeded"),
        (10, "queued"),
        (20, "running"),
        (30, "succeeded"),
        (40, "failed"),
        ("40", "failed"),
        ("NOT_START", "queued"),
    ],
    ids=lambda v: repr(v),
)
def test_upstream_statuses_map_to_ours(value: object, ours: str) -> None:
    assert task_status(value) == ours


@pytest.mark.parametrize("value", ["paused", "", 50, True, None, 30.0], ids=lambda v: repr(v))
def test_an_unknown_status_is_an_invalid_response_not_a_guess(value: object) -> None:
    with pytest.raises(UpstreamInvalidResponse):
        task_status(value)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (UpstreamTransient("x", sent=False), True),
        (UpstreamRateLimited("x", retry_after=3.0), True),
        (UpstreamUncertain("x"), True),
        (UpstreamRejected("x"), False),
        (UpstreamAuthError("x", kind="authentication_error"), False),
        (UpstreamInvalidResponse("x"), False),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, bool) else str(v),
)
def test_only_passing_trouble_is_retryable_for_reads(error: UpstreamError, retryable: bool) -> None:
    assert error.is_retryable is retryable

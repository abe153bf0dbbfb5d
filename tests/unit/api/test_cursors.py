"""Cursors are opaque round trips; anything else is refused, never a crash."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from core.queries import InvalidCursor, decode_cursor, encode_cursor

AT = dt.datetime(2026, 12, 1, 8, 30, 0, 123456, tzinfo=dt.UTC)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_a_cursor_gives_back_the_row_it_was_made_from(order: str) -> None:
    cursor = encode_cursor(order, AT, "job_01abc")  # type: ignore[arg-type]

    assert decode_cursor(cursor, order) == (AT, "job_01abc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("%%%", id="not-base64"),
        pytest.param("bm90IGpzb24", id="not-json"),
        pytest.param("eyJvIjogImRlc2MifQ", id="missing-fields"),
        pytest.param(encode_cursor("asc", AT, "job_1"), id="other-order"),
        pytest.param(
            "eyJvIjoiZGVzYyIsInQiOiIyMDI2LTEyLTAxVDA4OjMwOjAwIiwiaSI6ImpvYiJ9", id="naive"
        ),
        pytest.param("eyJvIjoiZGVzYyIsInQiOjUsImkiOiJqb2IifQ", id="time-not-text"),
    ],
)
def test_a_cursor_we_did_not_make_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, "desc")


def _crafted(**fields: object) -> str:
    raw = json.dumps({"o": "desc", "t": "2026-12-01T08:30:00+00:00", "i": "job_01abc", **fields})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(_crafted(i="job_\x00abc"), id="nul-in-the-id"),
        pytest.param(_crafted(i="job_01abc\n"), id="newline-after-the-id"),
        pytest.param(_crafted(i="x" * 300), id="not-an-id"),
        pytest.param(_crafted(t="0001-01-01T00:00:00+05:00"), id="before-year-1-in-utc"),
        pytest.param(_crafted(t="9999-12-31T23:59:59-05:00"), id="after-year-9999-in-utc"),
        pytest.param(_crafted(t=None), id="time-null"),
        pytest.param(base64.urlsafe_b64encode(b"[1, 2]").decode(), id="a-list"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(), id="binary"),
    ],
)
def test_a_crafted_cursor_is_refused_before_it_reaches_the_database(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, "desc")


def test_a_cursor_with_an_offset_is_read_in_utc() -> None:
    at, _ = decode_cursor(_crafted(t="2026-12-01T10:30:00+02:00"), "desc")

    assert at == dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC)
    assert at.utcoffset() == dt.timedelta(0)

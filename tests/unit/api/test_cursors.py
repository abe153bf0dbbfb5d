"""Cursors are opaque round trips; anything else is refused, never a crash."""

from __future__ import annotations

import datetime as dt

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

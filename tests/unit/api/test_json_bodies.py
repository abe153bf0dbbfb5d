"""Bodies beyond `json.loads`' own limits are 422 problems pointing at where they go wrong."""

from __future__ import annotations

import json

import pytest

from api.bodies import POINTED_DEPTH, parse_json_body
from api.errors import ProblemError


def _refusal(body: bytes) -> ProblemError:
    with pytest.raises(ProblemError) as refused:
        parse_json_body(body)
    assert refused.value.status == 422
    return refused.value


def test_nesting_too_deep_to_parse_points_at_the_first_bracket_too_deep() -> None:
    body = b'{"a": "[[[[", "b": ' + b"[" * 5000 + b"]" * 5000 + b"}"

    [error] = _refusal(body).errors

    # the brackets inside the string do not count; the object is level 1
    assert error["loc"] == [body.index(b"[[[[[") + POINTED_DEPTH - 1]


def test_an_integer_too_long_to_parse_is_pointed_at() -> None:
    body = b'{"digits": "' + b"9" * 5000 + b'", "n": -' + b"7" * 5000 + b"}"

    [error] = _refusal(body).errors

    assert error["loc"] == [body.index(b"-7")]
    assert "4300 digits" in error["msg"]


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"{", json.JSONDecodeError), (b'"\xff"', UnicodeDecodeError)],
)
def test_other_bad_bodies_are_left_to_fastapi(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_json_body(body)


def test_a_good_body_is_parsed() -> None:
    assert parse_json_body(b'{"n": ' + b"7" * 4000 + b"}") == {"n": int("7" * 4000)}

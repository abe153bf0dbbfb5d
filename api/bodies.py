"""JSON request bodies that Python's parser refuses for its own limits answer 422, like any
other JSON the API cannot take.

`json.loads` gives up on nesting deeper than the interpreter's recursion limit (RecursionError)
and on integers longer than `sys.get_int_max_str_digits()` (ValueError). FastAPI reports both as
a 400 "error parsing the body", which the API keeps for bodies that are not UTF-8. Routes built
with `JsonBodyRoute` parse the body here instead and answer such bodies with a 422 whose `loc`
is the character offset where the trouble starts, as it is for malformed JSON.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi import Request, Response
from fastapi.routing import APIRoute

from api.errors import invalid_request

# Deeper than any body the API takes (a batch's job metadata starts at level 4 and may nest 32
# levels); only used to point at where an unparseable body went too deep.
POINTED_DEPTH: Final = 64
# Strings are skipped whole, so brackets and digits inside them are not counted.
_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]|-?[0-9]+')


def _offset_of_depth(body: bytes, limit: int) -> int:
    depth = 0
    for token in _TOKENS.finditer(body):
        first = token.group()[:1]
        if first in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return token.start()
        elif first in (b"]", b"}"):
            depth -= 1
    return 0


def _offset_of_long_integer(body: bytes, digits: int) -> int:
    for token in _TOKENS.finditer(body):
        if len(token.group().lstrip(b"-")) > digits and token.group()[:1] != b'"':
            return token.start()
    return 0


def parse_json_body(body: bytes) -> Any:
    """`json.loads(body)`, with the parser's own limits refused as 422 problems."""
    try:
        return json.loads(body)
    except RecursionError:
        offset = _offset_of_depth(body, POINTED_DEPTH)
        raise invalid_request(
            [((offset,), "JSON nested too deeply")], "the body is not valid JSON"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise  # malformed JSON (422) and bodies that are not UTF-8 (400) as FastAPI answers them
    except ValueError:
        digits = sys.get_int_max_str_digits()
        offset = _offset_of_long_integer(body, digits)
        raise invalid_request(
            [((offset,), f"integers may have at most {digits} digits")],
            "the body is not valid JSON",
        ) from None


class _JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    """An `APIRoute` whose JSON body is parsed by `parse_json_body`
    (`APIRouter(route_class=JsonBodyRoute)`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_strict_json(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return with_strict_json

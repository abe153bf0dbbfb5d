"""RFC 9457 problem details: every error the API gives is `application/problem+json`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
MAX_ERRORS_SHOWN = 100

log = logging.getLogger(__name__)
_KNOWN = frozenset(status.value for status in HTTPStatus)

Loc = Sequence[str | int]


class ProblemError(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        errors: Sequence[tuple[Loc, str]] = (),
        headers: dict[str, str] | None = None,
        type_: str = "about:blank",
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = [{"loc": list(loc), "msg": msg} for loc, msg in errors]
        self.headers = headers or {}
        self.type = type_


def problem_response(
    status: int,
    title: str,
    detail: str = "",
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    type_: str = "about:blank",
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            errors=exc.errors,
            headers=exc.headers,
            type_=exc.type,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        found = exc.errors()
        errors = [
            {"loc": _public_loc(err.get("loc", ())), "msg": str(err.get("msg", "invalid"))}
            for err in found[:MAX_ERRORS_SHOWN]
        ]
        detail = "the request failed validation"
        if len(found) > MAX_ERRORS_SHOWN:
            detail += f" ({len(found) - MAX_ERRORS_SHOWN} more errors not shown)"
        return problem_response(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in _KNOWN else "Error"
        detail = str(exc.detail) if exc.detail != title else ""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem_response(exc.status_code, title, detail, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Only the exception type is logged: its text may quote request data or secrets.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return problem_response(500, "Internal Server Error", "an unexpected error occurred")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route offers on this path: Starlette's own 405 names only the first
    route whose path matched, though several routes may share a path (GET and POST)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        for method in getattr(route, "methods", None) or ():
            if route.matches({**request.scope, "method": method})[0] == Match.FULL:
                methods.add(method)
    return sorted(methods)


def _public_loc(loc: Sequence[Any]) -> list[str | int]:
    """A pydantic loc as clients see it: without the leading "body", parts as str or int."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    return [part if isinstance(part, int) else str(part) for part in parts]

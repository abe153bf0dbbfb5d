"""RFC 9457 problem details: every error the API gives is `application/problem+json`.

An unexpected fault ends in `UnexpectedErrors`, the outermost of our middlewares: it answers a
bare 500 naming a random error id and logs that id with the exception's type, nothing more.
It never re-raises: the server would then log the whole traceback, and a database error's text
carries the SQL statement's parameters, which are request data.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_JSON = "application/problem+json"
MAX_ERRORS_SHOWN = 100

log = logging.getLogger(__name__)
_KNOWN = frozenset(status.value for status in HTTPStatus)

Loc = Sequence[str | int]


class ProblemError(StarletteHTTPException):
    """Raise from a route (or a dependency, or while the body is read) to answer with a
    problem document. It is an HTTP exception so that FastAPI's body reading lets it through."""

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
        super().__init__(status, detail or title, headers)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = [{"loc": list(loc), "msg": msg} for loc, msg in errors]
        self.headers = headers or {}
        self.type = type_


def invalid_request(errors: Sequence[tuple[Loc, str]], detail: str = "") -> ProblemError:
    """The 422 for bad input, each error pointing at its field."""
    return ProblemError(
        422, "Invalid request", detail or "the request failed validation", errors=errors
    )


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
            headers=dict(exc.headers or {}),
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


class UnexpectedErrors:
    """ASGI middleware: any exception a request raises becomes a 500 problem with an error id.

    Logged is the id and the exception's type only (its text and traceback may quote request
    data, SQL parameters or secrets). If the answer had already begun, the error is logged and
    the connection left to the server to close."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            error_id = secrets.token_hex(8)
            log.error("unexpected error %s: %s", error_id, type(exc).__name__)
            if started:
                return
            response = problem_response(
                500, "Internal Server Error", f"an unexpected error occurred (error id {error_id})"
            )
            await response(scope, receive, send)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route offers on this path: Starlette's own 405 names only the first
    route whose path matched, though several routes may share a path (GET and POST). Each
    method is tried against the app's routes (included routers answer for their own)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]


def _public_loc(loc: Sequence[Any]) -> list[str | int]:
    """A pydantic loc as clients see it: without the leading "body", parts as str or int."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    return [part if isinstance(part, int) else str(part) for part in parts]

"""Route: `/metrics`, the Prometheus text exposition (docs/operations.md lists the series)."""

from __future__ import annotations

import hmac
import threading
import weakref

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.errors import ProblemError
from api.schemas import problems
from core.db import Database
from core.metrics import CONTENT_TYPE, DatabaseCollector, build_registry, render
from core.settings import Settings
from core.stats import balance_reader

router = APIRouter(tags=["operations"])

_collectors: weakref.WeakKeyDictionary[Database, DatabaseCollector] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def database_collector(db: Database, settings: Settings) -> DatabaseCollector:
    """One collector per database, so its short cache serves every scrape of this process."""
    with _lock:
        collector = _collectors.get(db)
        if collector is None:
            read_balance = balance_reader(settings.redis_url)

            def balance() -> int | None:
                cached = read_balance()
                return cached.points if cached is not None else None

            collector = DatabaseCollector(
                db,
                cache_seconds=settings.metrics_cache_seconds,
                balance=balance,
            )
            _collectors[db] = collector
        return collector


def _bearer_matches(authorization: str | None, token: str) -> bool:
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compared in constant time, as bytes (compare_digest refuses non-ASCII text)
    return hmac.compare_digest(presented.strip().encode(), token.encode())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        **problems(401),
    },
)
def metrics(request: Request) -> Response:
    """The series of docs/operations.md. With `METRICS_TOKEN` set, only for
    `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise)."""
    db: Database = request.app.state.db
    settings: Settings = request.app.state.settings
    if settings.metrics_token is not None and not _bearer_matches(
        request.headers.get("authorization"), settings.metrics_token.get_secret_value()
    ):
        raise ProblemError(
            401,
            "Unauthorized",
            "this service's /metrics needs its metrics token as a bearer token",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    registry = build_registry(database_collector(db, settings))
    return Response(render(registry), media_type=CONTENT_TYPE)

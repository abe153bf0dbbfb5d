"""Route: `/metrics`, the Prometheus text exposition (docs/operations.md lists the series)."""

from __future__ import annotations

import threading
import weakref

from fastapi import APIRouter, Request
from fastapi.responses import Response

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


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    db: Database = request.app.state.db
    settings: Settings = request.app.state.settings
    registry = build_registry(database_collector(db, settings))
    return Response(render(registry), media_type=CONTENT_TYPE)

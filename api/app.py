"""The FastAPI application factory (`mcjobs api` serves `create_app()`)."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from api.accepting import new_host_lookups
from api.deps import refuse_unstorable_text
from api.errors import UnexpectedErrors, install_error_handlers
from api.limits import BodySizeLimit
from api.routes import (
    batches,
    dashboard,
    files,
    health,
    jobs,
    metrics,
    models,
    stats,
    webhooks,
)
from core.db import Database, get_database
from core.settings import Settings, get_settings


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    """The API for `settings` (default: the environment) on `db` (default: `DATABASE_URL`)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="MetaChat Jobs",
        version="1",
        description="Jobs and batches in front of MetaChat's media API. See docs/api.md.",
        dependencies=[Depends(refuse_unstorable_text)],
    )
    app.state.settings = settings
    app.state.db = db or (
        get_database()
        if settings is get_settings()
        else Database(
            settings.database_url,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            pool_size=settings.db_pool_size,
        )
    )
    app.state.webhook_host_lookups = new_host_lookups()
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
    )
    # added last, so it wraps every other middleware of ours
    app.add_middleware(UnexpectedErrors)
    for module in (health, jobs, batches, files, models, webhooks, stats, metrics, dashboard):
        app.include_router(module.router)
    return app

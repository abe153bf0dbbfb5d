"""Routes: liveness (`/healthz`) and readiness (`/readyz`: the database and Redis answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import DbDep, SettingsDep
from api.errors import PROBLEM_JSON
from api.schemas import HealthOut, ReadyOut, problems
from core.db import Database

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS: Final = 2.0


@router.get("/healthz", response_model=HealthOut, summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _database_answers(db: Database) -> None:
    with db.read_engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _redis_answers(url: str) -> None:
    client = redis.Redis.from_url(
        url, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


async def _check(probe: Callable[[], None]) -> str:
    try:
        await asyncio.wait_for(asyncio.to_thread(probe), timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # any failure means "not ready"; only its type is shown
        return f"error: {type(exc).__name__}"
    return "ok"


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses=problems(503),
    summary="The database and Redis answer",
)
async def readyz(db: DbDep, settings: SettingsDep) -> Any:
    database, broker = await asyncio.gather(
        _check(lambda: _database_answers(db)), _check(lambda: _redis_answers(settings.redis_url))
    )
    checks = {"database": database, "redis": broker}
    if database == "ok" and broker == "ok":
        return {"status": "ready", "checks": checks}
    down = ", ".join(name for name, state in checks.items() if state != "ok")
    return JSONResponse(
        {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": f"not ready: {down} unreachable",
            "checks": checks,
        },
        status_code=503,
        media_type=PROBLEM_JSON,
    )

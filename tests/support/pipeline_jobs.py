"""Helpers for pipeline tests: rows inserted directly, a controllable clock, pump contexts wired to
a simulator (in process, over ASGI) or to an ``httpx.MockTransport``."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis
from sqlalchemy import func, insert, select

from core import ids
from core.db import Database
from core.keys import create_api_key
from core.schedule import PollPlanner
from core.settings import Settings
from core.submission import get_catalogue
from core.tables import QUEUED, Batch, Job, utcnow
from metachat.client import make_http_client
from sim import SimConfig, create_sim_app
from sim.clock import Clock
from worker.context import PumpContext, build_pump_context

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class TestClock:
    """A clock the test moves by hand; calling it gives the time (a `PumpContext.clock`)."""

    __test__ = False

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


def new_api_key(db: Database, name: str = "tenant") -> str:
    with db.session() as session:
        return create_api_key(session, name=f"{name}-{ids.new_id('t')}").id


_prompts = itertools.count(1)


def unique_prompt(text: str = "a lighthouse at dawn") -> str:
    """Prompts are the simulator's key for counting double submits: keep them unique."""
    return f"{text} #{next(_prompts)}"


def job_row(
    api_key_id: str,
    *,
    model: str = "flux-2-pro",
    action: str | None = None,
    prompt: str | None = None,
    params: Mapping[str, Any] | None = None,
    images: list[dict[str, Any]] | None = None,
    batch_id: str | None = None,
    priority: int = 0,
    deadline_seconds: float | None = None,
    source_job_id: str | None = None,
    source_index: int | None = None,
    webhook_url: str | None = None,
    created_at: dt.datetime | None = None,
    job_id: str | None = None,
) -> dict[str, Any]:
    """A queued `jobs` row as the submission code writes one."""
    spec = get_catalogue().model(model)
    now = created_at or utcnow()
    return {
        "id": job_id or ids.new_id(ids.JOB),
        "api_key_id": api_key_id,
        "batch_id": batch_id,
        "status": QUEUED,
        "provider": spec.provider,
        "model": model,
        "action": action or spec.default_action,
        "prompt": prompt if prompt is not None or source_job_id else unique_prompt(),
        "params": dict(params or {}),
        "images": list(images or []),
        "source_job_id": source_job_id,
        "source_index": source_index,
        "webhook_url": webhook_url,
        "metadata": None,
        "priority": priority,
        "deadline_seconds": deadline_seconds,
        "created_at": now,
        "updated_at": now,
        "due_at": now,
        "attempts": 0,
        "polls": 0,
        "progress": 0,
    }


def _same_keys(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A bulk insert needs one set of columns for every row.
    columns = {key for row in rows for key in row}
    return [{key: row.get(key) for key in columns} for row in rows]


def insert_jobs(db: Database, rows: Iterable[dict[str, Any]]) -> list[str]:
    rows = _same_keys(list(rows))
    with db.session() as session:
        if rows:
            session.execute(insert(Job.__table__), rows)
    return [row["id"] for row in rows]


def insert_batch(
    db: Database,
    api_key_id: str,
    rows: list[dict[str, Any]],
    *,
    webhook_url: str | None = None,
    created_at: dt.datetime | None = None,
) -> str:
    """A running batch holding ``rows`` (their ``batch_id`` is set here)."""
    batch_id = ids.new_id(ids.BATCH)
    with db.session() as session:
        session.execute(
            insert(Batch.__table__),
            [
                {
                    "id": batch_id,
                    "api_key_id": api_key_id,
                    "status": "running",
                    "total": len(rows),
                    "webhook_url": webhook_url,
                    "created_at": created_at or utcnow(),
                }
            ],
        )
        for row in rows:
            row["batch_id"] = batch_id
        if rows:
            session.execute(insert(Job.__table__), _same_keys(rows))
    return batch_id


def job(db: Database, job_id: str) -> Job:
    with db.read_session() as session:
        return session.get_one(Job, job_id)


def jobs(db: Database, job_ids: Iterable[str]) -> list[Job]:
    wanted = list(job_ids)
    with db.read_session() as session:
        found = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(wanted)))}
    return [found[job_id] for job_id in wanted]


def status_counts(db: Database) -> dict[str, int]:
    with db.read_session() as session:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {status: int(count) for status, count in rows}


def pipeline_settings(
    settings_for: Callable[..., Settings], db_url: str, **overrides: Any
) -> Settings:
    """Settings for pump tests: fast schedules and generous limits unless overridden."""
    values: dict[str, Any] = {
        "metachat_base_url": "http://127.0.0.1:9/open/v1",
        "provider_rate_per_second": {"default": 1000.0},
        "provider_max_in_flight": {"default": 1000},
    }
    values.update(overrides)
    return settings_for(db_url, **values)


@asynccontextmanager
async def pump_context(
    db: Database,
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport,
    clock: Callable[[], dt.datetime] = utcnow,
    owner: str | None = None,
    planner: PollPlanner | None = None,
) -> AsyncIterator[PumpContext]:
    """A `PumpContext` whose MetaChat calls go through ``transport``."""
    client = redis.Redis.from_url(settings.redis_url)
    traced = SendTracing(transport)
    async with make_http_client(transport=traced, trust_env=False) as http:
        ctx = build_pump_context(
            settings,
            http=http,
            db=db,
            redis_client=client,
            owner=owner,
            clock=clock,
            planner=planner,
        )
        try:
            yield ctx
        finally:
            ctx.offload.close()
            client.close()


class SendTracing(httpx.AsyncBaseTransport):
    """A test transport that reports, as httpx's own does through httpcore's ``trace``
    extension, the moment a request starts to leave (the submit pump sends a round in parts
    and waits for that, `worker.sending`)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        trace = request.extensions.get("trace")
        if trace is not None:
            await trace("http11.send_request_headers.started", {"request": request})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def sim_transport(
    config: SimConfig | None = None, *, clock: Clock | None = None
) -> tuple[httpx.ASGITransport, Any]:
    """An in-process simulator: (transport for the client, the live `Simulator`)."""
    app = create_sim_app(config or SimConfig.for_profile("instant"), clock=clock)
    return httpx.ASGITransport(app=app), app.state.simulator


def sim_base_url() -> str:
    return "http://sim.test/open/v1"

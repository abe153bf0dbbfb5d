"""What every pump tick needs, gathered in one object so pumps stay plain functions.

Pumps are coroutines on the worker process's loop; every database and Redis call they make
goes through ``offload`` (`worker.offload`), never straight onto the loop.

The worker process builds one `PumpContext` at start (`worker.process`); tests build their
own around a database, a Redis and an ``httpx.AsyncClient`` on a ``MockTransport`` or pointed at
the simulator.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import redis

from core.claims import call_budget_seconds
from core.db import Database
from core.limiter import ProviderLimiter, limiter_from_settings
from core.schedule import PollPlanner
from core.settings import Settings
from core.submission import get_catalogue
from core.tables import utcnow
from metachat.client import MetaChatClient
from worker.offload import Offload
from worker.sending import install_send_tracer

# On top of twice the call budget: time to write the outcome after the call returns.
WRITE_MARGIN_SECONDS = 5.0


def default_owner() -> str:
    """``host:pid``: who holds a lease, readable in the jobs table."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_seconds(settings: Settings) -> float:
    """A lease outlives its call and the write of its outcome with room to spare, so a live
    pump is never overtaken: a submit lease that runs out means the pump died (see
    `core.maintenance`)."""
    return max(settings.lease_seconds, 2 * call_budget_seconds(settings) + WRITE_MARGIN_SECONDS)


@dataclass
class PumpContext:
    """The database, upstream client, limiter and schedules a pump works with.

    ``clock`` is read whenever a pump stamps a time (tests pass a controllable one).
    """

    db: Database
    settings: Settings
    client: MetaChatClient
    limiter: ProviderLimiter
    planner: PollPlanner
    owner: str = field(default_factory=default_owner)
    clock: Callable[[], dt.datetime] = utcnow
    # the database and Redis threads every blocking call of a pump runs on
    offload: Offload = field(default_factory=Offload)


def build_pump_context(
    settings: Settings,
    *,
    http: httpx.AsyncClient,
    db: Database,
    redis_client: redis.Redis,
    owner: str | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    planner: PollPlanner | None = None,
) -> PumpContext:
    """A context from settings: the catalogue with its overrides, the limiter, the schedules."""
    # submit rounds go out in parts, each marked sent just before it leaves (worker.sending)
    install_send_tracer(http)
    api_key = settings.metachat_api_key
    app_id = settings.metachat_app_id
    client = MetaChatClient(
        http,
        get_catalogue(settings.metachat_catalogue_overrides),
        base_url=settings.metachat_base_url,
        api_key=api_key.get_secret_value() if api_key is not None else None,
        app_id=app_id.get_secret_value() if app_id is not None else None,
        llm_base_url=settings.metachat_llm_base_url,
        sync_read_timeout=settings.metachat_sync_read_timeout,
    )
    return PumpContext(
        db=db,
        settings=settings,
        client=client,
        limiter=limiter_from_settings(
            redis_client, settings, reservation_seconds=lease_seconds(settings)
        ),
        planner=planner
        or PollPlanner(settings.poll_schedules, time_scale=settings.poll_time_scale),
        owner=owner or default_owner(),
        clock=clock,
    )

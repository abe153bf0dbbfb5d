"""The Celery app: a Redis broker carrying tick messages, no result backend.

Celery only says *when* to look; the database says *what* to do (docs/pipeline.md). So every
message is a cheap, expendable tick: results are ignored, each child takes one message at a
time, and beat's ticks expire quickly so a stopped worker never comes back to a pile of them.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, worker_process_init, worker_process_shutdown

from core import nudge
from core.settings import Settings, get_settings

TICKS = (
    nudge.SUBMIT_TICK,
    nudge.POLL_TICK,
    nudge.MAINTENANCE_TICK,
    nudge.DELIVER_TICK,
    nudge.ARCHIVE_TICK,
)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every pump ticked every ``BEAT_INTERVAL_SECONDS``; a tick not started within two
    intervals is dropped."""
    interval = settings.beat_interval_seconds
    expires = max(2.0 * interval, 1.0)
    return {
        name: {
            "task": name,
            "schedule": interval,
            "options": {"queue": nudge.TICK_QUEUE, "expires": expires},
        }
        for name in TICKS
    }


def create_celery_app(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (the environment's by default)."""
    settings = settings or get_settings()
    celery_app = Celery("mcjobs", broker=settings.redis_url, include=["worker.tasks"])
    celery_app.conf.update(
        result_backend=None,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_default_queue=nudge.TICK_QUEUE,
        task_routes={name: {"queue": nudge.TICK_QUEUE} for name in TICKS},
        task_acks_late=False,
        # A hung tick is killed; its leases run out and another tick takes over.
        task_time_limit=600,
        worker_prefetch_multiplier=1,
        worker_disable_rate_limits=True,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        beat_schedule=beat_schedule(settings),
        beat_max_loop_interval=max(settings.beat_interval_seconds, 0.1),
        timezone="UTC",
        enable_utc=True,
    )
    return celery_app


app = create_celery_app()


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _start_worker_process(**_: Any) -> None:
    from worker.process import start_process

    start_process()


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_worker_process(**_: Any) -> None:
    from worker.process import stop_process

    stop_process()


# Loggers that speak once per tick or per call at INFO: beat's "Sending due task", the worker's
# "received"/"succeeded" and "Discarding revoked task" for a tick that expired unstarted, and
# httpx's line per request to MetaChat (the pumps log each round's outcome instead).
TICK_LOGGERS = (
    "httpx",
    "celery.beat",
    "celery.app.trace",
    "celery.worker.strategy",
    "celery.worker.request",
)


@after_setup_logger.connect  # type: ignore[untyped-decorator]
def _quiet_tick_logs(logger: logging.Logger, loglevel: int | str | None = None, **_: Any) -> None:
    # Four ticks a second would bury what a person wants to see (jobs submitted and finished,
    # warnings, errors) under a dozen lines a second; at DEBUG they are all shown.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in TICK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)

"""The Celery tasks. Each is a thin door into pumps that run on the process's loop.

Beat sends only the pulse. A pulse reads, in one statement, which pumps (submit, poll,
deliver, archive) have work
(`core.claims.due_work`); it runs the first of them itself, together with maintenance, and
hands each other one to the next free process as that pump's tick, so a busy service keeps
every process at work and an idle one pays one message and one indexed read a second. The API
sends the submit and deliver ticks directly when it commits work for them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

from core import claims, metrics, nudge
from core.maintenance import MaintenanceReport, run_maintenance
from worker.archive import ArchiveReport, prune_files, run_archive_pump
from worker.balance import BALANCE_EVERY_SECONDS, refresh_upstream_balance
from worker.celery_app import app
from worker.poll import run_poll_pump
from worker.process import WorkerProcess, current_process
from worker.submit import run_submit_pump


def _tick_task(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    return cast("Callable[[Callable[[], None]], Callable[[], None]]", app.task(name=name))


def _window(process: WorkerProcess) -> float:
    # Stay busy until just before the next beat tick, then make room for it.
    return 0.9 * process.settings.beat_interval_seconds


log = logging.getLogger(__name__)

_PUMP_TICKS = {
    "submit": nudge.SUBMIT_TICK,
    "poll": nudge.POLL_TICK,
    "deliver": nudge.DELIVER_TICK,
    "archive": nudge.ARCHIVE_TICK,
}


@_tick_task(nudge.PULSE_TICK)
def pulse_tick() -> None:
    process = current_process()
    process.run_tick("pulse", lambda: _pulse(process))


async def _pulse(process: WorkerProcess) -> None:
    pumps = process.pumps
    now = pumps.clock()
    window = _window(process)
    found = await pumps.offload.database(_due_work, process, now)
    kinds = found.kinds(now=now, within=dt.timedelta(seconds=window))
    # a hand-out still waiting when the next pulse comes is worthless: that pulse hands out anew
    expires = max(2.0 * process.settings.beat_interval_seconds, 1.0)
    for kind in kinds[1:]:
        # another process takes it; a nudge that cannot be sent only waits for the next pulse
        await pumps.offload.best_effort(
            f"handing out the {kind} tick",
            functools.partial(
                nudge.nudge, process.settings.broker_url, _PUMP_TICKS[kind], expires=expires
            ),
            False,
        )
    runs: list[Coroutine[Any, Any, Any]] = [_maintain(process, include_prune=False)]
    if kinds:
        runs.append(_run_pump(process, kinds[0], window))
    failures = [
        result
        for result in await asyncio.gather(*runs, return_exceptions=True)
        if isinstance(result, BaseException)
    ]
    if failures:
        raise failures[0]
    if process.prune_due():
        # pruning spends up to PRUNE_BUDGET_SECONDS on the database thread: after the pump, so
        # the pump's writes never wait behind it. Stored files go first (objects, then rows):
        # the job prune skips a job that still has file rows.
        await _prune_files(process)
        await _maintain(process, include_prune=True)


def _due_work(process: WorkerProcess, now: dt.datetime) -> claims.DueWork:
    with process.db.read_session() as session:
        return claims.due_work(session, now=now)


async def _run_pump(process: WorkerProcess, kind: str, window: float) -> Any:
    if kind == "submit":
        # the synchronous lane runs on its own thread: a wake-up only lets it claim
        process.wake_sync_lane()
        return await run_submit_pump(process.pumps, window_seconds=window)
    if kind == "poll":
        return await run_poll_pump(process.pumps, window_seconds=window)
    if kind == "archive":
        return await _archive(process)
    delivering = _deliver(process)
    return await delivering if delivering is not None else None


def _pump_tick(kind: str) -> None:
    """A pump's own tick (a pulse's hand-out or the API's nudge): the pump the pulse would run."""
    process = current_process()
    if kind == "submit":
        # woken even while this process is busy: the lane runs on its own thread
        process.wake_sync_lane()
    process.run_tick(kind, lambda: _run_pump(process, kind, _window(process)))


@_tick_task(nudge.SUBMIT_TICK)
def submit_tick() -> None:
    _pump_tick("submit")


@_tick_task(nudge.POLL_TICK)
def poll_tick() -> None:
    _pump_tick("poll")


@_tick_task(nudge.MAINTENANCE_TICK)
def maintenance_tick() -> None:
    process = current_process()
    process.run_tick("maintenance", lambda: _maintain(process, include_prune=process.prune_due()))


async def _maintain(process: WorkerProcess, *, include_prune: bool) -> MaintenanceReport:
    report = await process.pumps.offload.database(
        run_maintenance,
        process.db,
        process.settings,
        planner=process.pumps.planner,
        include_prune=include_prune,
    )
    if report.prune is not None:
        process.prune_backlog = report.prune.more
        metrics.record_prune(report.prune.rows, report.prune.seconds)
    if process.due_every("balance", BALANCE_EVERY_SECONDS):
        await refresh_upstream_balance(process.pumps.client, process.redis)
    return report


@_tick_task(nudge.DELIVER_TICK)
def deliver_tick() -> None:
    _pump_tick("deliver")


def _deliver(process: WorkerProcess) -> Any:
    try:
        from worker import deliver
    except ImportError:  # webhook delivery not installed in this build
        return None
    return deliver.run_deliver_pump(process)


@_tick_task(nudge.ARCHIVE_TICK)
def archive_tick() -> None:
    _pump_tick("archive")


async def _archive(process: WorkerProcess) -> ArchiveReport:
    # stored files are pruned by the pulse, just before the jobs they belong to
    return await run_archive_pump(process.archiver, window_seconds=_window(process))


async def _prune_files(process: WorkerProcess) -> None:
    try:
        await prune_files(process.archiver)
    except Exception:  # a store that cannot be reached: the files wait for the next pass
        log.exception("pruning stored files failed")

"""The five Celery tasks. Each is a thin door into a pump that runs on the process's loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from core import nudge
from core.maintenance import MaintenanceReport, run_maintenance
from worker.archive import ArchiveReport, prune_files, run_archive_pump
from worker.balance import BALANCE_EVERY_SECONDS, refresh_upstream_balance
from worker.celery_app import app
from worker.poll import run_poll_pump
from worker.process import PRUNE_EVERY_SECONDS, WorkerProcess, current_process
from worker.submit import run_submit_pump


def _tick_task(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    return cast("Callable[[Callable[[], None]], Callable[[], None]]", app.task(name=name))


def _window(process: WorkerProcess) -> float:
    # Stay busy until just before the next beat tick, then make room for it.
    return 0.9 * process.settings.beat_interval_seconds


@_tick_task(nudge.SUBMIT_TICK)
def submit_tick() -> None:
    process = current_process()
    # the synchronous lane runs on its own thread: a wake-up only lets it claim
    process.wake_sync_lane()
    process.run_tick(
        "submit", lambda: run_submit_pump(process.pumps, window_seconds=_window(process))
    )


@_tick_task(nudge.POLL_TICK)
def poll_tick() -> None:
    process = current_process()
    process.run_tick("poll", lambda: run_poll_pump(process.pumps, window_seconds=_window(process)))


@_tick_task(nudge.MAINTENANCE_TICK)
def maintenance_tick() -> None:
    process = current_process()
    process.run_tick("maintenance", lambda: _maintain(process))


async def _maintain(process: WorkerProcess) -> MaintenanceReport:
    report = await process.pumps.offload.database(
        run_maintenance,
        process.db,
        process.settings,
        planner=process.pumps.planner,
        include_prune=process.prune_due(),
    )
    if process.due_every("balance", BALANCE_EVERY_SECONDS):
        await refresh_upstream_balance(process.pumps.client, process.redis)
    return report


@_tick_task(nudge.DELIVER_TICK)
def deliver_tick() -> None:
    process = current_process()
    process.run_tick("deliver", lambda: _deliver(process))


def _deliver(process: WorkerProcess) -> Any:
    try:
        from worker import deliver
    except ImportError:  # webhook delivery not installed in this build
        return None
    return deliver.run_deliver_pump(process)


@_tick_task(nudge.ARCHIVE_TICK)
def archive_tick() -> None:
    process = current_process()
    process.run_tick("archive", lambda: _archive(process))


async def _archive(process: WorkerProcess) -> ArchiveReport:
    report = await run_archive_pump(process.archiver, window_seconds=_window(process))
    if process.due_every("prune_files", PRUNE_EVERY_SECONDS):
        await prune_files(process.archiver)
    return report

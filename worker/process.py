"""Per-process worker state: one event loop, one ``httpx.AsyncClient``, one pump context.

An ``httpx.AsyncClient`` belongs to the loop it first ran on, so each prefork child makes its own
loop at ``worker_process_init`` and runs every tick on it with ``run_until_complete``: the
keep-alive connections to MetaChat survive from tick to tick. Ticks never overlap within a
process (a second one arriving while one runs is skipped: the next beat brings another).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import redis

from core.db import Database, get_database
from core.settings import Settings, get_settings
from core.storage import open_storage
from metachat.client import make_http_client
from worker.archive import ArchiveContext, make_download_client
from worker.context import PumpContext, build_pump_context
from worker.sync_calls import SyncLane, store_images

log = logging.getLogger(__name__)

T = TypeVar("T")

# Pruning scans old rows: once every ten minutes per process when its last pass finished. While
# the last pass ran out of budget with old rows left (a backlog), again after `PRUNE_BACKLOG_GAP`
# budgets: the tick holds this process, so its pumps keep most of the time.
PRUNE_EVERY_SECONDS = 600.0
PRUNE_BACKLOG_GAP = 4.0
# Redis holds only what heals itself (the limiter, nudges): never wait long for it.
REDIS_TIMEOUT_SECONDS = 2.0


class WorkerProcess:
    """Everything one worker process keeps between ticks.

    The deliver pump receives this object: it has ``db``, ``settings``, ``owner``, ``loop`` and a
    ``webhook_sender`` made on first use by ``worker.deliver.make_sender``.
    """

    def __init__(self, settings: Settings, *, db: Database | None = None) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.db = db or get_database()
        self.redis = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self.http: httpx.AsyncClient = self.loop.run_until_complete(self._make_http())
        self.pumps: PumpContext = build_pump_context(
            settings, http=self.http, db=self.db, redis_client=self.redis
        )
        self.owner = self.pumps.owner
        self._webhook_sender: Any = None
        self._archiver: ArchiveContext | None = None
        self._sync_lane: SyncLane | None = None
        self._lane_lock = threading.Lock()
        self._busy = threading.Lock()
        self._last_run: dict[str, float] = {}
        self.prune_backlog = False

    def __repr__(self) -> str:
        return f"WorkerProcess(owner={self.owner!r})"

    async def _make_http(self) -> httpx.AsyncClient:
        settings = self.settings
        # Every connection of a round is kept alive for the next: a submit round never waits
        # for a connection (the claim takes no more jobs than there are) nor opens new ones.
        return make_http_client(
            connect_timeout=settings.metachat_connect_timeout,
            read_timeout=settings.metachat_read_timeout,
            max_connections=settings.metachat_max_connections,
            max_keepalive_connections=settings.metachat_max_connections,
        )

    @property
    def webhook_sender(self) -> Any:
        if self._webhook_sender is None:
            from worker import deliver

            self._webhook_sender = deliver.make_sender(self.settings)
        return self._webhook_sender

    @property
    def archiver(self) -> ArchiveContext:
        """The archive pump's context: the result store and a download client, made on first
        use and sharing the pumps' database thread."""
        if self._archiver is None:
            self._archiver = ArchiveContext(
                db=self.db,
                settings=self.settings,
                store=open_storage(self.settings),
                http=make_download_client(self.settings),
                owner=self.owner,
                offload=self.pumps.offload,
            )
        return self._archiver

    @property
    def sync_lane(self) -> SyncLane:
        """The synchronous calls' lane (`worker.sync_calls`), started on first use."""
        with self._lane_lock:
            if self._sync_lane is None:
                settings = self.settings

                def build(http: httpx.AsyncClient) -> PumpContext:
                    return build_pump_context(
                        settings, http=http, db=self.db, redis_client=self.redis, owner=self.owner
                    )

                self._sync_lane = SyncLane(
                    settings, build, store=store_images(open_storage(settings))
                )
            return self._sync_lane

    def wake_sync_lane(self) -> None:
        """Let the synchronous lane claim; a lane that cannot start (a storage setting that
        does not work) is logged and never holds up the other pumps."""
        try:
            self.sync_lane.wake()
        except Exception:
            if self.due_every("sync-lane-error", 60.0):
                log.exception("the synchronous lane could not start; its jobs stay queued")

    def due_every(self, name: str, seconds: float) -> bool:
        """True at most once every `seconds` for `name` (and on the first call)."""
        now = time.monotonic()
        if now - self._last_run.get(name, float("-inf")) < seconds:
            return False
        self._last_run[name] = now
        return True

    def prune_due(self) -> bool:
        if self.prune_backlog:
            gap = PRUNE_BACKLOG_GAP * self.settings.prune_budget_seconds
            return self.due_every("prune", min(gap, PRUNE_EVERY_SECONDS))
        return self.due_every("prune", PRUNE_EVERY_SECONDS)

    def run_tick(self, name: str, tick: Callable[[], object]) -> object:
        """Run one tick on this process's loop; None when another tick is still running."""
        if not self._busy.acquire(blocking=False):
            log.debug("%s skipped: a tick is running in this process", name)
            return None
        try:
            result = tick()
            if inspect.isawaitable(result):
                return self.loop.run_until_complete(_awaited(result))
            return result
        finally:
            self._busy.release()

    def close(self) -> None:
        """Close the clients on their own loop, then the loop."""
        try:
            if self._sync_lane is not None:
                self._sync_lane.close(timeout=self.settings.metachat_sync_read_timeout + 10.0)
            self.loop.run_until_complete(self.http.aclose())
            if self._archiver is not None:
                self.loop.run_until_complete(self._archiver.http.aclose())
            sender = self._webhook_sender
            closer = getattr(sender, "aclose", None) or getattr(sender, "close", None)
            if closer is not None:
                result = closer()
                if inspect.isawaitable(result):
                    self.loop.run_until_complete(result)
        finally:
            self.pumps.offload.close()
            self.redis.close()
            self.loop.close()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


_process: WorkerProcess | None = None
_process_lock = threading.Lock()


def current_process() -> WorkerProcess:
    """This process's state, made on first use (prefork children make it at start)."""
    global _process
    with _process_lock:
        if _process is None:
            _process = WorkerProcess(get_settings())
        return _process


def start_process() -> WorkerProcess:
    return current_process()


def stop_process() -> None:
    global _process
    with _process_lock:
        process, _process = _process, None
    if process is not None:
        try:
            process.close()
        except Exception:  # shutting down: nothing left to protect
            log.warning("worker process state did not close cleanly", exc_info=True)

"""Running many upstream calls on one event loop and writing each result as soon as it lands.

Writing as results arrive, rather than once the slowest call of a tick returns, keeps the time
between MetaChat accepting a task and our row saying so to one short transaction, which is the
window a crash can turn into a lost answer. The write is awaited (it runs on the database
thread, `worker.offload`), so the calls still in flight keep running meanwhile and their
answers coalesce into the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


# After the first answer of a wake-up, wait this long for more before writing: answers that land
# together then share one transaction, and the crash window grows by no more than this.
COALESCE_SECONDS = 0.02


async def settle_as_completed(
    calls: Iterable[Awaitable[T]],
    write: Callable[[list[T]], Awaitable[None]],
    *,
    coalesce_seconds: float | None = None,
    on_write_failure: Callable[[], None] | None = None,
) -> int:
    """Await ``calls`` concurrently; after each wake-up hand every finished result to ``write``.

    The calls must not raise (wrap failures into results) and must bound their own time. If
    ``write`` fails, the calls still running are on the wire already: they are awaited
    (shielded from a cancellation of this coroutine) and their answers handed to ``write``
    once more before the error propagates. Returns how many results were written.
    ``coalesce_seconds`` defaults to `COALESCE_SECONDS` as it is when called;
    ``on_write_failure`` runs first when a write fails (to stop calls not yet started).
    """
    if coalesce_seconds is None:
        coalesce_seconds = COALESCE_SECONDS
    futures = [asyncio.ensure_future(call) for call in calls]
    # Each call reports its own end (one callback per call, not one `asyncio.wait` over every
    # pending call per wake-up, whose cost grows with the square of the round's size).
    finished: list[asyncio.Future[T]] = []  # ended, not yet handed to a write
    ended = 0
    woke = asyncio.Event()
    all_done = asyncio.Event()

    def on_done(future: asyncio.Future[T]) -> None:
        nonlocal ended
        ended += 1
        finished.append(future)
        woke.set()
        if ended == len(futures):
            all_done.set()

    for future in futures:
        future.add_done_callback(on_done)
    written = 0
    try:
        while written < len(futures):
            await woke.wait()
            if coalesce_seconds > 0 and not all_done.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(coalesce_seconds):
                        await all_done.wait()
            woke.clear()
            done, finished[:] = finished[:], []
            await write([future.result() for future in done])
            written += len(done)
    except BaseException:
        if on_write_failure is not None:
            on_write_failure()
        # every call not yet handed to a write: still on the wire, or ended meanwhile
        pending = {future for future in futures if not future.done()} | set(finished)
        if pending:
            await _record_the_rest(pending, write)
        raise
    return written


async def _record_the_rest(
    pending: set[asyncio.Future[T]], write: Callable[[list[T]], Awaitable[None]]
) -> None:
    """After a failed write: wait for the calls in flight, then try to record their answers."""
    gathered = asyncio.gather(*pending, return_exceptions=True)
    try:
        answers = await asyncio.shield(gathered)
    except asyncio.CancelledError:
        log.error("%d upstream answers abandoned: the pump was cancelled twice", len(pending))
        raise
    results = [answer for answer in answers if not isinstance(answer, BaseException)]
    if not results:
        return
    try:
        await write(results)
    except Exception:
        log.exception("could not record %d upstream answers after a failed write", len(results))


async def bounded(semaphore: asyncio.Semaphore, call: Awaitable[T]) -> T:
    """``call`` once ``semaphore`` admits it."""
    async with semaphore:
        return await call

"""Running many upstream calls on one event loop and writing each result as soon as it lands.

Writing as results arrive, rather than once the slowest call of a tick returns, keeps the time
between MetaChat accepting a task and our row saying so to one short transaction, which is the
window a crash can turn into a lost answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


# After the first answer of a wake-up, wait this long for more before writing: answers that land
# together then share one transaction, and the crash window grows by no more than this.
COALESCE_SECONDS = 0.02


async def settle_as_completed(
    calls: Iterable[Awaitable[T]],
    write: Callable[[list[T]], None],
    *,
    coalesce_seconds: float = COALESCE_SECONDS,
) -> int:
    """Await ``calls`` concurrently; after each wake-up hand every finished result to ``write``.

    The calls must not raise (wrap failures into results). If ``write`` raises, the calls still
    running are cancelled and the error propagates. Returns how many results were written.
    """
    pending: set[asyncio.Future[T]] = {asyncio.ensure_future(call) for call in calls}
    written = 0
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if pending and coalesce_seconds > 0:
                more, pending = await asyncio.wait(pending, timeout=coalesce_seconds)
                done |= more
            results = [future.result() for future in done]
            write(results)
            written += len(results)
    finally:
        for future in pending:
            future.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return written


async def bounded(semaphore: asyncio.Semaphore, call: Awaitable[T]) -> T:
    """``call`` once ``semaphore`` admits it."""
    async with semaphore:
        return await call

"""The pumps' blocking work, off the event loop: one thread for the database, one for Redis.

The loop only ever awaits: a database write that stalls (a lock held elsewhere, a slow disk)
or a Redis that hangs never holds up the upstream calls in flight, so their time budgets
measure MetaChat alone and answers that land meanwhile wait in memory for the writer instead
of turning into timeouts. One thread each keeps the order of a pump's writes and lets a round's
answers coalesce while the previous write runs (docs/design.md, "Blocking work off the loop",
has the measurement that chose threads over async drivers).

Redis is a separate lane because everything there is best effort on this path (the limiter
heals itself): an unreachable Redis must not delay a single database write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

# A failed write is tried again this many times in all, after these pauses (seconds).
WRITE_ATTEMPTS = 5
WRITE_PAUSES = (0.2, 0.5, 1.0, 2.0)


class Offload:
    """Run blocking calls on this process's database thread or Redis thread and await them."""

    def __init__(self) -> None:
        self._database = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcjobs-db")
        self._redis = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcjobs-redis")

    async def database(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)`` on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._database, functools.partial(call, *args, **kwargs))

    async def write(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A database write that records upstream answers: tried again a bounded number of
        times on a database error, since what it records cannot be asked for again."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return await self.database(call, *args, **kwargs)
            except DBAPIError as exc:
                if attempt + 1 >= WRITE_ATTEMPTS:
                    raise
                pause = WRITE_PAUSES[min(attempt, len(WRITE_PAUSES) - 1)]
                log.warning(
                    "recording upstream answers failed (%s); trying again in %.1f s",
                    type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
                    pause,
                )
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def redis(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)`` on the Redis thread; errors propagate."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._redis, functools.partial(call, *args, **kwargs))

    async def best_effort(self, what: str, call: Callable[[], T], default: T) -> T:
        """A Redis call whose failure must not change any job's outcome: logged, ``default``."""
        try:
            return await self.redis(call)
        except Exception as exc:  # the limiter heals itself; a job's record must not wait on it
            log.warning("%s skipped: %s", what, type(exc).__name__)
            return default

    def close(self) -> None:
        self._database.shutdown(wait=True)
        self._redis.shutdown(wait=True)

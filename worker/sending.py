"""Sending a round of submits in parts, each marked sent in the database just before it leaves.

The mark (`claims.mark_submits_sent`, ``submit_sent_at``) is what crash recovery trusts: a job
abandoned without it never left and is queued again, one with it may have reached MetaChat.
The mark must therefore be committed before a request leaves, and every job marked but not yet
on the wire when a process dies is failed as ``submit_uncertain`` for nothing. Starting and
writing fifty requests takes tens of milliseconds of the loop's time, so marking a whole round
at once would leave most of it in that window right after the mark.

So a round goes out in at most `SEND_PARTS` parts: part *k + 1* is marked only once every
request of part *k* has started to leave (httpcore's ``trace`` extension reports
``send_request_headers.started``; a call that ends, however, counts too, so transports that do
not trace still work) or will not be sent. A crash then finds at most one part marked but not
sent, and the database sees a constant number of marks per round whatever its size. Nothing
of this is kept outside the process: the progress is in memory, the truth in the rows.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

# A round of n jobs goes out in min(n, SEND_PARTS) parts of (nearly) equal size.
SEND_PARTS = 8

_SEND_STARTED = ("http11.send_request_headers.started", "http2.send_request_headers.started")

# Called once when the current task's request starts to leave (set around a submit call).
_on_leaving: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "mcjobs_on_leaving", default=None
)


def install_send_tracer(http: httpx.AsyncClient) -> None:
    """Make requests sent through ``http`` report when they start to leave (once per client)."""
    hooks = http.event_hooks.get("request", [])
    if attach_tracer in hooks:
        return
    http.event_hooks["request"] = [*hooks, attach_tracer]


async def attach_tracer(request: httpx.Request) -> None:
    leaving = _on_leaving.get()
    if leaving is None:
        return
    called = False

    async def trace(event: str, info: dict[str, Any]) -> None:
        nonlocal called
        if not called and event in _SEND_STARTED:
            called = True
            leaving()

    request.extensions["trace"] = trace


class NotSent(Exception):
    """A claimed submit that was never marked sent (its lease was lost, or a mark failed)."""


class RoundSender:
    """The parts of one round and how far their requests got (see the module docstring)."""

    def __init__(self, job_ids: Sequence[str]) -> None:
        count = min(len(job_ids), SEND_PARTS)
        bounds = [len(job_ids) * k // count for k in range(count + 1)]
        self.parts = [list(job_ids[bounds[k] : bounds[k + 1]]) for k in range(count)]
        loop = asyncio.get_running_loop()
        self._turns: dict[str, asyncio.Future[bool]] = {}
        # per part: the jobs whose requests have not started to leave, and "all have left"
        self._part_of: dict[str, int] = {}
        self._waiting: list[set[str]] = []
        self._all_left: list[asyncio.Event] = []
        for index, part in enumerate(self.parts):
            turn: asyncio.Future[bool] = loop.create_future()
            for job_id in part:
                self._turns[job_id] = turn
                self._part_of[job_id] = index
            self._waiting.append(set(part))
            self._all_left.append(asyncio.Event())
        self._marked: set[str] = set()

    async def run(self, mark: Callable[[list[str]], Awaitable[set[str]]]) -> None:
        """Mark each part, let its calls go, wait until they have all left, then the next."""
        try:
            for index, part in enumerate(self.parts):
                turn = self._turns[part[0]]
                if turn.done():  # stopped
                    return
                self._marked |= await mark(part)
                if turn.done():  # stopped while the mark was written: this part stays home
                    return
                turn.set_result(True)
                await self._all_left[index].wait()
        finally:
            self.stop()

    def stop(self) -> None:
        """Send no part that has not been marked yet."""
        for turn in self._turns.values():
            if not turn.done():
                turn.set_result(False)

    async def my_turn(self, job_id: str) -> bool:
        """Wait until ``job_id``'s part is marked; False when it will not be sent."""
        go = await self._turns[job_id] and job_id in self._marked
        if not go:
            self.left(job_id)
        return go

    def left(self, job_id: str) -> None:
        index = self._part_of[job_id]
        waiting = self._waiting[index]
        waiting.discard(job_id)
        if not waiting:
            self._all_left[index].set()

    def leaving(self, job_id: str) -> contextvars.Token[Callable[[], None] | None]:
        """Report ``job_id`` as leaving when the current task's request starts to go out."""
        return _on_leaving.set(lambda: self.left(job_id))

    @staticmethod
    def done_leaving(token: contextvars.Token[Callable[[], None] | None]) -> None:
        _on_leaving.reset(token)

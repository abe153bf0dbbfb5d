"""Drive the deliver pump in-process, the way a worker process does: one event loop, one sender,
one lease owner, ticks on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from core.db import Database
from core.settings import Settings
from core.webhooks.sender import WebhookSender
from tests.support.waiting import wait_until
from worker.deliver import make_sender, run_deliver_pump

T = TypeVar("T")


@dataclass
class PumpContext:
    db: Database
    settings: Settings
    owner: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    webhook_sender: WebhookSender | None = None

    def __post_init__(self) -> None:
        if self.webhook_sender is None:
            self.webhook_sender = make_sender(self.settings)


class DeliverPump:
    def __init__(self, db: Database, settings: Settings, *, owner: str = "test-pump") -> None:
        self.ctx = PumpContext(db=db, settings=settings, owner=owner)

    def tick(self) -> int:
        return self.ctx.loop.run_until_complete(run_deliver_pump(self.ctx))  # type: ignore[arg-type]

    def run_until(self, condition: Callable[[], T], *, timeout: float = 30.0, what: str = "") -> T:
        """Tick until `condition()` is truthy (a wait on an outcome, never a fixed sleep)."""

        def ticked() -> T:
            self.tick()
            return condition()

        return wait_until(ticked, timeout=timeout, interval=0.01, what=what)

    def close(self) -> None:
        assert self.ctx.webhook_sender is not None
        self.ctx.loop.run_until_complete(self.ctx.webhook_sender.aclose())
        self.ctx.loop.close()

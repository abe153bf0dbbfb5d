"""Counting the SQL statements a pump sends, and an upstream that answers a round all at once.

A statement is one ``before_cursor_execute`` event: an executemany (one statement, many rows)
counts once, and so does SQLite's ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event

from core.db import Database
from tests.support.pipeline_upstream import Reply


class StatementLog:
    """The statements seen while `counting` was open."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __len__(self) -> int:
        return len(self.statements)

    def __str__(self) -> str:
        return "\n".join(f"  {text[:160]}" for text in self.statements)


@contextmanager
def counting(db: Database) -> Iterator[StatementLog]:
    """Count every statement sent on ``db``'s engines (from any thread) inside the block."""
    log = StatementLog()

    def seen(*args: Any) -> None:
        statement = args[2]
        log.statements.append(" ".join(str(statement).split()))

    engines = {id(db.engine): db.engine, id(db.read_engine): db.read_engine}
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", seen)
    try:
        yield log
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", seen)


class AllAtOnce:
    """A MockTransport handler that holds every request until ``expected`` have arrived, then
    answers them together: a round's answers then land in one write, whatever its size."""

    def __init__(self, reply: Reply, expected: int) -> None:
        self.reply = reply
        self.expected = expected
        self.arrived = 0
        self._all_in: asyncio.Event | None = None
        self._ids = itertools.count(1)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self._all_in is None:
            self._all_in = asyncio.Event()
        self.arrived += 1
        if self.arrived >= self.expected:
            self._all_in.set()
        await self._all_in.wait()
        return self.reply(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

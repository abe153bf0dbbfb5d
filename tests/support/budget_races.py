"""Helpers for budget and claim races: submit claims run from plain threads, batch cancels done
the way the API route does them, and the budget invariants read back from the tables."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from core.cancel import CancelRefused, cancel_batch, cancel_job
from core.db import Database
from core.settings import Settings
from core.tables import ApiKey, Batch, Job, utcnow
from metachat.client import make_http_client
from worker.context import PumpContext, build_pump_context
from worker.submit_claim import ClaimTally, SubmitWork, claim_submits

DEADLOCK = "40P01"


@contextmanager
def claim_contexts(
    db: Database, settings: Settings, owners: Sequence[str]
) -> Iterator[list[PumpContext]]:
    """One `PumpContext` per owner, usable from any thread for claims (no call goes upstream)."""
    client = redis.Redis.from_url(settings.redis_url)
    http = make_http_client(trust_env=False)
    try:
        yield [
            build_pump_context(settings, http=http, db=db, redis_client=client, owner=owner)
            for owner in owners
        ]
    finally:
        asyncio.run(http.aclose())
        client.close()


def claim(ctx: PumpContext, now: dt.datetime | None = None) -> list[SubmitWork]:
    return claim_submits(ctx, now=now or utcnow(), report=ClaimTally())


def cancel_batch_as_the_api_does(db: Database, batch_id: str) -> int:
    """`POST /v1/batches/{id}/cancel`: the batch row locked first, then its jobs."""
    with db.session() as session:
        batch = session.scalars(select(Batch).where(Batch.id == batch_id).with_for_update()).one()
        try:
            return cancel_batch(session, batch)
        except CancelRefused:
            return 0


def cancel_job_as_the_api_does(db: Database, job_id: str) -> None:
    with db.session() as session, suppress(CancelRefused):
        cancel_job(session, job_id)


@dataclass
class RaceOutcome:
    """What the racing threads returned or raised."""

    results: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def deadlocks(self) -> list[BaseException]:
        return [error for error in self.errors if sqlstate(error) == DEADLOCK]


def sqlstate(error: BaseException) -> str | None:
    original = error.orig if isinstance(error, DBAPIError) else error
    return getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)


def race(actions: Sequence[Callable[[], Any]], *, timeout: float = 60.0) -> RaceOutcome:
    """Run ``actions`` at once from threads released together; collect results and errors."""
    outcome = RaceOutcome()
    barrier = threading.Barrier(len(actions))
    lock = threading.Lock()

    def run(action: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            result = action()
        except BaseException as exc:  # every failure is the test's to judge
            with lock:
                outcome.errors.append(exc)
        else:
            with lock:
                outcome.results.append(result)

    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a racing thread hung"
    return outcome


@dataclass(frozen=True)
class Totals:
    """A key's or batch's running total and the sum of its jobs' holds."""

    committed: int
    held: int


def key_totals(db: Database, key_id: str) -> Totals:
    with db.read_session() as session:
        committed = session.scalar(select(ApiKey.points_committed).where(ApiKey.id == key_id))
        held = session.scalar(
            select(func.coalesce(func.sum(Job.points_held), 0)).where(Job.api_key_id == key_id)
        )
    return Totals(int(committed or 0), int(held or 0))


def batch_totals(db: Database, batch_id: str) -> Totals:
    with db.read_session() as session:
        committed = session.scalar(select(Batch.points_committed).where(Batch.id == batch_id))
        held = session.scalar(
            select(func.coalesce(func.sum(Job.points_held), 0)).where(Job.batch_id == batch_id)
        )
    return Totals(int(committed or 0), int(held or 0))

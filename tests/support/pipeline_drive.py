"""Driving the pumps in simulated time: run what is due, jump the clock to the next due row.

With the simulator on a `ManualClock` that follows the same clock, a job that takes three
minutes upstream finishes in milliseconds of test time, and the polls, lags and timeouts come
out exactly as they would in real time (minus the beat interval's granularity).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from core.maintenance import run_maintenance
from core.tables import QUEUED, RUNNING, TIMED_OUT, Job
from sim.clock import ManualClock
from tests.support.pipeline_jobs import TestClock
from worker.context import PumpContext
from worker.poll import PollReport, run_poll_pump
from worker.submit import SubmitReport, run_submit_pump


class SharedClock(TestClock):
    """One time for the pumps (datetimes) and the simulator (epoch seconds)."""

    def __init__(self, start: dt.datetime) -> None:
        super().__init__(start)
        self.sim = ManualClock(start.timestamp())

    def advance(self, seconds: float) -> dt.datetime:
        self.sim.advance(seconds)
        return super().advance(seconds)

    def jump_to(self, when: dt.datetime) -> None:
        seconds = (when - self.now).total_seconds()
        if seconds > 0:
            self.advance(seconds)


@dataclass
class DriveLog:
    steps: int = 0
    submits: SubmitReport = field(default_factory=SubmitReport)
    polls: PollReport = field(default_factory=PollReport)


def _next_due(ctx: PumpContext, statuses: tuple[str, ...]) -> dt.datetime | None:
    with ctx.db.read_session() as session:
        value: dt.datetime | None = session.execute(
            select(func.min(Job.due_at)).where(Job.status.in_(statuses))
        ).scalar_one_or_none()
    return value


def _active(ctx: PumpContext) -> int:
    with ctx.db.read_session() as session:
        return int(
            session.execute(
                select(func.count()).where(Job.status.in_((QUEUED, RUNNING)))
            ).scalar_one()
        )


async def drive(
    ctx: PumpContext,
    clock: SharedClock,
    *,
    until: Callable[[], bool] | None = None,
    max_steps: int = 10_000,
    reconcile: bool = False,
    maintenance: bool = True,
) -> DriveLog:
    """Run submit, poll (and maintenance) rounds, jumping the clock to the next due row, until
    no job is queued or running (or ``until()``)."""
    log = DriveLog()
    statuses = (QUEUED, RUNNING, TIMED_OUT) if reconcile else (QUEUED, RUNNING)
    done = until or (lambda: _active(ctx) == 0)
    while not done():
        log.steps += 1
        if log.steps > max_steps:
            raise AssertionError(f"pipeline still busy after {max_steps} steps")
        log.submits.merge(await run_submit_pump(ctx))
        log.polls.merge(await run_poll_pump(ctx))
        if maintenance:
            run_maintenance(ctx.db, ctx.settings, now=clock(), planner=ctx.planner)
        if done():
            break
        upcoming = _next_due(ctx, statuses)
        if upcoming is None:
            raise AssertionError("jobs are active but none is due")
        if upcoming > clock():
            clock.jump_to(upcoming)
    return log

"""How often a worker process prunes: rarely when done, soon again while a backlog is left."""

from __future__ import annotations

import pytest

from core.settings import Settings
from worker import process as worker_process
from worker.process import PRUNE_BACKLOG_GAP, PRUNE_EVERY_SECONDS, WorkerProcess


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(worker_process.time, "monotonic", clock)
    return clock


def _process(budget: float) -> WorkerProcess:
    # only what prune_due reads: no loop, database or Redis
    process = WorkerProcess.__new__(WorkerProcess)
    process.settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url="sqlite://", prune_budget_seconds=budget
    )
    process._last_run = {}
    process.prune_backlog = False
    return process


def test_a_process_with_nothing_left_prunes_every_ten_minutes(clock: Clock) -> None:
    process = _process(budget=2.0)
    assert process.prune_due()
    clock.now += PRUNE_EVERY_SECONDS - 1
    assert not process.prune_due()
    clock.now += 1
    assert process.prune_due()


def test_a_backlog_brings_pruning_back_after_four_budgets(clock: Clock) -> None:
    process = _process(budget=2.0)
    assert process.prune_due()
    process.prune_backlog = True
    clock.now += PRUNE_BACKLOG_GAP * 2.0 - 0.5
    assert not process.prune_due()  # its pumps keep the time between
    clock.now += 0.5
    assert process.prune_due()

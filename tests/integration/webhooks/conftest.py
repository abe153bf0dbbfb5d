"""Fixtures for webhook delivery tests: a pump factory bound to the test's database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.db import Database
from core.settings import Settings
from tests.support.webhook_pump import DeliverPump

# The default schedule squeezed from about a day into well under a second.
FAST = 1e-5


@pytest.fixture
def pump_for(
    db: Database, db_url: str, settings_for: Callable[..., Settings]
) -> Iterator[Callable[..., DeliverPump]]:
    """`pump_for(**settings_overrides)` → a DeliverPump on the test's database."""
    pumps: list[DeliverPump] = []

    def make(*, owner: str = "test-pump", **overrides: object) -> DeliverPump:
        overrides.setdefault("webhook_time_scale", FAST)
        pump = DeliverPump(db, settings_for(db_url, **overrides), owner=owner)
        pumps.append(pump)
        return pump

    yield make
    for pump in pumps:
        pump.close()

"""Few polls and little lag: the poll schedules against the simulator's duration distributions.

The figures in docs/pipeline.md come from the same harness at a larger size
(``python -m tests.support.pipeline_efficiency``).
"""

from __future__ import annotations

from collections.abc import Callable

from core.db import Database
from core.settings import Settings
from tests.support.pipeline_efficiency import measure, table
from tests.support.pipeline_jobs import pipeline_settings, sim_base_url


def test_jobs_take_at_most_three_polls_and_are_seen_within_a_tenth_of_their_duration(
    pg_db: Database, settings_for: Callable[..., Settings], pg_url: str
) -> None:
    settings = pipeline_settings(settings_for, pg_url, metachat_base_url=sim_base_url())
    figures = measure(pg_db, settings, per_family=30)
    print("\n" + table(figures))
    for family in figures:
        assert family.jobs >= 28, family
        assert family.mean_polls <= 3.0, family
        assert family.lag_share <= 0.10, family

"""What a prune pass reports: rows by kind, and their rate."""

from __future__ import annotations

from core.retention import PruneReport


def test_the_rate_counts_every_kind_of_row() -> None:
    report = PruneReport(seconds=2.0)
    report.add({"jobs": 100, "job_events": 300})
    report.add({"jobs": 100, "webhook_deliveries": 0})
    assert report.rows == {"jobs": 200, "job_events": 300}
    assert report.total == 500
    assert report.rows_per_second == 250.0


def test_a_pass_that_took_no_time_has_no_rate() -> None:
    assert PruneReport().rows_per_second == 0.0

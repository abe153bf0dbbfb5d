"""Day partitions of `job_events`: their names and bounds, and what the schema check skips."""

from __future__ import annotations

import datetime as dt

import pytest

from core.partitions import DEFAULT_PARTITION, day_partition, include_name, is_partition_name


def test_a_day_partition_covers_one_utc_day() -> None:
    partition = day_partition(dt.date(2026, 12, 31))
    assert partition.name == "job_events_p20261231"
    assert partition.start == dt.datetime(2026, 12, 31, tzinfo=dt.UTC)
    assert partition.end == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("name", "partition"),
    [
        pytest.param("job_events_p20261203", True, id="day"),
        pytest.param(DEFAULT_PARTITION, True, id="default"),
        pytest.param("job_events", False, id="the-parent"),
        pytest.param("job_events_p2026120", False, id="short-date"),
        pytest.param("jobs", False, id="another-table"),
    ],
)
def test_partitions_are_told_from_tables_by_name(name: str, partition: bool) -> None:
    assert is_partition_name(name) is partition
    assert include_name(name, "table", {}) is not partition


def test_only_tables_are_filtered_out() -> None:
    assert include_name("job_events_p20261203", "index", {}) is True

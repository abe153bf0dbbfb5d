from __future__ import annotations

from core import ids


def test_ids_sort_by_creation_time() -> None:
    earlier = ids.new_id(ids.JOB, at_ms=1_700_000_000_000)
    later = ids.new_id(ids.JOB, at_ms=1_700_000_000_001)
    assert earlier < later
    assert earlier.startswith("job_") and len(earlier) == 30


def test_bulk_ids_are_unique_and_keep_their_order() -> None:
    batch = ids.new_ids(ids.JOB, 10_000)
    assert batch == sorted(batch)
    assert len(set(batch)) == 10_000

"""The retry schedule: about a day of growing gaps with jitter, then dead."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from core.settings import DEFAULT_WEBHOOK_SCHEDULE
from core.tables import DELIVERY_DEAD, DELIVERY_PENDING, DELIVERY_SUCCEEDED
from core.webhooks.attempts import AttemptKind, AttemptResult, plan_next
from core.webhooks.schedule import RetrySchedule, parse_retry_after

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _schedule(**kwargs: object) -> RetrySchedule:
    return RetrySchedule(gaps=DEFAULT_WEBHOOK_SCHEDULE, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def test_the_default_schedule_spans_about_a_day_in_ten_attempts() -> None:
    schedule = _schedule(jitter=0.0)
    delays = [schedule.delay_after(n) for n in range(1, schedule.max_attempts)]
    assert delays == list(DEFAULT_WEBHOOK_SCHEDULE)
    assert schedule.max_attempts == 10
    assert 20 * 3600 < sum(DEFAULT_WEBHOOK_SCHEDULE) < 30 * 3600
    assert schedule.delay_after(schedule.max_attempts) is None


def test_jitter_spreads_retries_around_the_gap() -> None:
    schedule = _schedule(jitter=0.2)
    delays = {schedule.delay_after(1) for _ in range(50)}
    assert len(delays) > 1
    assert all(d is not None and 4.0 <= d <= 6.0 for d in delays)


def test_the_time_scale_compresses_every_gap() -> None:
    schedule = _schedule(jitter=0.0, time_scale=0.001)
    assert schedule.delay_after(9) == pytest.approx(43.2)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param(None, 5.0, id="none"),
        pytest.param(1.0, 5.0, id="shorter-than-the-gap-is-ignored"),
        pytest.param(90.0, 90.0, id="longer-is-honoured"),
        pytest.param(10**7, 43200.0, id="capped-at-the-longest-gap"),
    ],
)
def test_retry_after_can_lengthen_but_never_shorten_a_wait(
    retry_after: float | None, expected: float
) -> None:
    assert _schedule(jitter=0.0).delay_after(1, retry_after=retry_after) == expected


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("120", 120.0, id="delta-seconds"),
        pytest.param("Tue, 01 Dec 2026 12:05:00 GMT", 300.0, id="http-date"),
        pytest.param("Tue, 01 Dec 2026 11:00:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_retry_after_headers_are_read_as_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("kind", "attempts_made", "state"),
    [
        pytest.param(AttemptKind.DELIVERED, 1, DELIVERY_SUCCEEDED, id="2xx-succeeds"),
        pytest.param(AttemptKind.GONE, 1, DELIVERY_DEAD, id="410-is-dead-at-once"),
        pytest.param(AttemptKind.REFUSED, 1, DELIVERY_DEAD, id="refused-is-dead-at-once"),
        pytest.param(AttemptKind.FAILED, 1, DELIVERY_PENDING, id="failure-retries"),
        pytest.param(AttemptKind.FAILED, 9, DELIVERY_PENDING, id="ninth-failure-retries"),
        pytest.param(AttemptKind.FAILED, 10, DELIVERY_DEAD, id="tenth-failure-is-dead"),
    ],
)
def test_an_attempt_moves_the_delivery_on(
    kind: AttemptKind, attempts_made: int, state: str
) -> None:
    outcome = plan_next(
        "msg_1", AttemptResult(kind, NOW), attempts_made=attempts_made, schedule=_schedule()
    )
    assert outcome.state == state
    assert (outcome.due_at is not None) == (state == DELIVERY_PENDING)
    if outcome.due_at is not None:
        assert outcome.due_at > NOW

"""One HTTP attempt of a delivery, and what follows from it.

The sender reports what happened (`AttemptResult`); `plan_next` turns that into the delivery's
next state: `succeeded` on a 2xx, `dead` on 410 Gone, on a destination that can never be valid,
or when the retry schedule is used up, else `pending` again at the next due time.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from core.tables import DELIVERY_DEAD, DELIVERY_PENDING, DELIVERY_SUCCEEDED
from core.webhooks.schedule import RetrySchedule


class AttemptKind(enum.Enum):
    DELIVERED = "delivered"  # a 2xx answer
    GONE = "gone"  # 410: the receiver asks us to stop
    FAILED = "failed"  # any other answer, a timeout, a connection error: try again later
    REFUSED = "refused"  # the destination may never be called: give up now


@dataclass(frozen=True)
class AttemptResult:
    """What one POST did. `error` is ours to write (never a secret, never the URL)."""

    kind: AttemptKind
    at: dt.datetime
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    response_excerpt: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class AttemptOutcome:
    """An attempt as it is logged, plus the state the delivery moves to."""

    delivery_id: str
    result: AttemptResult
    state: str
    due_at: dt.datetime | None

    @property
    def succeeded(self) -> bool:
        return self.result.kind is AttemptKind.DELIVERED


def plan_next(
    delivery_id: str, result: AttemptResult, *, attempts_made: int, schedule: RetrySchedule
) -> AttemptOutcome:
    """The delivery's state after `result`, its `attempts_made`-th attempt (counting it)."""
    if result.kind is AttemptKind.DELIVERED:
        return AttemptOutcome(delivery_id, result, DELIVERY_SUCCEEDED, None)
    if result.kind in (AttemptKind.GONE, AttemptKind.REFUSED):
        return AttemptOutcome(delivery_id, result, DELIVERY_DEAD, None)
    delay = schedule.delay_after(attempts_made, retry_after=result.retry_after)
    if delay is None:
        return AttemptOutcome(delivery_id, result, DELIVERY_DEAD, None)
    return AttemptOutcome(
        delivery_id, result, DELIVERY_PENDING, result.at + dt.timedelta(seconds=delay)
    )

"""When a failed webhook is tried again, and when it is given up (`dead`).

The first attempt is due as soon as the event is written. After the n-th failed attempt the next
one waits `gaps[n-1]` (5 s, 30 s, 2 min, … 12 h by default: about a day in all), times
`time_scale` (tests compress time), give or take `jitter` so that receivers coming back from an
outage are not hit by every retry at once. A receiver's `Retry-After` can lengthen a wait, never
shorten it, and never beyond the longest gap. After the last gap's attempt fails, it is dead.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_JITTER = 0.2


@dataclass(frozen=True)
class RetrySchedule:
    """Backoff over `gaps` (seconds between attempts), scaled by `time_scale`."""

    gaps: Sequence[float]
    time_scale: float = 1.0
    jitter: float = DEFAULT_JITTER
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @property
    def max_attempts(self) -> int:
        return len(self.gaps) + 1

    def delay_after(self, attempts_made: int, *, retry_after: float | None = None) -> float | None:
        """Seconds to wait after `attempts_made` attempts have failed; None when it is dead."""
        if attempts_made < 1:
            return 0.0
        if attempts_made > len(self.gaps):
            return None
        base = self.gaps[attempts_made - 1] * self.time_scale
        delay = base * self.rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        if retry_after is not None and retry_after > delay:
            # Real seconds: the receiver asked for them; capped so it cannot park us forever.
            delay = min(retry_after, max(self.gaps, default=0.0))
        return max(delay, 0.0)


def parse_retry_after(value: str | None, *, now: dt.datetime) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - now).total_seconds(), 0.0)

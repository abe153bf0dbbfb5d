"""The start of a statistics window as an operator writes it: an RFC 3339 time, or a span back
from now (`90m`, `24h`, `7d`)."""

from __future__ import annotations

import datetime as dt
import re

DEFAULT_SPAN = dt.timedelta(hours=24)
MAX_SPAN = dt.timedelta(days=400)

_SPAN = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class BadSince(ValueError):
    """`since` is neither a span nor an RFC 3339 time with an offset, or lies in the future."""


def parse_since(value: str | None, *, now: dt.datetime) -> dt.datetime:
    """The window's start for `value` (default: 24 hours before `now`)."""
    if value is None or not value.strip():
        return now - DEFAULT_SPAN
    match = _SPAN.match(value)
    if match:
        span = dt.timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
        if span > MAX_SPAN:
            raise BadSince(f"a window of at most {MAX_SPAN.days} days")
        return now - span
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadSince("an RFC 3339 time (2026-12-01T08:00:00Z) or a span (90m, 24h, 7d)") from None
    if moment.tzinfo is None:
        raise BadSince("a time with a UTC offset, such as 2026-12-01T08:00:00Z")
    try:
        moment = moment.astimezone(dt.UTC)
    except OverflowError:
        raise BadSince("a time within the years 1 to 9999 in UTC") from None
    if moment > now:
        raise BadSince("a time in the past")
    return moment
